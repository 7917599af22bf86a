package osquerytest

import (
	"database/sql/driver"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"modernc.org/sqlite"
)

// The SQL functions osquery adds to SQLite that policies commonly use.
// modernc registers functions driver-wide, so this happens once per process.
var registerFunctionsOnce sync.Once
var registerFunctionsErr error

func registerFunctions() error {
	registerFunctionsOnce.Do(func() {
		fns := []struct {
			name string
			n    int32
			fn   func(*sqlite.FunctionContext, []driver.Value) (driver.Value, error)
		}{
			{"version_compare", -1, sqlVersionCompare},
			{"regex_match", 3, sqlRegexMatch},
			{"split", 3, sqlSplit},
			{"regex_split", 3, sqlRegexSplit},
		}
		for _, f := range fns {
			if err := sqlite.RegisterDeterministicScalarFunction(f.name, f.n, f.fn); err != nil {
				registerFunctionsErr = fmt.Errorf("register sql function %s: %w", f.name, err)
				return
			}
		}
	})
	return registerFunctionsErr
}

// valueText renders an argument the way sqlite3_value_text would.
func valueText(v driver.Value) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", false
	case string:
		return x, true
	case []byte:
		return string(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case float64:
		return strconv.FormatFloat(x, 'g', 15, 64), true
	case bool:
		if x {
			return "1", true
		}
		return "0", true
	default:
		return fmt.Sprint(x), true
	}
}

// sqlVersionCompare implements osquery's version_compare(LEFT, RIGHT[, FLAVOR]):
// -1, 0 or 1; FLAVOR is ARCH, DPKG or RHEL, the default is osquery's generic
// "version" collation.
func sqlVersionCompare(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
	if len(args) < 2 || len(args) > 3 {
		return nil, fmt.Errorf("wrong number of arguments to function version_compare()")
	}
	l, lok := valueText(args[0])
	r, rok := valueText(args[1])
	if !lok || !rok {
		return nil, nil
	}
	flavor := ""
	if len(args) == 3 {
		f, ok := valueText(args[2])
		if !ok {
			return nil, nil
		}
		flavor = strings.ToUpper(f)
	}
	var c int
	switch flavor {
	case "":
		c = versionCompare(l, r, false, false, false, false)
	case "ARCH":
		c = versionCompare(l, r, true, false, true, true)
	case "DPKG":
		c = versionCompare(l, r, true, true, false, false)
	case "RHEL":
		c = versionCompare(l, r, true, true, true, false)
	default:
		return nil, fmt.Errorf("Invalid version compare flavor: %s", flavor)
	}
	switch {
	case c < 0:
		return int64(-1), nil
	case c > 0:
		return int64(1), nil
	}
	return int64(0), nil
}

func isVersionDelim(c byte) bool {
	switch c {
	case '~', '-', '^', '.', ':':
		return true
	}
	return false
}

func versionDelimPrecedence(c byte) int {
	switch c {
	case '~':
		return 1
	case '-':
		return 2
	case '^':
		return 3
	case '.':
		return 4
	case ':':
		return 5
	}
	return 0
}

