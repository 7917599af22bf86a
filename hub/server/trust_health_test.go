package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/admin"
	"github.com/posture-dev/posture/hub/server"
	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/postgres/pgtest"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// trustHub is a started hub with an admin client, an enroll secret and one
// conditional-access policy.
type trustHub struct {
	p      *hubProc
	admin  posturev1.AdminServiceClient
	actx   context.Context
	secret string
}

func setupTrustHub(t *testing.T, ctx context.Context, cfg server.Config, withPolicy bool) trustHub {
	t.Helper()
	p := startHub(t, cfg)
	nt, _ := admin.NewAPIToken("e2e", store.RoleAdmin, time.Now(), nil)
	if err := p.hub.Store.CreateAPIToken(ctx, nt.Stored); err != nil {
		t.Fatal(err)
	}
	th := trustHub{p: p, admin: posturev1.NewAdminServiceClient(dialHub(t, p.cfg.GRPCAddr, p.hub.CA.CertPEM(), nil)), actx: withToken(ctx, nt.Plain)}
	if withPolicy {
		if _, err := th.admin.ApplyPolicies(th.actx, &posturev1.ApplyPoliciesRequest{
			Policies: []*posturev1.Policy{{Id: "disk", Name: "Disk", Severity: "critical", ConditionalAccess: true, Query: "SELECT 1"}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	sec, err := th.admin.CreateEnrollSecret(th.actx, &posturev1.CreateEnrollSecretRequest{})
	if err != nil {
		t.Fatal(err)
	}
	th.secret = sec.GetSecret()
	return th
}

// waitHost polls GetHost until ok holds.
func (th trustHub) waitHost(t *testing.T, id, what string, ok func(*posturev1.Host) bool) *posturev1.Host {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var h *posturev1.Host
	for time.Now().Before(deadline) {
		var err error
		if h, err = th.admin.GetHost(th.actx, &posturev1.GetHostRequest{Id: id}); err == nil && ok(h) {
			return h
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("host never %s; last: verdict %+v connected %v health %+v", what, h.GetVerdict(), h.GetConnected(), h.GetHealth())
	return nil
}

func sqliteCfg(t *testing.T) server.Config {
	return server.Config{DataDir: t.TempDir(), GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Logger: quietLog,
		DuePoll: 50 * time.Millisecond, PolicyPoll: 100 * time.Millisecond}
}

func verdictIs(state, cause string) func(*posturev1.Host) bool {
	return func(h *posturev1.Host) bool {
		return h.GetVerdict().GetState() == state && h.GetVerdict().GetCause() == cause
	}
}

// A host whose stream stays up but whose batches stop is UNKNOWN and
// written non-compliant after missed_reports intervals; its next batch
// brings it back. (Before: COMPLIANT until stale_after, 24 h.)
func TestSilentConnectedHostFailsClosed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := sqliteCfg(t)
	cfg.PolicyInterval = 300 * time.Millisecond
	th := setupTrustHub(t, ctx, cfg, true)
	ag, err := startSimAgent(ctx, th.p.cfg.GRPCAddr, th.p.hub.CA.CertPEM(), th.secret, "mac-silent", "UUID-SILENT")
	if err != nil {
		t.Fatal(err)
	}
	defer ag.Close()
	ch, err := ag.Send(posturev1.ResultStatus_RESULT_STATUS_PASS, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitAck(t, ch)
	// No further batch: the stream stays connected.
	h := th.waitHost(t, ag.HostID, "went silent", verdictIs("UNKNOWN", "silent"))
	if h.GetVerdict().GetDesired() != "noncompliant" || !h.GetConnected() {
		t.Fatalf("silent host: desired %q connected %v, want noncompliant while connected", h.GetVerdict().GetDesired(), h.GetConnected())
	}
	if h.GetReportInterval().AsDuration() != cfg.PolicyInterval || h.GetLastReportAt() == nil {
		t.Fatalf("cadence not shown: interval %v last report %v", h.GetReportInterval(), h.GetLastReportAt())
	}
	// Reporting again brings it back. The host keeps reporting (as a real
	// agent does), so a slow poll cannot miss the compliant window.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			if _, err := ag.Send(posturev1.ResultStatus_RESULT_STATUS_PASS, nil); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	th.waitHost(t, ag.HostID, "recovered", verdictIs("COMPLIANT", "passing"))
}

// An agent that says it cannot run policies or persist results is shown as
// such and fails closed at once. (Before: the message ended the stream.)
func TestUnhealthyAgentShownAndFailsClosed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	th := setupTrustHub(t, ctx, sqliteCfg(t), true)
	ag := compliantAgent(t, ctx, th, "mac-sick", "UUID-SICK")
	if err := ag.stream.Send(&posturev1.AgentMessage{Msg: &posturev1.AgentMessage_Health{Health: &posturev1.AgentHealth{
		OsqueryOk: true, SpoolOk: false, Detail: "spool: write seq: no space left on device", SpoolDepth: 7, ObservedAt: timestamppb.Now(),
	}}}); err != nil {
		t.Fatal(err)
	}
	h := th.waitHost(t, ag.HostID, "unhealthy", verdictIs("UNKNOWN", "unhealthy"))
	if hh := h.GetHealth(); hh == nil || hh.GetSpoolOk() || hh.GetSpoolDepth() != 7 || !strings.Contains(hh.GetDetail(), "no space") {
		t.Fatalf("health shown as %+v", hh)
	}
	if h.GetVerdict().GetDesired() != "noncompliant" || !h.GetConnected() {
		t.Fatalf("desired %q connected %v", h.GetVerdict().GetDesired(), h.GetConnected())
	}
	if err := ag.stream.Send(&posturev1.AgentMessage{Msg: &posturev1.AgentMessage_Health{Health: &posturev1.AgentHealth{OsqueryOk: true, SpoolOk: true}}}); err != nil {
		t.Fatal(err)
	}
	th.waitHost(t, ag.HostID, "healthy again", verdictIs("COMPLIANT", "passing"))
}

// An agent whose spool dropped history at its cap reports the counts; the
// admin API shows them and the verdict stays what the results say (drops
// are a history gap, not a health failure). A counter past what the store
// keeps is held there, and results are never fewer than transitions.
func TestSpoolDropsShownVerdictUnaffected(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	th := setupTrustHub(t, ctx, sqliteCfg(t), true)
	ag := compliantAgent(t, ctx, th, "mac-gap", "UUID-GAP")
	if err := ag.stream.Send(&posturev1.AgentMessage{Msg: &posturev1.AgentMessage_Health{Health: &posturev1.AgentHealth{
		OsqueryOk: true, SpoolOk: true, SpoolDepth: 2, ObservedAt: timestamppb.Now(),
		SpoolDroppedResults: 4100, SpoolDroppedTransitions: 12,
	}}}); err != nil {
		t.Fatal(err)
	}
	h := th.waitHost(t, ag.HostID, "showing drops", func(h *posturev1.Host) bool {
		return h.GetHealth().GetSpoolDroppedTransitions() == 12
	})
	if hh := h.GetHealth(); hh.GetSpoolDroppedResults() != 4100 || !hh.GetOsqueryOk() || !hh.GetSpoolOk() {
		t.Fatalf("health shown as %+v", hh)
	}
	if v := h.GetVerdict(); v.GetState() != "COMPLIANT" || v.GetDesired() != "compliant" {
		t.Fatalf("verdict with spool drops: %+v", v)
	}
	// The REST view carries them too (uint64 as JSON strings).
	md, _ := metadata.FromOutgoingContext(th.actx)
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+th.p.cfg.HTTPAddr+"/api/v1/hosts/"+ag.HostID, nil)
	req.Header.Set("Authorization", md.Get("authorization")[0])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"spoolDroppedTransitions":"12"`) ||
		!strings.Contains(string(body), `"spoolDroppedResults":"4100"`) {
		t.Fatalf("REST host: %d %s", resp.StatusCode, body)
	}

	if err := ag.stream.Send(&posturev1.AgentMessage{Msg: &posturev1.AgentMessage_Health{Health: &posturev1.AgentHealth{
		OsqueryOk: true, SpoolOk: true, SpoolDroppedResults: 1, SpoolDroppedTransitions: 1<<64 - 1,
	}}}); err != nil {
		t.Fatal(err)
	}
	h = th.waitHost(t, ag.HostID, "clamped drops", func(h *posturev1.Host) bool {
		return h.GetHealth().GetSpoolDroppedTransitions() == store.MaxSpoolDropped
	})
	if hh := h.GetHealth(); hh.GetSpoolDroppedResults() != store.MaxSpoolDropped {
		t.Fatalf("results %d below transitions %d", hh.GetSpoolDroppedResults(), hh.GetSpoolDroppedTransitions())
	}
	th.waitHost(t, ag.HostID, "still compliant", verdictIs("COMPLIANT", "passing"))
}

// A batch of 100,000 distinct policy ids on SQLite is acked as refused, so
// the agent's spool drains; a large batch under the cap records its known
// results and ignores the rest. (Before: "too many SQL variables", no ack,
// resent forever.)
func TestHugeBatchAckedNotResentForever(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	th := setupTrustHub(t, ctx, sqliteCfg(t), true)
	ag, err := startSimAgent(ctx, th.p.cfg.GRPCAddr, th.p.hub.CA.CertPEM(), th.secret, "mac-huge", "UUID-HUGE")
	if err != nil {
		t.Fatal(err)
	}
	defer ag.Close()
	acks := make(chan *posturev1.Ack, 4)
	ag.mu.Lock()
	ag.onAck = func(a *posturev1.Ack) { acks <- a }
	ag.mu.Unlock()
	send := func(seq uint64, n int) {
		t.Helper()
		now := timestamppb.Now()
		b := &posturev1.ResultBatch{Seq: seq}
		b.Results = append(b.Results, &posturev1.PolicyResult{PolicyId: "disk", Revision: 1, Status: posturev1.ResultStatus_RESULT_STATUS_FAIL, EvaluatedAt: now})
		for i := range n - 1 {
			b.Results = append(b.Results, &posturev1.PolicyResult{PolicyId: fmt.Sprintf("p%06d", i), Revision: 1, Status: posturev1.ResultStatus_RESULT_STATUS_PASS, EvaluatedAt: now})
		}
		if err := ag.stream.Send(&posturev1.AgentMessage{Msg: &posturev1.AgentMessage_Results{Results: b}}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(seq uint64) *posturev1.Ack {
		t.Helper()
		select {
		case a := <-acks:
			if a.GetSeq() != seq {
				t.Fatalf("ack for %d, want %d", a.GetSeq(), seq)
			}
			return a
		case <-time.After(60 * time.Second):
			t.Fatalf("batch %d never acked", seq)
		}
		return nil
	}
	send(1, 100_000)
	if a := waitFor(1); !strings.Contains(a.GetRefused(), "exceeds") {
		t.Fatalf("100k batch acked without saying it was refused: %q", a.GetRefused())
	}
	send(2, 9_000)
	if a := waitFor(2); a.GetRefused() != "" {
		t.Fatalf("batch under the cap refused: %q", a.GetRefused())
	}
	h := th.waitHost(t, ag.HostID, "failing disk", verdictIs("NONCOMPLIANT", "failing"))
	if len(h.GetResults()) != 1 {
		t.Fatalf("results of policies outside the host's set were stored: %d results", len(h.GetResults()))
	}
}

// A byte-corrupted SQLite file opens, but the hub stays not-ready and says
// why. (Before: /readyz said ready.)
func TestCorruptSQLiteNotReady(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := sqliteCfg(t)
	th := setupTrustHub(t, ctx, cfg, false)
	// Fill many pages so the middle of the file is table data.
	var ps []*posturev1.Policy
	for i := range 400 {
		ps = append(ps, &posturev1.Policy{Id: fmt.Sprintf("p%03d", i), Name: "P", Severity: "low",
			Query: "SELECT 1 WHERE '" + strings.Repeat("x", 1500) + "' <> ''"})
	}
	if _, err := th.admin.ApplyPolicies(th.actx, &posturev1.ApplyPoliciesRequest{Policies: ps}); err != nil {
		t.Fatal(err)
	}
	th.p.shutdown()
	db := filepath.Join(cfg.DataDir, "posture.db")
	b, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	mid := (len(b) / page / 2) * page
	for i := mid + 8; i < mid+page; i++ {
		b[i] = 0xA5
	}
	if err := os.WriteFile(db, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	p := startHub(t, cfg)
	resp, err := http.Get("http://" + p.hub.HTTPAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "integrity") {
		t.Fatalf("/readyz on a corrupt database: %d %q", resp.StatusCode, body)
	}
}

// Two hubs started together on one empty data dir end up with one CA; on
// SQLite the second refuses the dir with a clear error. (Before: each made
// its own CA.)
func TestTwoHubsOneEmptyDataDir(t *testing.T) {
	t.Run("postgres replicas share one CA", func(t *testing.T) {
		dbURL := pgtest.URL(t)
		for round := range 5 {
			dir := filepath.Join(t.TempDir(), fmt.Sprint(round))
			cfg := server.Config{DataDir: dir, DatabaseURL: dbURL, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Logger: quietLog}
			var wg sync.WaitGroup
			hubs := make([]*server.Hub, 2)
			errs := make([]error, 2)
			start := make(chan struct{})
			for i := range hubs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					hubs[i], errs[i] = server.New(context.Background(), cfg)
				}()
			}
			close(start)
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("round %d hub %d: %v", round, i, err)
				}
				defer hubs[i].Close()
			}
			if string(hubs[0].CA.CertPEM()) != string(hubs[1].CA.CertPEM()) {
				t.Fatalf("round %d: two hubs on one empty data dir made two CAs", round)
			}
			onDisk, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
			if err != nil || string(onDisk) != string(hubs[0].CA.CertPEM()) {
				t.Fatalf("round %d: CA on disk differs from the one in use (%v)", round, err)
			}
		}
	})
	t.Run("sqlite refuses a second hub", func(t *testing.T) {
		cfg := sqliteCfg(t)
		a, err := server.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		_, err = server.New(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), "in use by another posture-hub") {
			t.Fatalf("second hub on one SQLite data dir: %v", err)
		}
	})
}

// `hosts list` through any replica shows a host connected to another, and
// stops once it disconnects. (Before: offline on every other replica.)
func TestConnectionStateAcrossReplicas(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dbURL := pgtest.URL(t)
	shared := t.TempDir()
	cfg := server.Config{DataDir: shared, DatabaseURL: dbURL, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Logger: quietLog, DuePoll: 50 * time.Millisecond, PolicyPoll: 100 * time.Millisecond}
	a := setupTrustHub(t, ctx, cfg, true)
	b := startHub(t, cfg)
	bAdmin := posturev1.NewAdminServiceClient(dialHub(t, b.cfg.GRPCAddr, b.hub.CA.CertPEM(), nil))
	ag, err := startSimAgent(ctx, a.p.cfg.GRPCAddr, a.p.hub.CA.CertPEM(), a.secret, "mac-a", "UUID-A")
	if err != nil {
		t.Fatal(err)
	}
	viaB := trustHub{p: b, admin: bAdmin, actx: a.actx}
	h := viaB.waitHost(t, ag.HostID, "connected via the other replica", func(h *posturev1.Host) bool { return h.GetConnected() })
	if h.GetConnectedReplica() != a.p.hub.Agent.ReplicaID() {
		t.Fatalf("stream on %q, want replica %q", h.GetConnectedReplica(), a.p.hub.Agent.ReplicaID())
	}
	list, err := bAdmin.ListHosts(a.actx, &posturev1.ListHostsRequest{})
	if err != nil || len(list.GetHosts()) != 1 || !list.GetHosts()[0].GetConnected() {
		t.Fatalf("ListHosts via the other replica: %v %+v", err, list)
	}
	ag.Close()
	viaB.waitHost(t, ag.HostID, "disconnected", func(h *posturev1.Host) bool { return !h.GetConnected() })
}

// missed_reports through PATCH: tightening it is a maintainer's, letting
// hosts stay silent longer needs the admin role (it relaxes the team).
func TestRESTPatchMissedReports(t *testing.T) {
	q := startQuickHub(t, server.Config{})
	patch := func(tok, body string) (int, string) {
		return q.do(t, "PATCH", "/api/v1/teams/eng", tok, body)
	}
	if code, body := patch(q.maintainer, `{"settings":{"missedReports":2}}`); code != http.StatusOK {
		t.Fatalf("maintainer tightening missedReports: %d %s", code, body)
	}
	if code, body := patch(q.maintainer, `{"settings":{"missedReports":10}}`); code != http.StatusForbidden || !strings.Contains(body, "silent longer") {
		t.Fatalf("maintainer relaxing missedReports: %d %s, want 403", code, body)
	}
	if code, body := patch(q.admin, `{"settings":{"missedReports":10}}`); code != http.StatusOK {
		t.Fatalf("admin relaxing missedReports: %d %s", code, body)
	}
	if s := q.teamSettings(t, "eng"); s["missedReports"] != float64(10) || s["conditionalAccess"] != true {
		t.Fatalf("after PATCHes: %v", s)
	}
}

// compliantAgent enrolls a simulated agent that reports a pass, and waits
// for its host to be compliant.
func compliantAgent(t *testing.T, ctx context.Context, th trustHub, name, uuid string) *simAgent {
	t.Helper()
	ag, err := startSimAgent(ctx, th.p.cfg.GRPCAddr, th.p.hub.CA.CertPEM(), th.secret, name, uuid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ag.Close)
	ch, err := ag.Send(posturev1.ResultStatus_RESULT_STATUS_PASS, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitAck(t, ch)
	th.waitHost(t, ag.HostID, "compliant", verdictIs("COMPLIANT", "passing"))
	return ag
}
