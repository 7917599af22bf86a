package main

import (
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
