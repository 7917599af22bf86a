package policy

import (
	"fmt"
	"strings"
)

// tokKind classifies a SQL token. Only what the read-only check needs is
// distinguished: words (keywords and bare identifiers), quoted things that
// can never be keywords, ';' and parentheses.
type tokKind int

const (
	tokWord   tokKind = iota // keyword or bare identifier
	tokString                // '…'
	tokQuoted                // "…", `…`, […]: identifiers, never keywords
	tokNumber                // 12, 1.5e3, 0x1F
	tokParam                 // ?, ?1, :name, @name, $name
	tokSemi                  // ;
	tokLParen                // (
	tokRParen                // )
	tokOther                 // operators and other punctuation
)

// token is one lexical unit of a query; comments and blanks are dropped.
type token struct {
	kind tokKind
	text string
	off  int // byte offset in the query
}

// sqlError is a problem at a byte offset of the query, so the caller can
// turn it into a line of the YAML file.
type sqlError struct {
	off int
	msg string
}

func (e *sqlError) Error() string { return e.msg }

// tokenize splits a SQLite query into tokens following SQLite's lexical
// rules: ” doubles a quote inside strings, "" / “ / ]] likewise inside
// quoted identifiers ([…] has no escape), "--" comments run to the end of
// the line and "/* */" comments do not nest.
func tokenize(q string) ([]token, *sqlError) {
	var toks []token
	i := 0
	for i < len(q) {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			for i < len(q) && q[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			end := strings.Index(q[i+2:], "*/")
			if end < 0 {
				return nil, &sqlError{i, "unterminated /* comment"}
			}
			i += 2 + end + 2
		case c == '\'':
			end, err := quotedEnd(q, i, '\'', "string literal")
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{tokString, q[i:end], i})
			i = end
		case c == '"' || c == '`':
			end, err := quotedEnd(q, i, c, "quoted identifier")
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{tokQuoted, q[i:end], i})
			i = end
		case c == '[':
			end := strings.IndexByte(q[i+1:], ']')
			if end < 0 {
				return nil, &sqlError{i, "unterminated [identifier]"}
			}
			toks = append(toks, token{tokQuoted, q[i : i+1+end+1], i})
			i += 1 + end + 1
		case c == ';':
			toks = append(toks, token{tokSemi, ";", i})
			i++
		case c == '(':
			toks = append(toks, token{tokLParen, "(", i})
			i++
		case c == ')':
			toks = append(toks, token{tokRParen, ")", i})
			i++
		case isDigit(c) || (c == '.' && i+1 < len(q) && isDigit(q[i+1])):
			j := i + 1
			for j < len(q) && (isWordByte(q[j]) || q[j] == '.' ||
				((q[j] == '+' || q[j] == '-') && (q[j-1] == 'e' || q[j-1] == 'E'))) {
				j++
			}
			toks = append(toks, token{tokNumber, q[i:j], i})
			i = j
		case c == '?' || ((c == ':' || c == '@' || c == '$') && i+1 < len(q) && isWordByte(q[i+1])):
			j := i + 1
			for j < len(q) && isWordByte(q[j]) {
				j++
			}
			toks = append(toks, token{tokParam, q[i:j], i})
			i = j
		case isWordStart(c):
			j := i + 1
			for j < len(q) && (isWordByte(q[j]) || q[j] == '$') {
				j++
			}
			toks = append(toks, token{tokWord, q[i:j], i})
			i = j
		default:
			toks = append(toks, token{tokOther, q[i : i+1], i})
			i++
		}
	}
	return toks, nil
}

// quotedEnd returns the offset just past the quote that closes the one at
// start, treating a doubled quote as an escaped one.
func quotedEnd(q string, start int, quote byte, what string) (int, *sqlError) {
	for j := start + 1; j < len(q); j++ {
		if q[j] != quote {
			continue
		}
		if j+1 < len(q) && q[j+1] == quote {
			j++
			continue
		}
		return j + 1, nil
	}
	return 0, &sqlError{start, "unterminated " + what}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isWordStart accepts any non-ASCII byte too: SQLite allows UTF-8 letters in
// bare identifiers.
func isWordStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80
}

func isWordByte(c byte) bool { return isWordStart(c) || isDigit(c) }

