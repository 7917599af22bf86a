package hublink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/extension/clock"
	"github.com/posture-dev/posture/extension/internal/fakehub"
	"github.com/posture-dev/posture/extension/spool"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type fakeRunner struct {
	mu       sync.Mutex
	applied  []*posturev1.PolicySet
	rechecks int
	alls     int
	clears   int
	version  string
}

func (r *fakeRunner) Apply(ps *posturev1.PolicySet) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applied = append(r.applied, ps)
	r.version = ps.GetVersion()
}
func (r *fakeRunner) Recheck(ids []string, all bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rechecks++
	if all {
		r.alls++
	}
}
func (r *fakeRunner) Clear() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clears++
	r.version = ""
}
func (r *fakeRunner) Version() string { r.mu.Lock(); defer r.mu.Unlock(); return r.version }
func (r *fakeRunner) get(f func() int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return f()
}

type env struct {
	t      *testing.T
	dir    string
	clk    *clock.Fake
	ca     *fakehub.CA
	st     *fakehub.State
	hub    *fakehub.Hub
	sp     *spool.Spool
	spOpts spool.Options
	run    *fakeRunner
	link   *Link
	boot   *tls.Config
	secret string
	// factsDown makes HostFacts fail, as when osqueryd is not up yet.
	factsDown  atomic.Bool
	factsCalls atomic.Int32
	cancel     context.CancelFunc
	done       chan error
}

