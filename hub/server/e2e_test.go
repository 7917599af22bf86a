package server_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/extension/osquerytest"
	"github.com/posture-dev/posture/extension/spool"
	"github.com/posture-dev/posture/hub/admin"
	"github.com/posture-dev/posture/hub/ca"
	"github.com/posture-dev/posture/hub/policy"
	"github.com/posture-dev/posture/hub/server"
	"github.com/posture-dev/posture/hub/store"
)

// hubProc is an in-process hub that the test can stop and start again on
// the same data dir and port, as an operator restarting it would.
type hubProc struct {
	t    testing.TB
	cfg  server.Config
	hub  *server.Hub
	stop context.CancelFunc
	done chan error
}

func startHub(t testing.TB, cfg server.Config) *hubProc {
	t.Helper()
	h, err := server.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start hub: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &hubProc{t: t, cfg: cfg, hub: h, stop: cancel, done: make(chan error, 1)}
	go func() { p.done <- h.Run(ctx) }()
	// Later starts must reuse the ports agents and clients know.
	p.cfg.GRPCAddr, p.cfg.HTTPAddr = h.GRPCAddr(), h.HTTPAddr()
	t.Cleanup(p.shutdown)
	return p
}

func (p *hubProc) shutdown() {
	if p.stop == nil {
		return
	}
	p.stop()
	if err := <-p.done; err != nil {
		p.t.Errorf("hub run: %v", err)
	}
	p.stop = nil
}

func (p *hubProc) restart() *hubProc {
	p.shutdown()
	return startHub(p.t, p.cfg)
}

func eventually(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if msg != "" {
			last = msg
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (last: %s)", what, last)
		}
		// Polling, not a timing assertion: the deadline only bounds a hang.
		<-time.After(50 * time.Millisecond)
	}
}

// syncBuffer collects a process's output while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func buildExtension(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "posture.ext")
	cmd := exec.Command("go", "build", "-o", out, "github.com/posture-dev/posture/extension")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build posture.ext: %v\n%s", err, b)
	}
	return out
}

type extProc struct {
	cmd *exec.Cmd
	log *syncBuffer
}

func startExtension(t *testing.T, bin string, args ...string) *extProc {
	t.Helper()
	log := &syncBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "POSTURE_ENROLL_SECRET=") // only what the test passes
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &extProc{cmd: cmd, log: log}
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *extProc) stop(t *testing.T) {
	if p.cmd.ProcessState != nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
		t.Errorf("posture.ext did not stop on SIGINT; log:\n%s", p.log.String())
	}
}

func resultOf(h *posturev1.Host, policyID string) *posturev1.HostResult {
	for _, r := range h.GetResults() {
		if r.GetPolicyId() == policyID {
			return r
		}
	}
	return nil
}

// spooledStatuses reads the extension's on-disk spool: policy → statuses in seq order.
func spooledStatuses(t *testing.T, dir, policyID string) []posturev1.ResultStatus {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".batch") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var out []posturev1.ResultStatus
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			continue // acked and removed under us
		}
		rb, err := spool.DecodeFile(b)
		if err != nil {
			continue // mid-rename; the next poll sees it whole
		}
		for _, r := range rb.GetResults() {
			if r.GetPolicyId() == policyID {
				out = append(out, r.GetStatus())
			}
		}
	}
	return out
}

