package intune_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	hubsync "github.com/posture-dev/posture/hub/sync"
	graphstandin "github.com/posture-dev/posture/hub/sync/graph/standin"
	"github.com/posture-dev/posture/hub/sync/intune"
	"github.com/posture-dev/posture/hub/sync/intune/standin"
)

const (
	clientID = "99999999-2222-3333-4444-555555555555"
	secret   = "partner-secret-value"
	device   = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
	userOID  = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	groupID  = "12345678-1234-1234-1234-123456789012"
)

type memState struct {
	mu sync.Mutex
	b  []byte
}

func (m *memState) LoadState(context.Context) (intune.State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var s intune.State
	if len(m.b) > 0 {
		if err := json.Unmarshal(m.b, &s); err != nil {
			return s, err
		}
	}
	return s, nil
}

func (m *memState) SaveState(_ context.Context, s intune.State) error {
	b, err := json.Marshal(s)
	m.mu.Lock()
	m.b = b
	m.mu.Unlock()
	return err
}

type devices map[string]intune.Device

func (d devices) Device(_ context.Context, id string) (intune.Device, error) { return d[id], nil }

type env struct {
	pair *graphstandin.Pair
	in   *standin.Intune
}

func start(t *testing.T) env {
	t.Helper()
	pair, err := graphstandin.Start(graphstandin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pair.Close)
	pair.Entra.RegisterApp(graphstandin.App{ClientID: clientID, Secrets: []graphstandin.Secret{{Value: secret}}})
	in, err := standin.New(pair.CA, pair.Entra, standin.Options{PartnerClientID: clientID})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Close)
	in.AddUser("ada@example.com", userOID)
	in.AddGroup(groupID, "Posture devices")
	return env{pair, in}
}

func (e env) config(st intune.StateStore) intune.Config {
	return intune.Config{Cloud: "custom", AuthorityHost: e.pair.Entra.URL(), GraphBaseURL: e.in.GraphBaseURL(),
		ExtraCAPEM: e.pair.CA.CertPEM(), TenantID: e.pair.Entra.Tenant(), ClientID: clientID, ClientSecret: secret,
		PortalURL: "https://posture.example.com/", Platforms: []string{"macos", "windows", "ios"}, Group: "Posture devices",
		State: st, Devices: devices{"h1": {Name: "mac-1", OS: "macOS", OSVersion: "15.1", UPN: "Ada@example.com", LastSeen: time.Now()}},
		PollInterval: 20 * time.Millisecond, PollTimeout: 5 * time.Second}
}

func change(desired string) hubsync.Change {
	return hubsync.Change{OutboxID: 1, IntegrationID: "p", DeviceID: device, HostID: "h1", Desired: desired, CreatedAt: time.Now()}
}