func newEnv(t *testing.T) *env {
	clk := clock.NewFake(time.Now())
	ca := fakehub.NewCA(t, clk)
	st := fakehub.NewState()
	e := &env{t: t, dir: t.TempDir(), clk: clk, ca: ca, st: st, secret: "s3cret"}
	e.hub = fakehub.Start(t, st, ca, "")
	boot, err := BootstrapTLS(ca.Pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.boot = boot
	return e
}

func (e *env) startLink() {
	e.t.Helper()
	sp, err := spool.Open(filepath.Join(e.dir, "spool"), e.spOpts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.sp = sp
	e.run = &fakeRunner{}
	l, err := New(Config{
		Hub:          strings.Replace(e.hub.Addr, "127.0.0.1", "localhost", 1),
		EnrollSecret: e.secret,
		Bootstrap:    e.boot,
		StateDir:     e.dir,
		Spool:        sp,
		Runner:       e.run,
		HostFacts: func(context.Context) (*posturev1.HostFacts, error) {
			e.factsCalls.Add(1)
			if e.factsDown.Load() {
				return nil, errors.New("osquery unavailable")
			}
			return &posturev1.HostFacts{Hostname: "mbp", Platform: "darwin", HardwareUuid: "UUID-1"}, nil
		},
		Clock:       e.clk,
		Rand:        rand.New(rand.NewPCG(7, 7)),
		BackoffBase: time.Second,
		BackoffMax:  5 * time.Second,
		Logger:      slog.New(slog.NewTextHandler(testWriter{e.t}, nil)),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.link = l
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.done = make(chan error, 1)
	go func() { e.done <- l.Run(ctx) }()
	e.t.Cleanup(e.stopLink)
}

func (e *env) stopLink() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	<-e.done
	e.cancel = nil
}

func (e *env) restartHub() {
	e.hub.Stop()
	e.hub = fakehub.Start(e.t, e.st, e.ca, e.hub.Addr)
}

// waitFor polls cond, nudging the fake clock by step between polls so
// backoff timers fire. The real-time deadline only bounds a hung test.
func (e *env) waitFor(what string, step time.Duration, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		select {
		case <-time.After(5 * time.Millisecond):
		}
		if step > 0 {
			e.clk.Advance(step)
		}
	}
}

func result(id string, st posturev1.ResultStatus) []*posturev1.PolicyResult {
	return []*posturev1.PolicyResult{{PolicyId: id, Revision: 1, Status: st, EvaluatedAt: timestamppb.Now()}}
}

func (e *env) connected(n int) func() bool {
	return func() bool {
		return e.st.Count(func() int { return e.st.Connects }) >= n && e.run.get(func() int { return len(e.run.applied) }) >= 1
	}
}

func TestEnrollStreamAckFactsRecheck(t *testing.T) {
	e := newEnv(t)
	e.startLink()
	e.waitFor("stream with policy set", time.Second, e.connected(1))

	if n := e.st.Count(func() int { return e.st.Enrolls }); n != 1 {
		t.Fatalf("enrolls = %d, want 1", n)
	}
	fi, err := os.Stat(filepath.Join(e.dir, "key.pem"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key.pem: %v mode %v, want 0600", err, fi.Mode().Perm())
	}
	if id := e.link.Identity(); id == nil || id.HostID != "host-uuid-1" {
		t.Fatalf("identity = %+v", id)
	}
	e.st.Mu.Lock()
	hello := e.st.Hellos[0]
	e.st.Mu.Unlock()
	if hello.GetFacts().GetHardwareUuid() != "UUID-1" || hello.GetFacts().GetPlatform() != "darwin" {
		t.Fatalf("hello facts = %v", hello.GetFacts())
	}
	if e.run.get(func() int { return len(e.run.applied) }) != 1 || e.run.applied[0].GetVersion() != "v1" {
		t.Fatalf("policy set not applied: %v", e.run.applied)
	}
	if _, err := os.Stat(filepath.Join(e.dir, PolicySetFile)); err != nil {
		t.Fatalf("policy set not cached: %v", err)
	}

	e.link.Results(context.Background(), result("disk", posturev1.ResultStatus_RESULT_STATUS_PASS))
	e.waitFor("batch 1 acked", 0, func() bool { return eq(e.st.Seqs(0), []uint64{1}) && e.sp.Depth() == 0 })

	// Facts go once per stream and again only when they change.
	e.link.Facts(context.Background(), map[string]string{"entra_device_id": "dev-1"})
	e.waitFor("facts", 0, func() bool { return e.st.Count(func() int { return len(e.st.Facts) }) == 1 })
	e.link.Facts(context.Background(), map[string]string{"entra_device_id": "dev-1"})
	e.link.Results(context.Background(), result("disk", posturev1.ResultStatus_RESULT_STATUS_FAIL))
	e.waitFor("batch 2", 0, func() bool { return eq(e.st.Seqs(0), []uint64{1, 2}) })
	if n := e.st.Count(func() int { return len(e.st.Facts) }); n != 1 {
		t.Fatalf("unchanged facts sent again (%d reports)", n)
	}
	e.link.Facts(context.Background(), map[string]string{"entra_device_id": "dev-2"})
	e.waitFor("changed facts", 0, func() bool { return e.st.Count(func() int { return len(e.st.Facts) }) == 2 })

	e.st.SendLatest(&posturev1.HubMessage{Msg: &posturev1.HubMessage_Recheck{Recheck: &posturev1.Recheck{All: true}}})
	e.waitFor("recheck", 0, func() bool { return e.run.get(func() int { return e.run.alls }) == 1 })
}

func TestWrongSecretNeverConnects(t *testing.T) {
	e := newEnv(t)
	e.secret = "wrong"
	e.startLink()
	e.waitFor("three enroll attempts", time.Second, func() bool { return e.st.Count(func() int { return e.st.Enrolls }) >= 3 })
	if n := e.st.Count(func() int { return e.st.Connects }); n != 0 {
		t.Fatalf("connected %d times without a certificate", n)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "cert.pem")); !os.IsNotExist(err) {
		t.Fatalf("cert.pem exists after a refused enrollment: %v", err)
	}
}

func TestNothingLostAcrossHubAndAgentRestarts(t *testing.T) {
	e := newEnv(t)
	e.st.AckOff = true
	e.startLink()
	e.waitFor("connected", time.Second, e.connected(1))
	e.link.Results(context.Background(), result("a", posturev1.ResultStatus_RESULT_STATUS_PASS))
	e.link.Results(context.Background(), result("b", posturev1.ResultStatus_RESULT_STATUS_FAIL))
	e.waitFor("two batches sent", 0, func() bool { return eq(e.st.Seqs(1), []uint64{1, 2}) })

	// Hub goes away with both batches unacknowledged; a third is produced
	// while it is down.
	e.hub.Stop()
	e.link.Results(context.Background(), result("c", posturev1.ResultStatus_RESULT_STATUS_ERROR))
	if got := e.sp.Depth(); got != 3 {
		t.Fatalf("pending while hub down = %d, want 3", got)
	}
	e.st.Mu.Lock()
	e.st.AckOff = false
	e.st.Mu.Unlock()
	e.hub = fakehub.Start(t, e.st, e.ca, e.hub.Addr)
	e.waitFor("resend in order after reconnect", time.Second, func() bool {
		return eq(e.st.Seqs(2), []uint64{1, 2, 3}) && e.sp.Depth() == 0
	})
	e.st.Mu.Lock()
	last := e.st.Batches[len(e.st.Batches)-1].Batch
	e.st.Mu.Unlock()
	if last.GetResults()[0].GetPolicyId() != "c" {
		t.Fatalf("batch 3 = %v", last)
	}

	// The agent restarts with a batch unacknowledged.
	e.st.Mu.Lock()
	e.st.AckOff = true
	e.st.Mu.Unlock()
	e.link.Results(context.Background(), result("d", posturev1.ResultStatus_RESULT_STATUS_PASS))
	e.waitFor("batch 4 sent", 0, func() bool { return eq(e.st.Seqs(2), []uint64{1, 2, 3, 4}) })
	e.stopLink()
	e.startLink()
	if e.run.get(func() int { return len(e.run.applied) }) != 1 {
		t.Fatal("cached policy set not applied at start")
	}
	e.waitFor("resend after agent restart", time.Second, func() bool { return eq(e.st.Seqs(3), []uint64{4}) })
	if n := e.st.Count(func() int { return e.st.Enrolls }); n != 1 {
		t.Fatalf("enrolled %d times, want once", n)
	}
	e.st.Mu.Lock()
	e.st.AckOff = false
	e.st.Mu.Unlock()
	e.link.Results(context.Background(), result("e", posturev1.ResultStatus_RESULT_STATUS_PASS))
	e.waitFor("batch 5", 0, func() bool { return eq(e.st.Seqs(3), []uint64{4, 5}) })
	if p := e.sp.Seqs(0); !eq(p, []uint64{4}) {
		t.Fatalf("pending = %v, want only the unacked seq 4", p)
	}
}

func serialOf(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.String()
}

func TestRenewHotSwapKeepsStreamOpen(t *testing.T) {
	e := newEnv(t)
	e.startLink()
	e.waitFor("connected", time.Second, e.connected(1))
	old := e.link.Identity().Leaf.SerialNumber.String()

	// Past 2/3 of the one-hour lifetime: renewal is due.
	e.clk.Advance(45 * time.Minute)
	e.waitFor("renewed", 0, func() bool {
		id := e.link.Identity()
		return e.st.Count(func() int { return e.st.Renews }) == 1 && id.Leaf.SerialNumber.String() != old
	})
	renewed := e.link.Identity().Leaf.SerialNumber.String()
	if got := serialOf(t, filepath.Join(e.dir, "cert.pem")); got != renewed {
		t.Fatalf("cert.pem serial %s, want the renewed %s", got, renewed)
	}
	// Same stream still carries messages both ways.
	e.st.SendLatest(&posturev1.HubMessage{Msg: &posturev1.HubMessage_Recheck{Recheck: &posturev1.Recheck{PolicyIds: []string{"disk"}}}})
	e.waitFor("recheck on the old stream", 0, func() bool { return e.run.get(func() int { return e.run.rechecks }) == 1 })
	e.link.Results(context.Background(), result("disk", posturev1.ResultStatus_RESULT_STATUS_PASS))
	e.waitFor("results on the old stream", 0, func() bool { return eq(e.st.Seqs(1), []uint64{1}) })
	if n := e.st.Count(func() int { return e.st.Connects }); n != 1 {
		t.Fatalf("renewal reconnected the stream (%d connects)", n)
	}
	// The next handshake presents the renewed certificate.
	e.restartHub()
	e.waitFor("reconnected", time.Second, func() bool { return e.st.Count(func() int { return e.st.Connects }) == 2 })
	e.st.Mu.Lock()
	got := e.st.PeerSerials[1].String()
	e.st.Mu.Unlock()
	if got != renewed {
		t.Fatalf("new handshake used serial %s, want renewed %s", got, renewed)
	}
}

func TestDisableStopsPoliciesAndRetriesRarely(t *testing.T) {
	e := newEnv(t)
	e.st.Life = 24 * time.Hour // outlive the hour of waiting
	e.startLink()
	e.waitFor("connected", time.Second, e.connected(1))
	e.st.SendLatest(&posturev1.HubMessage{Msg: &posturev1.HubMessage_Disable{Disable: &posturev1.Disable{Reason: "revoked by admin"}}})
	e.waitFor("cleared", 0, func() bool { return e.run.get(func() int { return e.run.clears }) == 1 })
	if _, err := os.Stat(filepath.Join(e.dir, PolicySetFile)); !os.IsNotExist(err) {
		t.Fatalf("cached policy set kept after Disable: %v", err)
	}
	// Fifty-nine minutes later it has not asked again.
	for i := 0; i < 59; i++ {
		e.clk.Advance(time.Minute)
	}
	if n := e.st.Count(func() int { return e.st.Connects }); n != 1 {
		t.Fatalf("reconnected %d times within the hour", n-1)
	}
	e.waitFor("hourly retry", time.Minute, func() bool { return e.st.Count(func() int { return e.st.Connects }) == 2 })

	// A revoked host is refused at Connect: same treatment.
	e.st.Mu.Lock()
	e.st.Hosts["host-uuid-1"] = true
	e.st.Mu.Unlock()
	e.restartHub()
	e.waitFor("cleared after PermissionDenied", time.Second, func() bool { return e.run.get(func() int { return e.run.clears }) == 2 })
	if n := e.st.Count(func() int { return e.st.Enrolls }); n != 1 {
		t.Fatalf("a revoked host re-enrolled (%d enrolls)", n)
	}
}

func TestUnknownCertificateReenrolls(t *testing.T) {
	e := newEnv(t)
	e.startLink()
	e.waitFor("connected", time.Second, e.connected(1))
	e.st.Mu.Lock()
	delete(e.st.Hosts, "host-uuid-1")
	e.st.Mu.Unlock()
	e.restartHub()
	e.waitFor("re-enrolled and connected", time.Second, func() bool {
		return e.st.Count(func() int { return e.st.Enrolls }) == 2 && e.st.Count(func() int { return e.st.Connects }) == 2
	})
}

func TestExpiredCertificateReenrolls(t *testing.T) {
	e := newEnv(t)
	e.startLink()
	e.waitFor("connected", time.Second, e.connected(1))
	e.stopLink()
	e.clk.Advance(2 * time.Hour) // well past the one-hour certificate
	e.startLink()
	e.waitFor("re-enrolled", time.Second, func() bool {
		return e.st.Count(func() int { return e.st.Enrolls }) == 2 && e.st.Count(func() int { return e.st.Connects }) == 2
	})
}

func TestPinnedBootstrap(t *testing.T) {
	e := newEnv(t)
	good, err := ParsePin(SPKIPin(e.ca.Cert))
	if err != nil {
		t.Fatal(err)
	}
	dial := func(pin []byte) error {
		cfg, err := BootstrapTLS(nil, pin)
		if err != nil {
			return err
		}
		cfg.ServerName = "localhost"
		c, err := tls.Dial("tcp", e.hub.Addr, cfg)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(good); err != nil {
		t.Fatalf("pinned CA refused: %v", err)
	}
	bad := make([]byte, 32)
	if err := dial(bad); err == nil || !strings.Contains(err.Error(), "pin") {
		t.Fatalf("wrong pin accepted or unclear error: %v", err)
	}
	if _, err := ParsePin("sha1/abc"); err == nil {
		t.Fatal("bad pin prefix accepted")
	}
	// And the whole enrollment works with the pin.
	e.boot, _ = BootstrapTLS(nil, good)
	e.startLink()
	e.waitFor("connected via pin", time.Second, e.connected(1))
}

func TestBackoffBounds(t *testing.T) {
	b := &Backoff{Base: time.Second, Max: 60 * time.Second, Rand: rand.New(rand.NewPCG(1, 1))}
	var maxSeen time.Duration
	for i := 0; i < 200; i++ {
		ceil := min(time.Second<<min(i, 30), 60*time.Second)
		d := b.Next()
		if d < 0 || d > ceil {
			t.Fatalf("attempt %d: %v outside [0, %v]", i, d, ceil)
		}
		maxSeen = max(maxSeen, d)
	}
	if maxSeen < 30*time.Second {
		t.Fatalf("backoff never grew (max %v)", maxSeen)
	}
	b.Reset()
	for i := 0; i < 20; i++ {
		b2 := *b
		if d := b2.Next(); d > time.Second {
			t.Fatalf("after reset: %v > base", d)
		}
	}
}

// testWriter sends logs to t.Log so they show only for failing tests.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func eq(a, b []uint64) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func TestEnrollWaitsForOsqueryFacts(t *testing.T) {
	e := newEnv(t)
	e.factsDown.Store(true)
	e.startLink()
	// Several retry rounds pass without an enrollment attempt.
	e.waitFor("three attempts", time.Second, func() bool { return e.factsCalls.Load() >= 3 })
	if n := e.st.Count(func() int { return e.st.Enrolls }); n != 0 {
		t.Fatalf("enrolled %d times without osquery facts", n)
	}
	e.factsDown.Store(false)
	e.waitFor("enrolled once facts are there", time.Second, e.connected(1))
	e.st.Mu.Lock()
	got := e.st.Hellos[0].GetFacts().GetHardwareUuid()
	e.st.Mu.Unlock()
	if got != "UUID-1" {
		t.Fatalf("hello hardware uuid %q", got)
	}
}

func TestRevokedHostEnrollIsTreatedAsDisabled(t *testing.T) {
	e := newEnv(t)
	e.st.Hosts["host-uuid-1"] = true // revoked earlier, e.g. before a reinstall
	e.startLink()
	e.waitFor("enroll refused", time.Second, func() bool { return e.st.Count(func() int { return e.st.Enrolls }) == 1 })
	e.waitFor("cleared", 0, func() bool { return e.run.get(func() int { return e.run.clears }) == 1 })
	// The link now waits an hour: it sleeps on exactly that timer.
	e.waitFor("hour-long wait", 0, func() bool {
		d := e.clk.NextDeadline()
		return !d.IsZero() && d.Sub(e.clk.Now()) > 59*time.Minute
	})
	e.clk.Advance(30 * time.Minute)
	if n := e.st.Count(func() int { return e.st.Enrolls }); n != 1 {
		t.Fatalf("retried enrollment %d times within half an hour", n-1)
	}
}

func TestReenrollWithStoredCABundleWhenNoBootstrapTrust(t *testing.T) {
	e := newEnv(t)
	e.startLink()
	e.waitFor("connected", time.Second, e.connected(1))
	e.stopLink()
	// Restart without --hub-ca: the stored bundle must do, also for
	// enrolling again once the hub has forgotten the host.
	e.boot = nil
	e.st.Mu.Lock()
	delete(e.st.Hosts, "host-uuid-1")
	e.st.Mu.Unlock()
	e.startLink()
	e.waitFor("re-enrolled with the stored bundle", time.Second, func() bool {
		return e.st.Count(func() int { return e.st.Enrolls }) == 2 && e.st.Count(func() int { return e.st.Connects }) == 2
	})
}

// A spool that cannot be written (disk full, directory gone) is reported to
// the hub at once (spool_ok=false), the results wait in memory and are
// retried, and the hub hears when it is fine again.
func TestSpoolWriteFailureIsReportedAndRetried(t *testing.T) {
	e := newEnv(t)
	e.startLink()
	e.waitFor("stream with policy set", time.Second, e.connected(1))
	e.waitFor("health with the hello", 0, func() bool {
		h := e.st.LastHealth()
		return h != nil && h.GetSpoolOk() && h.GetOsqueryOk()
	})
	spoolDir := filepath.Join(e.dir, "spool")
	if err := os.Rename(spoolDir, spoolDir+".away"); err != nil {
		t.Fatal(err)
	}
	e.link.Results(context.Background(), result("disk", posturev1.ResultStatus_RESULT_STATUS_FAIL))
	e.waitFor("spool_ok=false at the hub", 0, func() bool {
		h := e.st.LastHealth()
		return h != nil && !h.GetSpoolOk() && strings.Contains(h.GetDetail(), "spool write failing")
	})
	if err := os.Rename(spoolDir+".away", spoolDir); err != nil {
		t.Fatal(err)
	}
	// The retry timer (fake clock) writes the waiting result; it reaches the hub.
	e.waitFor("result after the spool recovered", time.Second, func() bool {
		e.st.Mu.Lock()
		defer e.st.Mu.Unlock()
		for _, b := range e.st.Batches {
			for _, r := range b.Batch.GetResults() {
				if r.GetPolicyId() == "disk" && r.GetStatus() == posturev1.ResultStatus_RESULT_STATUS_FAIL {
					return true
				}
			}
		}
		return false
	})
	e.waitFor("spool_ok=true again", 0, func() bool { return e.st.LastHealth().GetSpoolOk() })
}

// osquery going away and coming back is told to the hub.
func TestOsqueryHealthReachesHub(t *testing.T) {
	e := newEnv(t)
	e.startLink()
	e.waitFor("stream with policy set", time.Second, e.connected(1))
	e.link.SetOsquery(errors.New("dial unix /var/osquery/osquery.em: connect: no such file or directory"))
	e.waitFor("osquery_ok=false at the hub", 0, func() bool {
		h := e.st.LastHealth()
		return h != nil && !h.GetOsqueryOk() && strings.Contains(h.GetDetail(), "osquery unreachable")
	})
	e.link.SetOsquery(nil)
	e.waitFor("osquery_ok=true at the hub", 0, func() bool {
		h := e.st.LastHealth()
		return h.GetOsqueryOk() && h.GetDetail() == ""
	})
}

// A short hub outage keeps reconnect waits short: the ceiling grows with
// the outage (a quarter of it), capped at Max, with full jitter below it.
func TestBackoffFollowsOutageLength(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	b := &Backoff{Base: 250 * time.Millisecond, Max: 30 * time.Second, Rand: rand.New(rand.NewPCG(3, 3)),
		Clock: clk, OutageFraction: 0.25}
	var maxSeen time.Duration
	for i := 0; i < 400; i++ {
		outage := clk.Now().Sub(time.Unix(1_700_000_000, 0))
		ceil := min(30*time.Second, max(250*time.Millisecond, outage/4))
		d := b.Next()
		if d < 0 || d > ceil {
			t.Fatalf("attempt %d after %v down: wait %v outside [0, %v]", i, outage, d, ceil)
		}
		if outage <= 10*time.Second && d > 2500*time.Millisecond {
			t.Fatalf("after a %v outage the wait is %v", outage, d)
		}
		maxSeen = max(maxSeen, d)
		clk.Advance(d + 10*time.Millisecond) // the failed attempt itself takes a moment
	}
	if maxSeen < 15*time.Second {
		t.Fatalf("backoff never grew during a long outage (max %v)", maxSeen)
	}
	b.Reset()
	clk.Advance(time.Hour) // the time since the last outage does not count
	if d := b.Next(); d > 250*time.Millisecond {
		t.Fatalf("after reset: %v > base", d)
	}
}

// The hub is away while policies keep running: the spool hits its cap and
// compacts (repeats dropped, batches rewritten under new seqs). Once the hub
// is back, it receives every status transition, in order, and the newest
// result of each policy, in batches within the size asked for.
func TestSpoolCompactedDuringOutageDeliversTransitionsInOrder(t *testing.T) {
	e := newEnv(t)
	e.spOpts = spool.Options{MaxBytes: spool.MinMaxBytes, MaxBatchResults: 40}
	e.startLink()
	e.waitFor("connected", time.Second, e.connected(1))
	e.hub.Stop()

	t0 := time.Now().Add(-24 * time.Hour)
	type change struct {
		at time.Time
		st posturev1.ResultStatus
	}
	var want []change // transitions of "disk", in order
	const runs = 300
	for i := range runs {
		at := t0.Add(time.Duration(i) * time.Minute)
		st := posturev1.ResultStatus_RESULT_STATUS_PASS
		if (i/23)%2 == 1 {
			st = posturev1.ResultStatus_RESULT_STATUS_FAIL
		}
		if len(want) == 0 || want[len(want)-1].st != st {
			want = append(want, change{at, st})
		}
		e.link.Results(context.Background(), []*posturev1.PolicyResult{
			{PolicyId: "disk", Revision: 1, Status: st, EvaluatedAt: timestamppb.New(at)},
			{PolicyId: "firewall", Revision: 1, Status: posturev1.ResultStatus_RESULT_STATUS_PASS, EvaluatedAt: timestamppb.New(at)},
		})
		if e.sp.Bytes() > spool.MinMaxBytes {
			t.Fatalf("run %d: spool at %d bytes, cap %d", i, e.sp.Bytes(), spool.MinMaxBytes)
		}
	}
	if d := e.sp.Dropped(); d.Results == 0 || d.Transitions != 0 {
		t.Fatalf("dropped = %+v: want a compaction that kept every transition", d)
	}
	if e.sp.Depth() >= runs {
		t.Fatalf("%d batches pending: not compacted", e.sp.Depth())
	}

	e.hub = fakehub.Start(t, e.st, e.ca, e.hub.Addr)
	e.waitFor("spool drained", time.Second, func() bool { return e.sp.Depth() == 0 })

	var got []change
	newest := map[string]time.Time{}
	var last time.Time
	var seqs []uint64
	e.st.Mu.Lock()
	for _, r := range e.st.Batches {
		if r.Conn < 2 {
			continue
		}
		seqs = append(seqs, r.Batch.GetSeq())
		if n := len(r.Batch.GetResults()); n > 40 {
			t.Errorf("batch %d carries %d results, over MaxBatchResults", r.Batch.GetSeq(), n)
		}
		for _, res := range r.Batch.GetResults() {
			at := res.GetEvaluatedAt().AsTime()
			newest[res.GetPolicyId()] = at
			if res.GetPolicyId() != "disk" {
				continue
			}
			if !at.After(last) {
				t.Errorf("disk result from %v arrived after one from %v", at, last)
			}
			last = at
			if len(got) == 0 || got[len(got)-1].st != res.GetStatus() {
				got = append(got, change{at, res.GetStatus()})
			}
		}
	}
	e.st.Mu.Unlock()
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("seqs out of order: %v", seqs)
		}
	}
	if len(want) < 10 || len(got) != len(want) {
		t.Fatalf("transitions delivered %d, want %d:\n%v\n%v", len(got), len(want), got, want)
	}
	for i := range want {
		if !got[i].at.Equal(want[i].at) || got[i].st != want[i].st {
			t.Fatalf("transition %d: got %v, want %v", i, got[i], want[i])
		}
	}
	end := t0.Add((runs - 1) * time.Minute)
	if !newest["disk"].Equal(end) || !newest["firewall"].Equal(end) {
		t.Fatalf("newest delivered: %v, want both from %v", newest, end)
	}
}

