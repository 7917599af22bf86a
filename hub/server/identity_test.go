package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/admin"
	"github.com/posture-dev/posture/hub/server"
	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/postgres/pgtest"
)

// idHub is an in-process hub with an admin client, for the attacks below.
type idHub struct {
	hp     *hubProc
	caPEM  []byte
	adminc posturev1.AdminServiceClient
	actx   context.Context
}

func startIDHub(t *testing.T, ctx context.Context) *idHub {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	hp := startHub(t, server.Config{
		DataDir: filepath.Join(t.TempDir(), "hub"), GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		PolicyInterval: time.Minute, PolicyPoll: 100 * time.Millisecond,
		DuePoll: 100 * time.Millisecond, SyncPoll: 50 * time.Millisecond, Logger: logger,
	})
	nt, _ := admin.NewAPIToken("trust", store.RoleAdmin, time.Now(), nil)
	if err := hp.hub.Store.CreateAPIToken(ctx, nt.Stored); err != nil {
		t.Fatal(err)
	}
	return &idHub{hp: hp, caPEM: hp.hub.CA.CertPEM(),
		adminc: posturev1.NewAdminServiceClient(dialHub(t, hp.cfg.GRPCAddr, hp.hub.CA.CertPEM(), nil)),
		actx:   withToken(ctx, nt.Plain)}
}

func (th *idHub) secret(t *testing.T, team string) string {
	t.Helper()
	s, err := th.adminc.CreateEnrollSecret(th.actx, &posturev1.CreateEnrollSecretRequest{Team: team})
	if err != nil {
		t.Fatal(err)
	}
	return s.GetSecret()
}

func macFacts(hostname, uuid string) *posturev1.HostFacts {
	return &posturev1.HostFacts{Hostname: hostname, Platform: "darwin", OsPlatform: "darwin", OsName: "macOS", OsVersion: "15.7.2", HardwareUuid: uuid}
}

// enrollRaw enrolls with a fresh key and returns the response and the
// client certificate it names.
func (th *idHub) enrollRaw(ctx context.Context, secret string, facts *posturev1.HostFacts) (*posturev1.EnrollResponse, tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: facts.GetHostname()}}, key)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	conn := dialHubNoT(th.hp.cfg.GRPCAddr, th.caPEM, nil)
	defer conn.Close()
	resp, err := posturev1.NewAgentServiceClient(conn).Enroll(ctx, &posturev1.EnrollRequest{EnrollSecret: secret, Facts: facts, CsrDer: csr})
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	cert, err := tls.X509KeyPair(resp.GetCertificatePem(), pemEncode("EC PRIVATE KEY", keyDER))
	return resp, cert, err
}

// hello opens a stream with cert, sends a Hello and returns the first
// answer's error (nil when the hub sent a PolicySet).
func (th *idHub) hello(ctx context.Context, cert tls.Certificate, facts *posturev1.HostFacts) error {
	conn := dialHubNoT(th.hp.cfg.GRPCAddr, th.caPEM, &cert)
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := posturev1.NewAgentServiceClient(conn).Connect(sctx)
	if err != nil {
		return err
	}
	// Send reports io.EOF when the hub has already ended the stream; its
	// status then comes from Recv.
	if err := stream.Send(&posturev1.AgentMessage{Msg: &posturev1.AgentMessage_Hello{Hello: &posturev1.Hello{Facts: facts}}}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return awaitPolicySet(stream)
}

// awaitPolicySet reads until the hub's PolicySet (a DeviceStatus may come
// first) and returns the stream's error if it ends instead.
func awaitPolicySet(stream posturev1.AgentService_ConnectClient) error {
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		if m.GetPolicySet() != nil {
			return nil
		}
		if m.GetStatus() == nil {
			return fmt.Errorf("unexpected first message %v, want a PolicySet", m)
		}
	}
}

func (th *idHub) host(t *testing.T, id string) *posturev1.Host {
	t.Helper()
	h, err := th.adminc.GetHost(th.actx, &posturev1.GetHostRequest{Id: id})
	if err != nil {
		t.Fatalf("get host %s: %v", id, err)
	}
	return h
}

