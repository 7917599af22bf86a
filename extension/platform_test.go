package main

import (
	"runtime"
	"strings"
	"testing"
)

func TestPlatformDefaults(t *testing.T) {
	cases := []struct {
		goos                   string
		socket, stateDir, load string
		pipe, modeBits         bool
	}{
		// osquery's own defaults (OSQUERY_SOCKET "osquery.em"): /var/osquery/ on
		// Linux and macOS, the pipe namespace on Windows.
		{"linux", "/var/osquery/osquery.em", "/var/lib/posture", "/etc/osquery/extensions.load", false, true},
		{"darwin", "/var/osquery/osquery.em", "/var/db/posture", "/var/osquery/extensions.load", false, true},
		{"windows", `\\.\pipe\osquery.em`, `C:\ProgramData\posture`, `C:\Program Files\osquery\extensions.load`, true, false},
	}
	for _, c := range cases {
		p := platformDefaults(c.goos)
		if p.socket != c.socket || p.stateDir != c.stateDir || p.extensionsLoad != c.load || p.pipe != c.pipe || p.modeBits != c.modeBits {
			t.Errorf("%s: %+v", c.goos, p)
		}
		if err := checkSocket(c.goos, p.socket, true); err != nil {
			t.Errorf("%s: the default socket is refused: %v", c.goos, err)
		}
	}
}

func TestCheckSocket(t *testing.T) {
	long := "/" + strings.Repeat("s", 100) // 101 bytes: a socket, not for tables
	cases := []struct {
		goos, socket string
		tables       bool
		refuse       string // "" = accepted; else a word the error must contain
	}{
		{"linux", "/var/osquery/osquery.em", true, ""},
		{"linux", "", true, "/var/osquery/osquery.em"},
		{"linux", long, false, ""},
		{"linux", long, true, ".<uuid>"},
		{"darwin", "/" + strings.Repeat("s", 103), false, "103"},
		{"windows", `\\.\pipe\osquery.em`, true, ""},
		{"windows", `\\.\PIPE\custom`, true, ""},
		{"windows", "//./pipe/osquery.em", true, ""},
		{"windows", `C:\Program Files\osquery\osquery.em`, true, "named pipe"},
		{"windows", "/var/osquery/osquery.em", true, "named pipe"},
		{"windows", `\\.\pipe\`, true, "named pipe"},
		{"windows", pipePrefix + strings.Repeat("p", 90), true, ".<uuid>"},
		{"windows", pipePrefix + strings.Repeat("p", 90), false, ""},
	}
	for _, c := range cases {
		err := checkSocket(c.goos, c.socket, c.tables)
		switch {
		case c.refuse == "" && err != nil:
			t.Errorf("%s %q: refused: %v", c.goos, c.socket, err)
		case c.refuse != "" && (err == nil || !strings.Contains(err.Error(), c.refuse)):
			t.Errorf("%s %q: %v, want a refusal mentioning %q", c.goos, c.socket, err, c.refuse)
		}
	}
}

// Run as its own service, posture.ext finds osqueryd's default socket
// without --socket; it used to refuse to start.
func TestSocketDefaultsToOsquerydsOwn(t *testing.T) {
	c, err := parseFlags([]string{"--hub", "h:1"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if want := platformDefaults(runtime.GOOS).socket; c.socket != want || !c.socketDefaulted {
		t.Fatalf("socket %q defaulted=%v, want %q defaulted", c.socket, c.socketDefaulted, want)
	}
	if !strings.Contains(socketHint(c), "no --socket given") {
		t.Fatalf("hint %q", socketHint(c))
	}
	if c.stateDir != platformDefaults(runtime.GOOS).stateDir {
		t.Fatalf("state dir %q", c.stateDir)
	}
	c, err = parseFlags(nil, func(k string) string {
		if k == "POSTURE_SOCKET" {
			return "/run/osq.em"
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.socket != "/run/osq.em" || c.socketDefaulted {
		t.Fatalf("from the environment: %q defaulted=%v", c.socket, c.socketDefaulted)
	}
	if !strings.Contains(socketHint(c), "--extensions_socket /run/osq.em") {
		t.Fatalf("hint %q", socketHint(c))
	}
}