// The spool's drop counters reach the hub in AgentHealth: a change is sent
// once, and nothing else resends an unchanged health.
func TestSpoolDropsSentOnceOnChange(t *testing.T) {
	e := newEnv(t)
	e.spOpts = spool.Options{MaxBytes: spool.MinMaxBytes}
	e.startLink()
	e.waitFor("connected", time.Second, e.connected(1))
	e.waitFor("health with the hello", 0, func() bool { return e.st.LastHealth() != nil })
	e.st.Mu.Lock()
	e.st.AckOff = true // the spool fills up and compacts while connected
	healthBefore := len(e.st.Health)
	e.st.Mu.Unlock()
	if h := e.st.LastHealth(); h.GetSpoolDroppedResults() != 0 || h.GetSpoolDroppedTransitions() != 0 {
		t.Fatalf("drops before any compaction: %v", h)
	}

	t0 := time.Now().Add(-24 * time.Hour)
	errText := "query timed out after 30s: " + strings.Repeat("x", 150)
	run := 0
	// "fw" always passes (its repeats are dropped first); "disk" flaps
	// every run, so in the end the transitions alone outgrow the cap.
	results := func() {
		st, msg := posturev1.ResultStatus_RESULT_STATUS_PASS, ""
		if run%2 == 1 {
			st, msg = posturev1.ResultStatus_RESULT_STATUS_ERROR, errText
		}
		at := timestamppb.New(t0.Add(time.Duration(run) * time.Minute))
		e.link.Results(context.Background(), []*posturev1.PolicyResult{
			{PolicyId: "disk", Revision: 1, Status: st, Error: msg, EvaluatedAt: at},
			{PolicyId: "fw", Revision: 1, Status: posturev1.ResultStatus_RESULT_STATUS_PASS, EvaluatedAt: at},
		})
		run++
	}
	// sync waits until the hub has everything the link sent so far: facts
	// go after health in the same flush, on the same stream.
	syncFacts := func(v string) {
		t.Helper()
		e.link.Facts(context.Background(), map[string]string{"probe": v})
		e.waitFor("facts "+v, 0, func() bool {
			e.st.Mu.Lock()
			defer e.st.Mu.Unlock()
			return len(e.st.Facts) > 0 && e.st.Facts[len(e.st.Facts)-1]["probe"] == v
		})
	}

	for e.sp.Dropped() == (spool.Drops{}) {
		if run > 5000 {
			t.Fatal("the spool never dropped anything")
		}
		results()
	}
	first := e.sp.Dropped()
	if first.Transitions != 0 {
		t.Fatalf("first compaction dropped transitions: %+v", first)
	}
	e.waitFor("drops at the hub", 0, func() bool {
		return e.st.LastHealth().GetSpoolDroppedResults() == first.Results
	})
	syncFacts("1")
	e.st.Mu.Lock()
	sent := len(e.st.Health) - healthBefore
	e.st.Mu.Unlock()
	if sent != 1 {
		t.Fatalf("%d health messages for one change of the drop counters, want 1", sent)
	}
	if h := e.st.LastHealth(); !h.GetSpoolOk() || !h.GetOsqueryOk() || h.GetSpoolDroppedTransitions() != first.Transitions {
		t.Fatalf("health after the first compaction: %v (spool says %+v)", h, first)
	}

	// Flapping on until transitions go too: the hub hears the final
	// counts, and never the same counts twice.
	for e.sp.Dropped().Transitions == 0 {
		if run > 20000 {
			t.Fatal("no transition ever dropped")
		}
		results()
	}
	last := e.sp.Dropped()
	e.waitFor("dropped transitions at the hub", 0, func() bool {
		h := e.st.LastHealth()
		return h.GetSpoolDroppedResults() == last.Results && h.GetSpoolDroppedTransitions() == last.Transitions
	})
	syncFacts("2")
	e.st.Mu.Lock()
	defer e.st.Mu.Unlock()
	hs := e.st.Health[healthBefore:]
	for i := 1; i < len(hs); i++ {
		if hs[i].GetSpoolDroppedResults() == hs[i-1].GetSpoolDroppedResults() &&
			hs[i].GetSpoolDroppedTransitions() == hs[i-1].GetSpoolDroppedTransitions() {
			t.Fatalf("health %d resent with unchanged drops %v", i, hs[i])
		}
	}
	t.Logf("%d runs, %d compaction health sends, drops %+v", run, len(hs), last)
}
