package cli

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/admin"
	"github.com/posture-dev/posture/hub/server"
	"github.com/posture-dev/posture/hub/store"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// cliHub is a real in-process hub the CLI talks to over TLS gRPC.
type cliHub struct {
	hub    *server.Hub
	addr   string
	caFile string
}

func startCLIHub(t *testing.T) *cliHub {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h, err := server.New(ctx, server.Config{
		DataDir: t.TempDir(), GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		SyncPoll: 50 * time.Millisecond, DuePoll: 50 * time.Millisecond, PolicyPoll: 100 * time.Millisecond,
	})
	if err != nil {
		cancel()
		t.Fatalf("start hub: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("hub run: %v", err)
		}
	})
	caFile := filepath.Join(t.TempDir(), "hub-ca.pem")
	if err := os.WriteFile(caFile, h.CA.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	nt, err := admin.NewAPIToken("cli-test", store.RoleAdmin, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Store.CreateAPIToken(ctx, nt.Stored); err != nil {
		t.Fatal(err)
	}
	t.Setenv("POSTURE_TOKEN", nt.Plain)
	return &cliHub{hub: h, addr: h.GRPCAddr(), caFile: caFile}
}

// run runs `posture-hub CMD VERB <client flags> ARGS...` as a user would.
func (c *cliHub) run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	full := append([]string{}, args[:2]...)
	full = append(full, "--addr", c.addr, "--ca", c.caFile)
	full = append(full, args[2:]...)
	var out, errb bytes.Buffer
	code = Run(context.Background(), full, &out, &errb)
	return code, out.String(), errb.String()
}

// ok runs a command that must succeed and returns its stdout.
func (c *cliHub) ok(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := c.run(t, args...)
	if code != 0 {
		t.Fatalf("posture-hub %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// fails runs a command that must fail and returns its stderr.
func (c *cliHub) fails(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := c.run(t, args...)
	if code == 0 {
		t.Fatalf("posture-hub %s succeeded, want an error\nstdout:\n%s", strings.Join(args, " "), out)
	}
	return errs
}

// jsonOut runs a command with --json and decodes its output into m.
func (c *cliHub) jsonOut(t *testing.T, m proto.Message, args ...string) {
	t.Helper()
	full := append(append(append([]string{}, args[:2]...), "--json"), args[2:]...)
	out := c.ok(t, full...)
	if err := protojson.Unmarshal([]byte(out), m); err != nil {
		t.Fatalf("posture-hub %s --json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (c *cliHub) enrollHost(t *testing.T, id, hostname string) {
	t.Helper()
	now := time.Now()
	_, err := c.hub.Store.EnrollHost(context.Background(), store.Host{
		ID: id, Team: "default", Hostname: hostname, Platform: "darwin", OSName: "macOS", OSVersion: "15.1",
		HardwareUUID: "uuid-" + id, HardwareSerial: "serial-" + id, EnrolledAt: now, LastSeenAt: now,
	})
	if err != nil {
		t.Fatal(err)
	}
}

func team(t *testing.T, c *cliHub, name string) *posturev1.Team {
	t.Helper()
	var resp posturev1.ListTeamsResponse
	c.jsonOut(t, &resp, "teams", "list")
	for _, tm := range resp.GetTeams() {
		if tm.GetName() == name {
			return tm
		}
	}
	t.Fatalf("team %q not listed: %v", name, resp.GetTeams())
	return nil
}

const (
	cliClientID = "11111111-2222-3333-4444-555555555555"
	cliSecret   = "stand-in-secret-value"
)