func TestProvisionOnceAndUpload(t *testing.T) {
	e := start(t)
	st := &memState{}
	s, err := intune.New(e.config(st), "gen-1")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	state, err := s.Maintain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if state.Activation != intune.ActivationActive || state.GroupID != groupID || state.LastHeartbeatAt.IsZero() {
		t.Fatalf("state %+v", state)
	}
	prov, enroll, remediate := e.in.Provisioned()
	if prov != 1 || enroll != "https://posture.example.com/enroll" || remediate != "https://posture.example.com/remediate" {
		t.Fatalf("tenant: %d %s %s", prov, enroll, remediate)
	}
	if p := state.Policies["macos"]; p.State != intune.PolicyAssigned || p.GroupID != groupID {
		t.Fatalf("macos policy %+v", p)
	}
	// iOS is not registered for this partner: an empty 204, surfaced.
	if p := state.Policies["ios"]; p.State != intune.PolicyNotRegistered || !strings.Contains(p.Message, "not registered") {
		t.Fatalf("ios policy %+v", p)
	}
	if ps := e.in.Policies(); len(ps) != 2 || len(ps["macOS"].Groups) != 1 || ps["macOS"].Groups[0] != groupID {
		t.Fatalf("stand-in policies %+v", ps)
	}
	c1 := e.in.Counts()

	// A second sink on the same state (a restart) does nothing again.
	s2, err := intune.New(e.config(st), "gen-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if c2 := e.in.Counts(); c2.Activations != c1.Activations || c2.PolicyCreates != c1.PolicyCreates || c2.Assigns != c1.Assigns || c2.Heartbeats != c1.Heartbeats {
		t.Fatalf("restart repeated work: %+v then %+v", c1, c2)
	}

	// Lost state: activation is repeated (idempotent), the policy is found
	// by its stable id (409), not created twice.
	s3, _ := intune.New(e.config(&memState{}), "gen-1")
	if _, err := s3.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if ps := e.in.Policies(); len(ps) != 2 || e.in.Counts().PolicyConflicts == 0 {
		t.Fatalf("policies after lost state: %+v %+v", ps, e.in.Counts())
	}

	// Upload: pending first, then completed with the user's object id.
	if o := s.Apply(ctx, []hubsync.Change{change(hubsync.DesiredNoncompliant)}); o[0].Kind != hubsync.OutcomeOK {
		t.Fatalf("upload: %+v", o)
	}
	us := e.in.UploadsFor(device)
	if len(us) != 1 || us[0].ComplianceState != "notCompliant" || us[0].UserID != userOID {
		t.Fatalf("uploads %+v", us)
	}
	if e.in.Counts().StatusReads < 2 {
		t.Fatalf("the message was not polled until processed: %+v", e.in.Counts())
	}

	// Expired (revoked) tokens, then a freshly issued token rejected once
	// by a new sink: each retried once with a new token.
	e.pair.Entra.RevokeTokens()
	if o := s.Apply(ctx, []hubsync.Change{change(hubsync.DesiredCompliant)}); o[0].Kind != hubsync.OutcomeOK {
		t.Fatalf("upload after tokens expired: %+v", o)
	}
	if e.in.Compliance(device) != "compliant" {
		t.Fatalf("compliance %q", e.in.Compliance(device))
	}
	e.in.RejectFreshTokens(1)
	before := e.in.Counts().Rejected401
	sFresh, _ := intune.New(e.config(st), "gen-1")
	if o := sFresh.Apply(ctx, []hubsync.Change{change(hubsync.DesiredCompliant)}); o[0].Kind != hubsync.OutcomeOK {
		t.Fatalf("upload with a fresh token rejected once: %+v", o)
	}
	if e.in.Counts().Rejected401 != before+1 {
		t.Fatalf("the fresh token was not rejected: %+v", e.in.Counts())
	}

	// A failed message is a retry with Intune's reason.
	e.in.FailNextMessages(1)
	o := s.Apply(ctx, []hubsync.Change{change(hubsync.DesiredNoncompliant)})
	if o[0].Kind != hubsync.OutcomeRetry || !strings.Contains(o[0].Message, "InternalError") {
		t.Fatalf("failed message: %+v", o)
	}

	// An unknown user is a permanent failure for that device only.
	cfg := e.config(st)
	cfg.Devices = devices{"h1": {Name: "mac-1", UPN: "nobody@example.com"}}
	s4, _ := intune.New(cfg, "gen-1")
	if o := s4.Apply(ctx, []hubsync.Change{change(hubsync.DesiredCompliant)}); o[0].Kind != hubsync.OutcomePermanent {
		t.Fatalf("unknown user: %+v", o)
	}

	// Deprovision: Provisioned 2; uploads stop until a new generation.
	if _, err := s.Deprovision(ctx); err != nil {
		t.Fatal(err)
	}
	if prov, _, _ := e.in.Provisioned(); prov != 2 {
		t.Fatalf("provisioned %d after deprovision", prov)
	}
	if o := s.Apply(ctx, []hubsync.Change{change(hubsync.DesiredCompliant)}); o[0].Kind != hubsync.OutcomeThrottled || o[0].Code != "deprovisioned" {
		t.Fatalf("upload while deprovisioned: %+v", o)
	}
	s5, _ := intune.New(e.config(st), "gen-2")
	if st, err := s5.Maintain(ctx); err != nil || st.Activation != intune.ActivationActive {
		t.Fatalf("reactivation on update: %+v %v", st, err)
	}
}

func TestActivationAnsweredWithoutProvisioning(t *testing.T) {
	e := start(t)
	e.in.AnswerNotProvisioned(1)
	st := &memState{}
	s, _ := intune.New(e.config(st), "g")
	state, err := s.Maintain(context.Background())
	if err == nil || state.Activation != intune.ActivationFailed || !strings.Contains(state.ActivationMessage, "in progress") {
		t.Fatalf("a 200 that did not provision was believed: %+v %v", state, err)
	}
	o := s.Apply(context.Background(), []hubsync.Change{change(hubsync.DesiredCompliant)})
	if o[0].Kind != hubsync.OutcomeOK {
		t.Fatalf("the next attempt activates and uploads: %+v", o)
	}
}

func TestPartnerEndpointsTakeOnlyIntuneTokens(t *testing.T) {
	e := start(t)
	// Activation through a client that asks for the Graph resource only.
	cfg := e.config(&memState{})
	cfg.IntuneResource = "https://graph.microsoft.com" // a Graph token on partner paths
	s, _ := intune.New(cfg, "g")
	if _, err := s.Maintain(context.Background()); err == nil || !strings.Contains(err.Error(), "Invalid audience") {
		t.Fatalf("a Graph token was accepted by the partner API: %v", err)
	}
	if prov, _, _ := e.in.Provisioned(); prov != 0 {
		t.Fatal("provisioned with a wrong-audience token")
	}
}

func TestGroupMembersTransitiveAndPaged(t *testing.T) {
	e := start(t)
	const nested = "22222222-1234-1234-1234-123456789012"
	e.in.AddGroup(nested, "Nested")
	e.in.AddMember(groupID, standin.Member{DeviceID: "D1"})
	e.in.AddMember(groupID, standin.Member{GroupID: nested})
	e.in.AddMember(nested, standin.Member{DeviceID: "d2"})
	e.in.AddMember(nested, standin.Member{DeviceID: "d3"})
	e.in.AddMember(nested, standin.Member{UPN: "Ada@example.com"})
	c, err := intune.NewClient(e.config(&memState{}))
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.GroupMembers(context.Background(), groupID)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(m.DeviceIDs, ",") != "d1,d2,d3" || strings.Join(m.UPNs, ",") != "ada@example.com" {
		t.Fatalf("members %+v", m)
	}
	if e.in.MemberReads() < 3 {
		t.Fatalf("paging not followed: %d reads", e.in.MemberReads())
	}
	if _, err := c.GroupMembers(context.Background(), "33333333-1234-1234-1234-123456789012"); err == nil {
		t.Fatal("a missing group read as empty")
	}
}