// at returns s[i] or 0 past the end, like reading a NUL-terminated C string.
func at(s string, i int) byte {
	if i < 0 || i >= len(s) {
		return 0
	}
	return s[i]
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// versionCompare follows osquery's versionCompare (osquery/sql/sqlite_collation.cpp):
// segments are compared character by character, and a segment that is longer
// (the other side hits a delimiter first) is the greater one.
func versionCompare(l, r string, epoch, delimPrecedence, compRemaining, remainderPrecedence bool) int {
	if epoch {
		le := strings.IndexByte(l, ':')
		re := strings.IndexByte(r, ':')
		switch {
		case le >= 0 && re >= 0:
			if d := le - re; d != 0 {
				return d
			}
		case le >= 0:
			return 1
		case re >= 0:
			return -1
		}
	}
	firstDiff := 0
	n := min(len(l), len(r))
	for i := 0; i < n; i++ {
		lc, rc := l[i], r[i]
		ld, rd := isVersionDelim(lc), isVersionDelim(rc)
		switch {
		case !ld && !rd:
			if firstDiff == 0 {
				firstDiff = int(lc) - int(rc)
			}
			continue
		case ld && !rd:
			return -1
		case !ld && rd:
			return 1
		}
		if firstDiff != 0 {
			return firstDiff
		}
		if delimPrecedence {
			if d := versionDelimPrecedence(lc) - versionDelimPrecedence(rc); d != 0 {
				return d
			}
		}
	}
	if len(l) == len(r) {
		return firstDiff
	}
	if compRemaining {
		if len(l) == n {
			switch at(r, n) {
			case '~':
				return 1
			case '-':
				return 0
			case '^':
				return -1
			default:
				if firstDiff != 0 && (!remainderPrecedence || !isDigit(at(l, n-1))) {
					return firstDiff
				}
			}
		}
		if len(r) == n {
			switch at(l, n) {
			case '~':
				return -1
			case '-':
				return 0
			case '^':
				return 1
			default:
				if firstDiff != 0 && (!remainderPrecedence || !isDigit(at(r, n-1))) {
					return firstDiff
				}
			}
		}
	}
	return len(l) - len(r)
}

var regexCache sync.Map // pattern -> *regexp.Regexp

func compileCached(p string) (*regexp.Regexp, error) {
	if v, ok := regexCache.Load(p); ok {
		return v.(*regexp.Regexp), nil
	}
	re, err := regexp.Compile(p)
	if err != nil {
		return nil, err
	}
	regexCache.Store(p, re)
	return re, nil
}

func intArg(v driver.Value) (int, bool) {
	switch x := v.(type) {
	case int64:
		return int(x), true
	case float64:
		return int(x), true
	case string:
		i, err := strconv.Atoi(strings.TrimSpace(x))
		return i, err == nil
	}
	return 0, false
}

// sqlRegexMatch implements regex_match(COLUMN, PATTERN, INDEX): the INDEX-th
// group of the first match (0 = whole match), NULL when there is none.
func sqlRegexMatch(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
	s, ok1 := valueText(args[0])
	p, ok2 := valueText(args[1])
	idx, ok3 := intArg(args[2])
	if !ok1 || !ok2 || !ok3 {
		return nil, nil
	}
	re, err := compileCached(p)
	if err != nil {
		return nil, fmt.Errorf("Invalid regex: %s", p)
	}
	m := re.FindStringSubmatch(s)
	if m == nil || idx < 0 || idx >= len(m) {
		return nil, nil
	}
	return m[idx], nil
}

// sqlSplit implements split(COLUMN, TOKENS, INDEX): split on any character of
// TOKENS, dropping empty pieces (osquery's split), and return piece INDEX.
func sqlSplit(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
	s, ok1 := valueText(args[0])
	tok, ok2 := valueText(args[1])
	idx, ok3 := intArg(args[2])
	if !ok1 || !ok2 || !ok3 {
		return nil, nil
	}
	if tok == "" {
		return nil, fmt.Errorf("Invalid input to split function")
	}
	parts := strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(tok, r) })
	if idx < 0 || idx >= len(parts) {
		return nil, nil
	}
	return parts[idx], nil
}

// sqlRegexSplit implements regex_split(COLUMN, PATTERN, INDEX).
func sqlRegexSplit(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
	s, ok1 := valueText(args[0])
	p, ok2 := valueText(args[1])
	idx, ok3 := intArg(args[2])
	if !ok1 || !ok2 || !ok3 {
		return nil, nil
	}
	if p == "" {
		return nil, fmt.Errorf("Invalid input to split function")
	}
	re, err := compileCached(p)
	if err != nil {
		return nil, fmt.Errorf("Invalid regex: %s", p)
	}
	parts := re.Split(s, -1)
	if idx < 0 || idx >= len(parts) {
		return nil, nil
	}
	return parts[idx], nil
}