// The attack: a stolen enroll secret of ANY team plus a victim's hardware
// UUID returned the victim's host id with a fresh certificate, moved the
// victim into the attacker's team, and left the victim's old certificate
// working.
func TestEnrollWithAnotherTeamsSecretDoesNotTakeOverHost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	th := startIDHub(t, ctx)
	victimSecret, attackerSecret := th.secret(t, "finance"), th.secret(t, "lab")
	victim, victimCert, err := th.enrollRaw(ctx, victimSecret, macFacts("victim", "VICTIM-UUID"))
	if err != nil {
		t.Fatal(err)
	}
	attacker, attackerCert, err := th.enrollRaw(ctx, attackerSecret, macFacts("attacker", "victim-uuid"))
	if err != nil {
		t.Fatalf("enroll as a duplicate: %v", err)
	}
	if attacker.GetHostId() == victim.GetHostId() {
		t.Fatal("another team's secret took over the victim's host id")
	}
	if h := th.host(t, victim.GetHostId()); h.GetTeam() != "finance" || h.GetFacts().GetHostname() != "victim" {
		t.Fatalf("victim moved or rewritten: team %q hostname %q", h.GetTeam(), h.GetFacts().GetHostname())
	}
	// Both keys keep working for their own host.
	if err := th.hello(ctx, victimCert, macFacts("victim", "VICTIM-UUID")); err != nil {
		t.Fatalf("victim's certificate after the duplicate enrolled: %v", err)
	}
	if err := th.hello(ctx, attackerCert, macFacts("attacker", "VICTIM-UUID")); err != nil {
		t.Fatalf("duplicate's own certificate: %v", err)
	}
	checkDuplicateFlag(t, th, attacker.GetHostId(), victim.GetHostId())
}

// A same-team re-enroll keeps the host id, and the older certificate is
// dead: refused on Connect and Renew, its open stream cut.
func TestReenrollRetiresTheOldCertificate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	th := startIDHub(t, ctx)
	sec := th.secret(t, "finance")
	first, oldCert, err := th.enrollRaw(ctx, sec, macFacts("mac", "UUID-1"))
	if err != nil {
		t.Fatal(err)
	}
	// An open stream on the old certificate.
	conn := dialHubNoT(th.hp.cfg.GRPCAddr, th.caPEM, &oldCert)
	defer conn.Close()
	stream, err := posturev1.NewAgentServiceClient(conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&posturev1.AgentMessage{Msg: &posturev1.AgentMessage_Hello{Hello: &posturev1.Hello{Facts: macFacts("mac", "UUID-1")}}}); err != nil {
		t.Fatal(err)
	}
	if err := awaitPolicySet(stream); err != nil {
		t.Fatalf("old stream: %v", err)
	}

	second, newCert, err := th.enrollRaw(ctx, sec, macFacts("mac", "UUID-1"))
	if err != nil {
		t.Fatal(err)
	}
	if second.GetHostId() != first.GetHostId() {
		t.Fatalf("same-team re-enroll made a new host %s (was %s)", second.GetHostId(), first.GetHostId())
	}
	// The old stream is cut.
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		t.Logf("old stream ended: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the old certificate's stream stayed open after re-enroll")
	}
	if err := th.hello(ctx, oldCert, macFacts("mac", "UUID-1")); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Connect with the old certificate: %v, want Unauthenticated", err)
	}
	if _, err := posturev1.NewAgentServiceClient(dialHub(t, th.hp.cfg.GRPCAddr, th.caPEM, &oldCert)).Renew(ctx, &posturev1.RenewRequest{CsrDer: newCSR(t)}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Renew with the old certificate: %v, want Unauthenticated", err)
	}
	if err := th.hello(ctx, newCert, macFacts("mac", "UUID-1")); err != nil {
		t.Fatalf("Connect with the new certificate: %v", err)
	}
	checkReenrollFlag(t, th, first.GetHostId(), 1)
}

func TestEnrollWithoutHardwareUUIDRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	th := startIDHub(t, ctx)
	_, _, err := th.enrollRaw(ctx, th.secret(t, ""), macFacts("mac", " "))
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("enroll with no hardware uuid: %v, want InvalidArgument", err)
	}
}

