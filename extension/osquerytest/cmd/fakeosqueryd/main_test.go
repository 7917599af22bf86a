package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	osquery "github.com/osquery/osquery-go"
	"github.com/posture-dev/posture/extension/osquerytest"
)

func TestRunServesAndCleansUp(t *testing.T) {
	dir, err := os.MkdirTemp("", "oq")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "em")
	ctl := filepath.Join(dir, "ctl")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan *osquerytest.Server, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--socket", sock, "--platform", "linux", "--hostname", "cmd-test", "--control", ctl}, io.Discard, ready)
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("run exited early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}

	c, err := osquery.NewClient(sock, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	row, err := c.QueryRow("SELECT hostname FROM system_info")
	if err != nil || row["hostname"] != "cmd-test" {
		t.Fatalf("system_info = %v, %v", row, err)
	}

	// The control API on its unix socket breaks a shipped policy.
	hc := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", ctl)
	}}}
	res, err := hc.Post("http://fakeosqueryd/break?policy=linux-firewall", "text/plain", nil)
	if err != nil || res.StatusCode != http.StatusNoContent {
		t.Fatalf("break: %v %v", res, err)
	}
	res.Body.Close()
	rows, err := c.QueryRows("SELECT 1 FROM iptables WHERE filter_name = 'filter' AND chain = 'INPUT' AND policy = 'DROP'")
	if err != nil || len(rows) != 0 {
		t.Fatalf("after break: %v %v", rows, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	dir, err := os.MkdirTemp("", "oq")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "em")
	cases := map[string]struct {
		args []string
		msg  string
	}{
		"no socket":            {[]string{"--platform", "darwin"}, "--socket is required"},
		"bad platform":         {[]string{"--socket", sock, "--platform", "beos"}, "unknown platform"},
		"non-loopback control": {[]string{"--socket", sock, "--control", "0.0.0.0:9"}, "only loopback"},
		"missing fixture file": {[]string{"--socket", sock, "--fixture-sql", filepath.Join(dir, "nope.sql")}, "--fixture-sql"},
	}
	for name, tc := range cases {
		err := run(context.Background(), tc.args, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: err = %v, want it to mention %q", name, err, tc.msg)
		}
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("failed start left the socket behind: %v", err)
	}
	if _, err := listenControl("192.0.2.1:9555"); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("listenControl(non-loopback) = %v", err)
	}
}
