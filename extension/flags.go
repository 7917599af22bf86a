package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/osquery/osquery-go/plugin/table"

	"github.com/posture-dev/posture/extension/spool"
)

type config struct {
	socket          string
	timeout         int
	interval        int
	verbose         bool
	hub             string
	enrollSecret    string
	secretPath      string
	hubCA           string
	hubCAPin        string
	stateDir        string
	queryTimeout    time.Duration
	logFormat       string
	osqueryGone     time.Duration
	spoolMaxBytes   byteSize
	exitWithParent  bool
	noTable         bool
	tables          []*table.Plugin // served next to posture_entra (set by serve, not a flag)
	showVersion     bool
	ignoredFlags    []string
	fromEnvironment []string
	// firstRunSplay is not a flag: tests shorten the scheduler's spread.
	firstRunSplay time.Duration
	// socketDefaulted: neither --socket nor POSTURE_SOCKET was given, so
	// socket is osqueryd's default for this OS (a service, not autoloaded).
	socketDefaulted bool
}

func newFlagSet(c *config) *flag.FlagSet {
	fs := flag.NewFlagSet("posture.ext", flag.ContinueOnError)
	// Passed by osqueryd when it autoloads the extension.
	def := platformDefaults(runtime.GOOS)
	fs.StringVar(&c.socket, "socket", def.socket, "osquery extension manager socket (osqueryd passes it; the default is osqueryd's own --extensions_socket default)")
	fs.IntVar(&c.timeout, "timeout", 3, "seconds to wait for the osquery socket at start")
	fs.IntVar(&c.interval, "interval", 3, "seconds between extension-manager health pings (osquery's meaning; not the policy interval)")
	fs.BoolVar(&c.verbose, "verbose", false, "debug logging")
	// posture's own.
	fs.StringVar(&c.hub, "hub", "", "hub agent address host:port")
	fs.StringVar(&c.enrollSecret, "enroll-secret", "", "enroll secret (prefer --enroll-secret-path)")
	fs.StringVar(&c.secretPath, "enroll-secret-path", "", "file holding the enroll secret")
	fs.StringVar(&c.hubCA, "hub-ca", "", "PEM file of the CA that signed the hub's server certificate (trust for the first enrollment)")
	fs.StringVar(&c.hubCAPin, "hub-ca-pin", "", "sha256/<base64 SPKI hash> of the hub CA or server key (alternative to --hub-ca)")
	fs.StringVar(&c.stateDir, "state-dir", def.stateDir, "directory for the key, certificate, spool and policy cache")
	fs.DurationVar(&c.queryTimeout, "query-timeout", 30*time.Second, "deadline of one osquery query")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.BoolVar(&c.exitWithParent, "exit-with-parent", true, "exit as soon as the process that started posture.ext (osqueryd, when it autoloads it) exits; a service started by init/systemd/launchd is unaffected")
	fs.DurationVar(&c.osqueryGone, "osquery-gone-exit", 5*time.Minute, "exit when osqueryd has been unreachable this long, so the instance osqueryd autoloads next takes over (0: never)")
	fs.BoolVar(&c.noTable, "no-table", false, "do not serve the posture_entra, posture_status and posture_results tables")
	fs.BoolVar(&c.showVersion, "version", false, "print the version and exit")
	c.spoolMaxBytes = byteSize(spool.DefaultMaxBytes)
	fs.Var(&c.spoolMaxBytes, "spool-max-bytes", "cap on the result spool's disk use, e.g. 64MiB, 512KiB, 1GiB (at least 64KiB); over it, results that only repeat a policy's status are dropped first, status changes last")
	return fs
}

// parseFlags parses args, then fills unset flags from POSTURE_<NAME>
// environment variables (dashes become underscores). Flags it does not know
// are dropped with their value and reported, because osqueryd may pass
// options of its own.
func parseFlags(args []string, env func(string) string) (*config, error) {
	c := &config{}
	fs := newFlagSet(c)
	fs.SetOutput(os.Stderr)
	kept, ignored := filterUnknown(fs, args)
	c.ignoredFlags = ignored
	if err := fs.Parse(kept); err != nil {
		return nil, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || envErr != nil {
			return
		}
		name := "POSTURE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := env(name); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%s: %w", name, err)
				return
			}
			c.fromEnvironment = append(c.fromEnvironment, name)
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	c.socketDefaulted = !set["socket"] && env("POSTURE_SOCKET") == ""
	return c, nil
}

func filterUnknown(fs *flag.FlagSet, args []string) (kept, ignored []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			kept = append(kept, args[i:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			ignored = append(ignored, a) // stray positional argument
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := fs.Lookup(name)
		if name == "h" || name == "help" {
			kept = append(kept, a) // the flag package prints usage
			continue
		}
		takesValue := func() bool {
			return !hasValue && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-")
		}
		if f == nil {
			ignored = append(ignored, a)
			if takesValue() {
				i++
				ignored = append(ignored, args[i])
			}
			continue
		}
		kept = append(kept, a)
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			continue
		}
		if !hasValue && i+1 < len(args) {
			i++
			kept = append(kept, args[i])
		}
	}
	return kept, ignored
}

// byteSize is a flag value in bytes: a number with an optional binary unit
// (KiB, MiB, GiB; K/KB, M/MB, G/GB mean the same).
type byteSize int64

// maxSpoolBytes bounds --spool-max-bytes from above: more is a typo.
const maxSpoolBytes = 1 << 40

func (b *byteSize) String() string {
	v := int64(*b)
	for _, u := range []struct {
		name string
		n    int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if v != 0 && v%u.n == 0 {
			return strconv.FormatInt(v/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(v, 10)
}

func (b *byteSize) Set(s string) error {
	num := strings.TrimSpace(s)
	i := strings.IndexFunc(num, func(r rune) bool { return (r < '0' || r > '9') && r != '-' && r != '+' })
	unit := ""
	if i >= 0 {
		num, unit = strings.TrimSpace(num[:i]), strings.ToLower(strings.TrimSpace(num[i:]))
	}
	mult := map[string]int64{"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
		"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}[unit]
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || mult == 0 {
		return fmt.Errorf("%q is not a size (e.g. 64MiB, 512KiB, 1GiB, or bytes)", s)
	}
	if n < 0 || n > maxSpoolBytes/mult || n*mult < spool.MinMaxBytes {
		return fmt.Errorf("%q is out of range: the spool cap must be between 64KiB and 1TiB", s)
	}
	*b = byteSize(n * mult)
	return nil
}