// A Hello naming another host's hardware UUID: refused with a generic
// PermissionDenied, no SQL text, and the same answer for a UUID nobody has.
func TestHelloClaimingAnotherHardwareUUID(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	th := startIDHub(t, ctx)
	sec := th.secret(t, "")
	if _, _, err := th.enrollRaw(ctx, sec, macFacts("a", "UUID-A")); err != nil {
		t.Fatal(err)
	}
	b, bCert, err := th.enrollRaw(ctx, sec, macFacts("b", "UUID-B"))
	if err != nil {
		t.Fatal(err)
	}
	errTaken := th.hello(ctx, bCert, macFacts("b", "UUID-A"))
	errFree := th.hello(ctx, bCert, macFacts("b", "UUID-NOBODY"))
	for _, err := range []error{errTaken, errFree} {
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("Hello with a foreign uuid: %v, want PermissionDenied", err)
		}
		if msg := strings.ToLower(status.Convert(err).Message()); strings.Contains(msg, "constraint") || strings.Contains(msg, "unique") || strings.Contains(msg, "uuid-") {
			t.Fatalf("the refusal leaks: %q", msg)
		}
	}
	if status.Convert(errTaken).Message() != status.Convert(errFree).Message() {
		t.Fatalf("taken and free uuids answer differently: %q vs %q", status.Convert(errTaken).Message(), status.Convert(errFree).Message())
	}
	if h := th.host(t, b.GetHostId()); h.GetFacts().GetHardwareUuid() != "UUID-B" {
		t.Fatalf("host b's uuid became %q", h.GetFacts().GetHardwareUuid())
	}
	if err := th.hello(ctx, bCert, macFacts("b", "UUID-B")); err != nil {
		t.Fatalf("Hello with its own uuid: %v", err)
	}
}

func dialHubNoT(addr string, caPEM []byte, cert *tls.Certificate) *grpc.ClientConn {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		panic(err) // only fails on a malformed target
	}
	return conn
}