// writeKeywords can only appear in statements that change something. Since
// a policy must start with SELECT or WITH, they are refused anywhere as bare
// words: a WITH clause may otherwise lead into INSERT/UPDATE/DELETE. Words
// that are also common column names (release, end, replace as a function)
// are not listed and get handled in context instead.
var writeKeywords = map[string]bool{
	"INSERT": true, "UPDATE": true, "DELETE": true, "UPSERT": true,
	"CREATE": true, "DROP": true, "ALTER": true,
	"ATTACH": true, "DETACH": true, "PRAGMA": true,
	"VACUUM": true, "REINDEX": true,
}

// CheckQuery reports why q is not exactly one read-only SELECT (or WITH …
// SELECT) statement, or nil. Comments, a trailing ';' and ';' inside strings
// or quoted identifiers are fine.
func CheckQuery(q string) error {
	if _, err := checkQuery(q); err != nil {
		return err
	}
	return nil
}

// checkQuery is CheckQuery returning the *sqlError with its offset.
func checkQuery(q string) ([]token, *sqlError) {
	toks, err := tokenize(q)
	if err != nil {
		return nil, err
	}
	// Split into statements; empty ones (";;", a trailing ";") are allowed,
	// SQLite skips them too.
	var stmts [][]token
	var cur []token
	for _, t := range toks {
		if t.kind == tokSemi {
			if len(cur) > 0 {
				stmts = append(stmts, cur)
			}
			cur = nil
			continue
		}
		cur = append(cur, t)
	}
	if len(cur) > 0 {
		stmts = append(stmts, cur)
	}
	switch {
	case len(stmts) == 0:
		return nil, &sqlError{0, "empty query"}
	case len(stmts) > 1:
		return nil, &sqlError{stmts[1][0].off, fmt.Sprintf("query has %d statements; a policy is exactly one SELECT", len(stmts))}
	}
	st := stmts[0]
	first := st[0]
	lead := strings.ToUpper(first.text)
	if first.kind != tokWord || (lead != "SELECT" && lead != "WITH") {
		what := first.text
		if first.kind == tokWord {
			what = lead
		}
		return nil, &sqlError{first.off, fmt.Sprintf("query starts with %s; only a read-only SELECT or WITH … SELECT is allowed", what)}
	}
	depth := 0
	for i, t := range st {
		switch t.kind {
		case tokLParen:
			depth++
			continue
		case tokRParen:
			depth--
			if depth < 0 {
				return nil, &sqlError{t.off, "unbalanced ')'"}
			}
			continue
		case tokWord:
		default:
			continue
		}
		w := strings.ToUpper(t.text)
		next := ""
		if i+1 < len(st) && st[i+1].kind == tokWord {
			next = strings.ToUpper(st[i+1].text)
		}
		nextIsParen := i+1 < len(st) && st[i+1].kind == tokLParen
		switch {
		case writeKeywords[w]:
			return nil, &sqlError{t.off, fmt.Sprintf("%s is not allowed: a policy query must be read-only", w)}
		case w == "REPLACE" && next == "INTO":
			return nil, &sqlError{t.off, "REPLACE INTO is not allowed: a policy query must be read-only"}
		case w == "LOAD_EXTENSION" && nextIsParen:
			// SQLite's load_extension() runs native code from a file.
			return nil, &sqlError{t.off, "load_extension() is not allowed"}
		}
	}
	if depth != 0 {
		return nil, &sqlError{len(q), "unbalanced '(': missing ')'"}
	}
	if lead == "WITH" {
		if err := checkWithBody(st); err != nil {
			return nil, err
		}
	}
	return toks, nil
}

// checkWithBody makes sure the statement a WITH clause leads into is a
// SELECT (or VALUES): the first such keyword at parenthesis depth 0.
func checkWithBody(st []token) *sqlError {
	depth := 0
	for _, t := range st[1:] {
		switch t.kind {
		case tokLParen:
			depth++
		case tokRParen:
			depth--
		case tokWord:
			if depth != 0 {
				continue
			}
			switch w := strings.ToUpper(t.text); w {
			case "SELECT", "VALUES":
				return nil
			case "REPLACE":
				return &sqlError{t.off, "WITH … REPLACE is not allowed: a policy query must be read-only"}
			}
		}
	}
	return &sqlError{st[0].off, "WITH clause is not followed by a SELECT"}
}
