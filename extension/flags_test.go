package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseFlagsAsOsquerydPassesThem(t *testing.T) {
	env := map[string]string{
		"POSTURE_HUB":           "hub.example.com:8443",
		"POSTURE_SOCKET":        "/env/ignored.em", // flag wins over environment
		"POSTURE_QUERY_TIMEOUT": "45s",
	}
	args := []string{
		"--socket", "/var/osquery/osquery.em", "--timeout", "3", "--interval", "3", "--verbose",
		"--extensions_require", "posture", // an osquery flag we do not know
		"--some_bool_flag",
		"--enroll-secret-path=/etc/posture/secret",
	}
	c, err := parseFlags(args, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.socket != "/var/osquery/osquery.em" || c.timeout != 3 || c.interval != 3 || !c.verbose {
		t.Fatalf("osquery flags: %+v", c)
	}
	if c.hub != "hub.example.com:8443" || c.queryTimeout != 45*time.Second || c.secretPath != "/etc/posture/secret" {
		t.Fatalf("posture flags: %+v", c)
	}
	if len(c.ignoredFlags) != 3 || c.ignoredFlags[0] != "--extensions_require" || c.ignoredFlags[1] != "posture" {
		t.Fatalf("ignored = %v", c.ignoredFlags)
	}
}

func TestParseFlagsBadEnvironmentValue(t *testing.T) {
	_, err := parseFlags(nil, func(k string) string {
		if k == "POSTURE_TIMEOUT" {
			return "soon"
		}
		return ""
	})
	if err == nil {
		t.Fatal("bad POSTURE_TIMEOUT accepted")
	}
}

func TestSpoolMaxBytesFlag(t *testing.T) {
	c, err := parseFlags(nil, func(string) string { return "" })
	if err != nil || int64(c.spoolMaxBytes) != 64<<20 {
		t.Fatalf("default: %v %v", c.spoolMaxBytes, err)
	}
	for in, want := range map[string]int64{"64MiB": 64 << 20, "512KiB": 512 << 10, "1g": 1 << 30, "65536": 65536, "100 MB": 100 << 20} {
		c, err := parseFlags([]string{"--spool-max-bytes", in}, func(string) string { return "" })
		if err != nil || int64(c.spoolMaxBytes) != want {
			t.Errorf("--spool-max-bytes %s: %d %v, want %d", in, c.spoolMaxBytes, err, want)
		}
	}
	c, err = parseFlags(nil, func(k string) string {
		if k == "POSTURE_SPOOL_MAX_BYTES" {
			return "8MiB"
		}
		return ""
	})
	if err != nil || int64(c.spoolMaxBytes) != 8<<20 {
		t.Fatalf("from the environment: %v %v", c.spoolMaxBytes, err)
	}
	for _, bad := range []string{"1000", "0", "-5MiB", "63KiB", "lots", "12XB", "2TiB", "99999999999999999999"} {
		_, err := parseFlags([]string{"--spool-max-bytes", bad}, func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), "spool-max-bytes") {
			t.Errorf("--spool-max-bytes %s accepted or unclear: %v", bad, err)
		}
		_, err = parseFlags(nil, func(k string) string {
			if k == "POSTURE_SPOOL_MAX_BYTES" {
				return bad
			}
			return ""
		})
		if err == nil || !strings.Contains(err.Error(), "POSTURE_SPOOL_MAX_BYTES") {
			t.Errorf("POSTURE_SPOOL_MAX_BYTES=%s accepted or unclear: %v", bad, err)
		}
	}
}