// The attack: a passing host that reports a failing device's Entra id must
// never turn that device Compliant in Entra. Both claimants fail closed
// until an admin picks one.
func TestEntraDeviceIDSpoofFailsClosed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const device = "6a0b2f4e-1c3d-4e5f-8a9b-0c1d2e3f4a5b"
	pair := startStandins(t, device)
	th := startIDHub(t, ctx)
	if _, err := th.adminc.CreateIntegration(th.actx, &posturev1.CreateIntegrationRequest{Integration: graphIntegration(pair)}); err != nil {
		t.Fatal(err)
	}
	if _, err := th.adminc.ApplyPolicies(th.actx, &posturev1.ApplyPoliciesRequest{Policies: []*posturev1.Policy{
		{Id: "disk", Name: "Disk", Severity: "critical", ConditionalAccess: true, Query: "SELECT 1"},
	}}); err != nil {
		t.Fatal(err)
	}
	victim, err := startSimAgent(ctx, th.hp.cfg.GRPCAddr, th.caPEM, th.secret(t, "finance"), "victim", "UUID-VICTIM")
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	// The attacker's team has conditional access off: its own verdict is
	// COMPLIANT whatever it reports.
	if _, err := th.adminc.PutTeam(th.actx, &posturev1.PutTeamRequest{Team: &posturev1.Team{Name: "lab", Settings: &posturev1.TeamSettings{
		ConditionalAccess: proto.Bool(false), MaxAllowedSeverity: proto.String(""), ErrorsAsFailures: proto.Bool(false),
		StaleAfter: durationpb.New(0)}}}); err != nil {
		t.Fatal(err)
	}
	attacker, err := startSimAgent(ctx, th.hp.cfg.GRPCAddr, th.caPEM, th.secret(t, "lab"), "attacker", "UUID-ATTACKER")
	if err != nil {
		t.Fatal(err)
	}
	defer attacker.Close()
	attr := func() string { v, _ := pair.Graph.Attribute(device, testAttr); return v }

	if err := victim.ReportDevice(device); err != nil {
		t.Fatal(err)
	}
	ack, err := victim.Send(failSt, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitAck(t, ack)
	eventually(t, "victim written Non-compliant", 30*time.Second, func() (bool, string) { return attr() == "Non-compliant", attr() })

	if err := attacker.ReportDevice(strings.ToUpper(device)); err != nil {
		t.Fatal(err)
	}
	ack, err = attacker.Send(passSt, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitAck(t, ack)
	// Wait until the hub has evaluated the attacker with its claim and
	// drained the outbox, then look at everything Entra was sent.
	eventually(t, "the attacker's claim evaluated and synced", 30*time.Second, func() (bool, string) {
		h := th.host(t, attacker.HostID)
		if h.GetEntraDeviceId() != device || h.GetVerdict() == nil {
			return false, fmt.Sprint(h)
		}
		items, err := th.adminc.ListSyncItems(th.actx, &posturev1.ListSyncItemsRequest{State: "pending"})
		return err == nil && len(items.GetItems()) == 0 && th.hp.hub.Engine.Pending() == 0, fmt.Sprint(items, err)
	})
	if got := values(pair.Graph, device); strings.Contains(strings.Join(got, ","), "Non-compliant,Compliant") || attr() != "Non-compliant" {
		t.Fatalf("a spoofed claim turned the victim's device Compliant: writes %v", got)
	}
	checkConflict(t, th, victim.HostID, attacker.HostID, device)

	// The admin picks the victim: the conflict clears, the attacker's claim
	// no longer writes anything, and the victim's own verdict decides.
	if _, err := th.adminc.SetHostEntraDeviceId(th.actx, &posturev1.SetHostEntraDeviceIdRequest{Id: victim.HostID, EntraDeviceId: device}); err != nil {
		t.Fatal(err)
	}
	ack, err = victim.Send(passSt, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitAck(t, ack)
	eventually(t, "victim Compliant after it passes", 30*time.Second, func() (bool, string) { return attr() == "Compliant", attr() })
	ack, err = victim.Send(failSt, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitAck(t, ack)
	eventually(t, "victim Non-compliant again", 30*time.Second, func() (bool, string) { return attr() == "Non-compliant", attr() })
	ack, err = attacker.Send(passSt, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitAck(t, ack)
	if err := th.hp.hub.Engine.NotifyAll(ctx, true); err != nil {
		t.Fatal(err)
	}
	eventually(t, "everything synced", 30*time.Second, func() (bool, string) {
		items, err := th.adminc.ListSyncItems(th.actx, &posturev1.ListSyncItemsRequest{State: "pending"})
		return err == nil && len(items.GetItems()) == 0 && th.hp.hub.Engine.Pending() == 0, fmt.Sprint(items, err)
	})
	if attr() != "Non-compliant" {
		t.Fatalf("the displaced claimant wrote the device: %v", values(pair.Graph, device))
	}
}

// A revoked host's Entra device stays blocked: a new host (new hardware
// UUID, passing) claiming it is written Non-compliant until an admin
// decides (deletes the revoked host or sets the id on the new one).
func TestRevokedDeviceStaysBlocked(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const device = "7b1c3f5e-2d4e-4f60-9a0b-1c2d3e4f5a6b"
	pair := startStandins(t, device)
	th := startIDHub(t, ctx)
	if _, err := th.adminc.CreateIntegration(th.actx, &posturev1.CreateIntegrationRequest{Integration: graphIntegration(pair)}); err != nil {
		t.Fatal(err)
	}
	if _, err := th.adminc.ApplyPolicies(th.actx, &posturev1.ApplyPoliciesRequest{Policies: []*posturev1.Policy{
		{Id: "disk", Name: "Disk", Severity: "critical", ConditionalAccess: true, Query: "SELECT 1"},
	}}); err != nil {
		t.Fatal(err)
	}
	sec := th.secret(t, "")
	old, err := startSimAgent(ctx, th.hp.cfg.GRPCAddr, th.caPEM, sec, "stolen", "UUID-OLD")
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	attr := func() string { v, _ := pair.Graph.Attribute(device, testAttr); return v }
	if err := old.ReportDevice(device); err != nil {
		t.Fatal(err)
	}
	ack, err := old.Send(passSt, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitAck(t, ack)
	eventually(t, "Compliant", 30*time.Second, func() (bool, string) { return attr() == "Compliant", attr() })
	if _, err := th.adminc.RevokeHost(th.actx, &posturev1.RevokeHostRequest{Id: old.HostID}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Non-compliant after revoke", 30*time.Second, func() (bool, string) { return attr() == "Non-compliant", attr() })

	// The same machine comes back under a new hardware uuid and passes.
	fresh, err := startSimAgent(ctx, th.hp.cfg.GRPCAddr, th.caPEM, sec, "stolen", "UUID-NEW")
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if err := fresh.ReportDevice(device); err != nil {
		t.Fatal(err)
	}
	ack, err = fresh.Send(passSt, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitAck(t, ack)
	eventually(t, "the new claim evaluated and synced", 30*time.Second, func() (bool, string) {
		h := th.host(t, fresh.HostID)
		if h.GetEntraDeviceId() != device || h.GetVerdict() == nil {
			return false, fmt.Sprint(h)
		}
		items, err := th.adminc.ListSyncItems(th.actx, &posturev1.ListSyncItemsRequest{State: "pending"})
		return err == nil && len(items.GetItems()) == 0 && th.hp.hub.Engine.Pending() == 0, fmt.Sprint(items, err)
	})
	if attr() != "Non-compliant" {
		t.Fatalf("a new host released a revoked host's device: writes %v", values(pair.Graph, device))
	}
	// The admin clears it by deleting the revoked host.
	if _, err := th.adminc.DeleteHost(th.actx, &posturev1.DeleteHostRequest{Id: old.HostID}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Compliant once the revoked host is deleted", 30*time.Second, func() (bool, string) { return attr() == "Compliant", attr() })
}

// Across replicas: a stream opened with the old certificate on replica A
// cannot write a result once the host re-enrolled through replica B.
func TestReenrollOnAnotherReplicaRetiresTheOldStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dbURL := pgtest.URL(t)
	work := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := server.Config{
		DataDir: filepath.Join(work, "shared"), DatabaseURL: dbURL, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		PolicyPoll: time.Hour, DuePoll: 100 * time.Millisecond, SyncPoll: 50 * time.Millisecond, Logger: quiet,
	}
	a, b := startHub(t, cfg), startHub(t, cfg)
	nt, _ := admin.NewAPIToken("trust", store.RoleAdmin, time.Now(), nil)
	if err := a.hub.Store.CreateAPIToken(ctx, nt.Stored); err != nil {
		t.Fatal(err)
	}
	caPEM := a.hub.CA.CertPEM()
	adminc := posturev1.NewAdminServiceClient(dialHub(t, a.cfg.GRPCAddr, caPEM, nil))
	actx := withToken(ctx, nt.Plain)
	if _, err := adminc.ApplyPolicies(actx, &posturev1.ApplyPoliciesRequest{Policies: []*posturev1.Policy{
		{Id: "disk", Name: "Disk", Severity: "critical", ConditionalAccess: true, Query: "SELECT 1"},
	}}); err != nil {
		t.Fatal(err)
	}
	sec, err := adminc.CreateEnrollSecret(actx, &posturev1.CreateEnrollSecretRequest{})
	if err != nil {
		t.Fatal(err)
	}
	old, err := startSimAgent(ctx, a.cfg.GRPCAddr, caPEM, sec.GetSecret(), "mac", "UUID-R")
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	ack, err := old.Send(passSt, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitAck(t, ack)

	thB := &idHub{hp: b, caPEM: caPEM}
	again, _, err := thB.enrollRaw(ctx, sec.GetSecret(), macFacts("mac", "UUID-R"))
	if err != nil || again.GetHostId() != old.HostID {
		t.Fatalf("re-enroll through B: %v %v", again, err)
	}
	// The old stream on A sends FAIL: it must be refused, not recorded.
	if _, err := old.Send(failSt, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-old.ended:
	case <-time.After(30 * time.Second):
		t.Fatal("the retired certificate's stream stayed open")
	}
	if status.Code(old.endErr) != codes.Unauthenticated {
		t.Fatalf("old stream ended with %v, want Unauthenticated", old.endErr)
	}
	h, err := adminc.GetHost(actx, &posturev1.GetHostRequest{Id: old.HostID})
	if err != nil {
		t.Fatal(err)
	}
	if r := resultOf(h, "disk"); r.GetStatus() != passSt {
		t.Fatalf("a retired certificate's batch was recorded: %v", r)
	}
}

// A fact report that leaves a fact out (its query failed on the host, e.g.
// before the extension's own table was registered) used to store it as
// empty: every extension restart cleared the host's user principal name for
// a few seconds. An absent fact is now unchanged; an explicitly empty one
// still clears.
func TestFactReportWithoutAFactKeepsIt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	th := startIDHub(t, ctx)
	a, err := startSimAgent(ctx, th.hp.cfg.GRPCAddr, th.caPEM, th.secret(t, "default"), "mac", "UUID-FACTS")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	const dev, upn = "7e6d5c4b-3a29-4817-9605-f4e3d2c1b0a9", "ada@example.com"
	waitIdentity := func(wantDev, wantUPN string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			h := th.host(t, a.HostID)
			if h.GetEntraDeviceId() == wantDev && h.GetUserPrincipalName() == wantUPN {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("identity = (%q, %q), want (%q, %q)", h.GetEntraDeviceId(), h.GetUserPrincipalName(), wantDev, wantUPN)
			}
			select {
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	if err := a.ReportFacts(map[string]string{"entra_device_id": dev, "user_principal_name": upn}); err != nil {
		t.Fatal(err)
	}
	waitIdentity(dev, upn)
	// Only the device id this time; then a marker change proves the report
	// was processed before we look at the UPN.
	if err := a.ReportFacts(map[string]string{"entra_device_id": dev}); err != nil {
		t.Fatal(err)
	}
	if err := a.ReportFacts(map[string]string{"entra_device_id": strings.ToUpper(dev) + "X"}); err != nil {
		t.Fatal(err)
	}
	waitIdentity(dev+"x", upn)
	if err := a.ReportFacts(map[string]string{"entra_device_id": dev, "user_principal_name": ""}); err != nil {
		t.Fatal(err)
	}
	waitIdentity(dev, "")
}