const (
	passSt = posturev1.ResultStatus_RESULT_STATUS_PASS
	failSt = posturev1.ResultStatus_RESULT_STATUS_FAIL
	errSt  = posturev1.ResultStatus_RESULT_STATUS_ERROR
)

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs posture.ext")
	}
	extBin := buildExtension(t)
	work, err := os.MkdirTemp("", "pe2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	hp := startHub(t, server.Config{
		DataDir: filepath.Join(work, "hub"), GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		PolicyInterval: 300 * time.Millisecond, PolicyPoll: 100 * time.Millisecond, Logger: logger,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	caPEM := hp.hub.CA.CertPEM()
	caFile := filepath.Join(work, "hub-ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	nt, err := admin.NewAPIToken("e2e", store.RoleAdmin, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := hp.hub.Store.CreateAPIToken(ctx, nt.Stored); err != nil {
		t.Fatal(err)
	}
	conn := dialHub(t, hp.cfg.GRPCAddr, caPEM, nil)
	adminc := posturev1.NewAdminServiceClient(conn)
	actx := withToken(ctx, nt.Plain)

	// Health and reflection answer on the TLS port.
	hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "posture.v1.AgentService"})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", hc.GetStatus(), err)
	}
	checkReflection(t, ctx, conn)

	sec, err := adminc.CreateEnrollSecret(actx, &posturev1.CreateEnrollSecretRequest{Team: "default", Description: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(work, "secret")
	if err := os.WriteFile(secretFile, []byte(sec.GetSecret()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = adminc.ApplyPolicies(actx, &posturev1.ApplyPoliciesRequest{Policies: []*posturev1.Policy{
		{Id: "disk-encrypted", Name: "FileVault on", Severity: "high", Platforms: []string{"darwin"}, ConditionalAccess: true,
			Query: "SELECT 1 FROM disk_encryption WHERE name = '/dev/disk3s1' AND encrypted = 1"},
		{Id: "firewall-on", Name: "Firewall on", Severity: "medium", Platforms: []string{"darwin"},
			Query: "SELECT 1 FROM alf WHERE global_state >= 1"},
		{Id: "wrong-platform-table", Name: "Uses a Windows table", Severity: "low", Platforms: []string{"darwin"},
			Query: "SELECT 1 FROM bitlocker_info WHERE protection_status = 1"},
		{Id: "windows-only", Name: "Windows only", Severity: "low", Platforms: []string{"windows"},
			Query: "SELECT 1 FROM bitlocker_info"},
	},
		// The default team's settings, but a loaded machine must not make
		// the 300 ms-interval host briefly silent (100 intervals = 30 s).
		Teams: []*posturev1.Team{policy.TeamToProto(store.Team{Name: store.DefaultTeam,
			Settings: store.TeamSettings{ConditionalAccess: true, MissedReports: 100}})},
	})
	if err != nil {
		t.Fatal(err)
	}

	oq, err := osquerytest.Start(ctx, osquerytest.Options{Platform: "darwin", SocketPath: filepath.Join(work, "osq.em"), Hostname: "e2e-mac"})
	if err != nil {
		t.Fatal(err)
	}
	defer oq.Close()

	// A bad enroll secret: refused over the wire, and the real extension
	// gets no host record.
	badFile := filepath.Join(work, "bad-secret")
	os.WriteFile(badFile, []byte("pes_not-the-secret\n"), 0o600)
	badState := filepath.Join(work, "ext-bad")
	bad := startExtension(t, extBin, "--socket", oq.SocketPath(), "--timeout", "10", "--hub", hp.cfg.GRPCAddr,
		"--hub-ca", caFile, "--enroll-secret-path", badFile, "--state-dir", badState, "--no-table")
	eventually(t, "the bad-secret extension to be refused", 30*time.Second, func() (bool, string) {
		l := bad.log.String()
		return strings.Contains(l, "enroll secret is not valid"), l
	})
	bad.stop(t)
	if hs, err := adminc.ListHosts(actx, &posturev1.ListHostsRequest{}); err != nil || len(hs.GetHosts()) != 0 {
		t.Fatalf("a bad secret created hosts: %v %v", hs.GetHosts(), err)
	}
	if _, err := os.Stat(filepath.Join(badState, "cert.pem")); err == nil {
		t.Fatal("the bad-secret extension holds a certificate")
	}

	// A good secret: enrolls and results arrive.
	state := filepath.Join(work, "ext")
	ext := startExtension(t, extBin, "--socket", oq.SocketPath(), "--timeout", "10", "--hub", hp.cfg.GRPCAddr,
		"--hub-ca", caFile, "--enroll-secret-path", secretFile, "--state-dir", state, "--no-table")
	var hostID string
	waitHost := func(what string, ok func(h *posturev1.Host) bool) *posturev1.Host {
		t.Helper()
		var got *posturev1.Host
		eventually(t, what, 60*time.Second, func() (bool, string) {
			hs, err := adminc.ListHosts(actx, &posturev1.ListHostsRequest{IncludeResults: true})
			if err != nil {
				return false, err.Error()
			}
			if len(hs.GetHosts()) != 1 {
				return false, fmt.Sprintf("%d hosts; ext log:\n%s", len(hs.GetHosts()), ext.log.String())
			}
			got = hs.GetHosts()[0]
			return ok(got), fmt.Sprint(got.GetResults())
		})
		return got
	}
	h := waitHost("first results", func(h *posturev1.Host) bool { return len(h.GetResults()) == 3 })
	hostID = h.GetId()
	if h.GetFacts().GetHostname() != "e2e-mac" || h.GetFacts().GetPlatform() != "darwin" || !h.GetConnected() {
		t.Fatalf("host facts wrong: %v connected=%v", h.GetFacts(), h.GetConnected())
	}
	if r := resultOf(h, "disk-encrypted"); r.GetStatus() != passSt {
		t.Fatalf("disk-encrypted = %v", r)
	}
	if r := resultOf(h, "windows-only"); r != nil {
		t.Fatal("a windows policy ran on a mac")
	}
	if r := resultOf(h, "wrong-platform-table"); r.GetStatus() != errSt || !strings.Contains(r.GetError(), "no such table: bitlocker_info") {
		t.Fatalf("wrong-platform-table = %v, want ERROR with osquery's message", r)
	}

	// Renew: only with the host's certificate; the new one names the same host.
	hostCert, err := tls.LoadX509KeyPair(filepath.Join(state, "cert.pem"), filepath.Join(state, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := posturev1.NewAgentServiceClient(conn).Renew(ctx, &posturev1.RenewRequest{CsrDer: newCSR(t)}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Renew without a client certificate: %v, want Unauthenticated", err)
	}
	rn, err := posturev1.NewAgentServiceClient(dialHub(t, hp.cfg.GRPCAddr, caPEM, &hostCert)).Renew(ctx, &posturev1.RenewRequest{CsrDer: newCSR(t)})
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
	blk, _ := pem.Decode(rn.GetCertificatePem())
	renewed, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := ca.HostID(renewed); id != hostID || !renewed.NotAfter.After(hostCert.Leaf.NotAfter.Add(-time.Second)) {
		t.Fatalf("renewed cert names %q until %v", id, renewed.NotAfter)
	}

	// A policy applied while the host is connected reaches it at once.
	pols, err := adminc.ListPolicies(actx, &posturev1.ListPoliciesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	added := append(pols.GetPolicies(), &posturev1.Policy{Id: "sip-on", Name: "SIP on", Severity: "high", Platforms: []string{"darwin"},
		Query: "SELECT 1 FROM sip_config WHERE config_flag = 'sip' AND enabled = 1"})
	if _, err := adminc.ApplyPolicies(actx, &posturev1.ApplyPoliciesRequest{Policies: added}); err != nil {
		t.Fatal(err)
	}
	waitHost("the new policy's first result", func(h *posturev1.Host) bool { return resultOf(h, "sip-on").GetStatus() == passSt })
	if _, err := adminc.DeletePolicy(actx, &posturev1.DeletePolicyRequest{Id: "sip-on"}); err != nil {
		t.Fatal(err)
	}

	// REST over the gateway: token required, hosts listed with results.
	checkREST(t, "http://"+hp.cfg.HTTPAddr, nt.Plain, hostID)

	// A fixture change reaches the hub.
	if err := oq.Exec(ctx, "UPDATE disk_encryption SET encrypted = 0"); err != nil {
		t.Fatal(err)
	}
	waitHost("disk-encrypted FAIL", func(h *posturev1.Host) bool { return resultOf(h, "disk-encrypted").GetStatus() == failSt })

	// The hub goes down; the host keeps evaluating and spools PASS, FAIL, PASS.
	hp.shutdown()
	spool := filepath.Join(state, "spool")
	flipTo := func(v int, want posturev1.ResultStatus) {
		t.Helper()
		if err := oq.Exec(ctx, "UPDATE disk_encryption SET encrypted = ?", v); err != nil {
			t.Fatal(err)
		}
		eventually(t, fmt.Sprintf("a spooled %v", want), 30*time.Second, func() (bool, string) {
			st := spooledStatuses(t, spool, "disk-encrypted")
			return len(st) > 0 && st[len(st)-1] == want, fmt.Sprint(st)
		})
	}
	flipTo(1, passSt)
	flipTo(0, failSt)
	flipTo(1, passSt)
	hp = hp.restart()
	conn = dialHub(t, hp.cfg.GRPCAddr, caPEM, nil)
	adminc = posturev1.NewAdminServiceClient(conn)
	waitHost("spooled results delivered", func(h *posturev1.Host) bool {
		return h.GetConnected() && resultOf(h, "disk-encrypted").GetStatus() == passSt
	})
	eventually(t, "the spool to drain", 30*time.Second, func() (bool, string) {
		ents, _ := filepath.Glob(filepath.Join(spool, "*.batch"))
		return len(ents) == 0, fmt.Sprint(ents)
	})
	hist, err := hp.hub.Store.History(ctx, hostID, "disk-encrypted", 100)
	if err != nil {
		t.Fatal(err)
	}
	sort.SliceStable(hist, func(i, j int) bool { return hist[i].EvaluatedAt.Before(hist[j].EvaluatedAt) })
	var chron []string
	for _, e := range hist {
		chron = append(chron, e.Status)
	}
	// Nothing lost (the FAIL that lived only while the hub was down is
	// there) and nothing doubled (statuses alternate).
	if want := "PASS FAIL PASS FAIL PASS"; strings.Join(chron, " ") != want {
		t.Fatalf("history = %v, want %s", chron, want)
	}

	// Revoked: the open stream is told to stop, its certificate is refused,
	// and it may not enroll again.
	if _, err := adminc.RevokeHost(actx, &posturev1.RevokeHostRequest{Id: hostID}); err != nil {
		t.Fatal(err)
	}
	waitHost("the host to drop its stream", func(h *posturev1.Host) bool { return h.GetRevoked() && !h.GetConnected() })
	cert, err := tls.LoadX509KeyPair(filepath.Join(state, "cert.pem"), filepath.Join(state, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	hostConn := dialHub(t, hp.cfg.GRPCAddr, caPEM, &cert)
	stream, err := posturev1.NewAgentServiceClient(hostConn).Connect(ctx)
	if err == nil {
		_ = stream.Send(&posturev1.AgentMessage{Msg: &posturev1.AgentMessage_Hello{Hello: &posturev1.Hello{Facts: h.GetFacts()}}})
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("revoked host Connect: %v, want PermissionDenied", err)
	}
	_, err = posturev1.NewAgentServiceClient(conn).Enroll(ctx, &posturev1.EnrollRequest{
		EnrollSecret: sec.GetSecret(), Facts: h.GetFacts(), CsrDer: newCSR(t),
	})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("revoked host re-enroll: %v, want PermissionDenied", err)
	}
	// Guessing enroll secrets is rate-limited per source address.
	agent := posturev1.NewAgentServiceClient(conn)
	var last error
	for i := 0; i < 12 && status.Code(last) != codes.ResourceExhausted; i++ {
		_, last = agent.Enroll(ctx, &posturev1.EnrollRequest{EnrollSecret: fmt.Sprintf("pes_guess-%d", i), Facts: h.GetFacts(), CsrDer: newCSR(t)})
	}
	if status.Code(last) != codes.ResourceExhausted {
		t.Fatalf("12 wrong secrets in a row: %v, want ResourceExhausted", last)
	}
	if !strings.Contains(ext.log.String(), "revoked") {
		t.Errorf("the extension did not log its revocation:\n%s", ext.log.String())
	}
}

func newCSR(t *testing.T) []byte {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func withToken(ctx context.Context, tok string) context.Context {
	return grpcMetadata(ctx, "authorization", "Bearer "+tok)
}

func dialHub(t testing.TB, addr string, caPEM []byte, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func checkReflection(t *testing.T, ctx context.Context, conn *grpc.ClientConn) {
	t.Helper()
	rc, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := rc.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"posture.v1.AgentService", "posture.v1.AdminService", "grpc.health.v1.Health"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
	rc.CloseSend()
}

func checkREST(t *testing.T, base, token, hostID string) {
	t.Helper()
	get := func(path, tok string) (int, []byte) {
		req, _ := http.NewRequest("GET", base+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, _ := get("/api/v1/hosts", ""); code != http.StatusUnauthorized {
		t.Errorf("REST without a token: %d, want 401", code)
	}
	code, body := get("/api/v1/hosts?includeResults=true", token)
	if code != http.StatusOK {
		t.Fatalf("REST hosts: %d %s", code, body)
	}
	var out struct {
		Hosts []struct {
			ID      string `json:"id"`
			Results []struct {
				PolicyID string `json:"policyId"`
				Status   string `json:"status"`
			} `json:"results"`
		} `json:"hosts"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("REST hosts body: %v\n%s", err, body)
	}
	if len(out.Hosts) != 1 || out.Hosts[0].ID != hostID || len(out.Hosts[0].Results) != 3 {
		t.Fatalf("REST hosts: %s", body)
	}
	if code, _ := get("/api/v1/hosts/"+hostID, token); code != http.StatusOK {
		t.Errorf("REST get host: %d", code)
	}
	if code, _ := get("/api/v1/hosts/no-such-host", token); code != http.StatusNotFound {
		t.Errorf("REST unknown host: %d, want 404", code)
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, body := get(p, ""); code != http.StatusOK {
			t.Errorf("%s: %d %s", p, code, body)
		}
	}
	if _, body := get("/metrics", ""); !bytes.Contains(body, []byte("posture_agent_batches_total")) {
		t.Error("/metrics lacks posture_agent_batches_total")
	}
}
