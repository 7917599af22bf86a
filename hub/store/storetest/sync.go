package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/store"
	hubsync "github.com/posture-dev/posture/hub/sync"
)

var syncTests = []suiteTest{
	{"Hosts/IdentityAt", testIdentityAt},
	{"Hosts/DeleteTakesVerdictAndExemptions", testDeleteHostSyncData},
	{"Exemptions/ByHost", testExemptions},
	{"Verdicts/RoundTrip", testVerdictRoundTrip},
	{"Verdicts/CASConflictWritesNothing", testVerdictConflict},
	{"Verdicts/BadRowWritesNothing", testVerdictBadRow},
	{"Verdicts/Due", testDueVerdicts},
	{"Verdicts/ConcurrentSaveOneWinner", testVerdictRace},
	{"Integrations/RoundTrip", testIntegrationRoundTrip},
	{"Integrations/Rejects", testIntegrationRejects},
	{"Integrations/KindsAndSinkState", testIntegrationKinds},
	{"Integrations/DeleteDeadLettersPending", testIntegrationDelete},
	{"Facts/ReplaceAndDryRun", testFacts},
	{"SyncItems/ListAndRetry", testSyncItems},
	{"SyncItems/Prune", testPruneSyncItems},
	{"SyncItems/ResumeIntegration", testResumeSyncItems},
	{"SyncItems/RevokeSessionsKind", testRevokeSessionsKind},
	{"DeviceChecks/SaveGetDelete", testDeviceChecks},
}

func orow(integ, dev, desired string, created time.Time) store.OutboxRow {
	return store.OutboxRow{IntegrationID: integ, TenantID: "tenant-" + integ, DeviceID: dev, HostID: "host-" + dev,
		Desired: desired, Verdict: "NONCOMPLIANT", CreatedAt: created}
}

func verdict(host, state string, next *time.Time) store.Verdict {
	desired := "noncompliant"
	if state == "COMPLIANT" || state == "GRACE" {
		desired = "compliant"
	}
	return store.Verdict{HostID: host, State: state, Cause: "failing", Desired: desired,
		Reasons: []byte(`[{"policy":"p"}]`), NextTransition: next, UpdatedAt: t0}
}

// items lists sync items of a state ("" = pending and dead) of every
// integration.
func items(t *testing.T, s store.Store, state string) []store.SyncItem {
	t.Helper()
	return must(s.ListSyncItems(ctx(t), state, "", 0))(t)
}

func itemDevices(its []store.SyncItem) []string {
	var out []string
	for _, it := range its {
		out = append(out, it.IntegrationID+"/"+it.DeviceID+"="+it.Desired)
	}
	slices.Sort(out)
	return out
}

func testIdentityAt(t *testing.T, s store.Store) {
	h := enroll(t, s, "ada", "")
	if h.IdentityAt != nil {
		t.Fatalf("new host has IdentityAt %v", h.IdentityAt)
	}
	before := time.Now().Add(-time.Second)
	// Empty values still record that the host reported (no registration).
	noErr(t, s.SetHostIdentity(ctx(t), h.ID, "", ""))
	got := must(s.GetHost(ctx(t), h.ID))(t)
	if got.IdentityAt == nil || got.IdentityAt.Before(before) || got.IdentityAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("IdentityAt after an empty report = %v, want about now", got.IdentityAt)
	}
	utcTime(t, "IdentityAt", *got.IdentityAt)
	if got.EntraDeviceID != "" || got.UserPrincipalName != "" {
		t.Fatalf("identity %q %q, want empty", got.EntraDeviceID, got.UserPrincipalName)
	}
	noErr(t, s.SetHostIdentity(ctx(t), h.ID, "dev-1", "ada@example.com"))
	listed := must(s.ListHosts(ctx(t), store.HostFilter{}))(t)
	if len(listed) != 1 || listed[0].IdentityAt == nil || listed[0].EntraDeviceID != "dev-1" ||
		listed[0].UserPrincipalName != "ada@example.com" {
		t.Fatalf("listed host %+v", listed)
	}
	// Re-enrolling keeps it: the identity is still what the host reported.
	again := must(s.EnrollHost(ctx(t), store.Host{Hostname: "ada", HardwareUUID: "hw-ada", EnrolledAt: at(time.Hour)}))(t)
	if again.ID != h.ID || again.IdentityAt == nil || !again.IdentityAt.Equal(*listed[0].IdentityAt) {
		t.Fatalf("re-enrolled host %+v lost IdentityAt %v", again, listed[0].IdentityAt)
	}
	wantErr(t, s.SetHostIdentity(ctx(t), "no-such-host", "", ""), store.ErrNotFound)
}

func testDeleteHostSyncData(t *testing.T, s store.Store) {
	h := enroll(t, s, "ada", "")
	other := enroll(t, s, "bob", "")
	noErr(t, s.CreateExemption(ctx(t), store.Exemption{ID: "ex-1", HostID: h.ID, ExpiresAt: at(time.Hour)}))
	noErr(t, s.CreateExemption(ctx(t), store.Exemption{ID: "ex-2", HostID: other.ID, ExpiresAt: at(time.Hour)}))
	noErr(t, s.SaveVerdict(ctx(t), verdict(h.ID, "NONCOMPLIANT", nil), 0,
		[]store.OutboxRow{orow("A", "dev-ada", "noncompliant", t0)}))
	noErr(t, s.SaveVerdict(ctx(t), verdict(other.ID, "COMPLIANT", nil), 0, nil))

	noErr(t, s.DeleteHost(ctx(t), h.ID))
	_, err := s.GetVerdict(ctx(t), h.ID)
	wantErr(t, err, store.ErrNotFound)
	eq(t, "exemptions of the deleted host", len(must(s.ListExemptions(ctx(t), h.ID))(t)), 0)
	eq(t, "all exemptions", len(must(s.ListExemptions(ctx(t), ""))(t)), 1)
	eq(t, "other verdicts", len(must(s.ListVerdicts(ctx(t)))(t)), 1)
	// Outbox rows are history: they stay.
	eq(t, "outbox rows after delete", itemDevices(items(t, s, "")), []string{"A/dev-ada=noncompliant"})
}

func testExemptions(t *testing.T, s store.Store) {
	a := enroll(t, s, "ada", "")
	b := enroll(t, s, "bob", "")
	wantErr(t, s.CreateExemption(ctx(t), store.Exemption{ID: "x", HostID: "no-such-host", ExpiresAt: at(time.Hour)}), store.ErrNotFound)
	wantErr(t, s.CreateExemption(ctx(t), store.Exemption{ID: "x", HostID: a.ID}), store.ErrInvalid)
	wantErr(t, s.CreateExemption(ctx(t), store.Exemption{HostID: a.ID, ExpiresAt: at(time.Hour)}), store.ErrInvalid)

	e2 := store.Exemption{ID: "ex-2", HostID: a.ID, PolicyID: "", Reason: "loaner", CreatedBy: "admin",
		CreatedAt: at(2 * time.Minute), ExpiresAt: at(48 * time.Hour)}
	e1 := store.Exemption{ID: "ex-1", HostID: a.ID, PolicyID: "filevault", Reason: "repair", CreatedBy: "ops",
		CreatedAt: at(time.Minute), ExpiresAt: at(-time.Hour)} // already expired: still listed
	e3 := store.Exemption{ID: "ex-3", HostID: b.ID, PolicyID: "firewall", CreatedAt: at(3 * time.Minute), ExpiresAt: at(time.Hour)}
	for _, e := range []store.Exemption{e2, e1, e3} {
		noErr(t, s.CreateExemption(ctx(t), e))
	}
	wantErr(t, s.CreateExemption(ctx(t), e1), store.ErrConflict)
	norm := func(e store.Exemption) store.Exemption {
		e.CreatedAt, e.ExpiresAt = micro(e.CreatedAt), micro(e.ExpiresAt)
		return e
	}
	got := must(s.ListExemptions(ctx(t), a.ID))(t)
	eq(t, "exemptions of ada (by created-at)", got, []store.Exemption{norm(e1), norm(e2)})
	utcTime(t, "ExpiresAt", got[0].ExpiresAt)
	eq(t, "all exemptions", must(s.ListExemptions(ctx(t), ""))(t), []store.Exemption{norm(e1), norm(e2), norm(e3)})

	// CreatedAt defaults to now.
	before := time.Now().Add(-time.Second)
	noErr(t, s.CreateExemption(ctx(t), store.Exemption{ID: "ex-4", HostID: b.ID, ExpiresAt: at(time.Hour)}))
	bs := must(s.ListExemptions(ctx(t), b.ID))(t)
	if len(bs) != 2 || bs[1].ID != "ex-4" || bs[1].CreatedAt.Before(before) {
		t.Fatalf("exemptions of bob %+v", bs)
	}

	noErr(t, s.DeleteExemption(ctx(t), "ex-1"))
	wantErr(t, s.DeleteExemption(ctx(t), "ex-1"), store.ErrNotFound)
	eq(t, "after delete", must(s.ListExemptions(ctx(t), a.ID))(t), []store.Exemption{norm(e2)})
}

func testVerdictRoundTrip(t *testing.T, s store.Store) {
	a := enroll(t, s, "ada", "")
	b := enroll(t, s, "bob", "")
	_, err := s.GetVerdict(ctx(t), a.ID)
	wantErr(t, err, store.ErrNotFound)

	next := at(90 * time.Minute)
	va := verdict(a.ID, "GRACE", &next)
	noErr(t, s.SaveVerdict(ctx(t), va, 0, nil))
	vb := store.Verdict{HostID: b.ID, State: "UNKNOWN", Cause: "no_results", UpdatedAt: at(time.Second)}
	noErr(t, s.SaveVerdict(ctx(t), vb, 0, nil))

	wa := va
	wa.Version, wa.UpdatedAt = 1, micro(t0)
	n := micro(next)
	wa.NextTransition = &n
	got := must(s.GetVerdict(ctx(t), a.ID))(t)
	eq(t, "stored verdict", got, wa)
	utcTime(t, "UpdatedAt", got.UpdatedAt)
	utcTime(t, "NextTransition", *got.NextTransition)

	wb := vb
	wb.Version, wb.UpdatedAt = 1, micro(vb.UpdatedAt)
	want := []store.Verdict{wa, wb}
	if b.ID < a.ID {
		want = []store.Verdict{wb, wa}
	}
	eq(t, "listed verdicts (by host id)", must(s.ListVerdicts(ctx(t)))(t), want)

	// The next save replaces every field and clears what is unset.
	va2 := store.Verdict{HostID: a.ID, State: "NONCOMPLIANT", Cause: "failing", Desired: "noncompliant", UpdatedAt: at(time.Hour)}
	noErr(t, s.SaveVerdict(ctx(t), va2, 1, nil))
	va2.Version, va2.UpdatedAt = 2, micro(va2.UpdatedAt)
	eq(t, "replaced verdict", must(s.GetVerdict(ctx(t), a.ID))(t), va2)

	// A verdict needs a known host and a valid state.
	wantErr(t, s.SaveVerdict(ctx(t), verdict("no-such-host", "COMPLIANT", nil), 0, nil), store.ErrNotFound)
	bad := verdict(b.ID, "FINE", nil)
	wantErr(t, s.SaveVerdict(ctx(t), bad, 1, nil), store.ErrInvalid)
	bad = verdict(b.ID, "COMPLIANT", nil)
	bad.Desired = "Compliant"
	wantErr(t, s.SaveVerdict(ctx(t), bad, 1, nil), store.ErrInvalid)
	eq(t, "verdict after refused saves", must(s.GetVerdict(ctx(t), b.ID))(t), wb)
}

func testVerdictConflict(t *testing.T, s store.Store) {
	h := enroll(t, s, "ada", "")
	first := []store.OutboxRow{orow("A", "dev-ada", "noncompliant", t0), orow("B", "dev-ada", "noncompliant", t0)}
	noErr(t, s.SaveVerdict(ctx(t), verdict(h.ID, "NONCOMPLIANT", nil), 0, first))
	eq(t, "rows of the first save", itemDevices(items(t, s, store.SyncPending)),
		[]string{"A/dev-ada=noncompliant", "B/dev-ada=noncompliant"})

	// A second "first" save and a save from a stale version both lose.
	lost := []store.OutboxRow{orow("A", "dev-ada", "compliant", at(time.Second))}
	err := s.SaveVerdict(ctx(t), verdict(h.ID, "COMPLIANT", nil), 0, lost)
	wantErr(t, err, store.ErrConflict)
	noErr(t, s.SaveVerdict(ctx(t), verdict(h.ID, "COMPLIANT", nil), 1, []store.OutboxRow{orow("A", "dev-ada", "compliant", at(time.Minute))}))
	err = s.SaveVerdict(ctx(t), verdict(h.ID, "NONCOMPLIANT", nil), 1, []store.OutboxRow{orow("A", "dev-ada", "noncompliant", at(2*time.Minute))})
	wantErr(t, err, store.ErrConflict)
	err = s.SaveVerdict(ctx(t), verdict(h.ID, "NONCOMPLIANT", nil), 5, lost)
	wantErr(t, err, store.ErrConflict)

	v := must(s.GetVerdict(ctx(t), h.ID))(t)
	if v.Version != 2 || v.State != "COMPLIANT" {
		t.Fatalf("verdict after lost saves: %+v, want version 2 COMPLIANT", v)
	}
	eq(t, "rows: only successful saves enqueued", itemDevices(items(t, s, store.SyncPending)),
		[]string{"A/dev-ada=compliant", "A/dev-ada=noncompliant", "B/dev-ada=noncompliant"})
	// The verdict's rows set the device's desired state, as Enqueue does.
	if ds, ok := s.(hubsync.DeviceStates); ok {
		got := map[string]string{}
		for _, d := range must(ds.DeviceStates(ctx(t), hubsync.DeviceKey{}, 0))(t) {
			got[d.Key.IntegrationID+"/"+d.Key.DeviceID] = d.Desired
			if d.HostID != "host-dev-ada" || d.TenantID != "tenant-"+d.Key.IntegrationID || !d.Pending {
				t.Fatalf("device state %+v", d)
			}
		}
		eq(t, "desired per device", got, map[string]string{"A/dev-ada": "compliant", "B/dev-ada": "noncompliant"})
	}
}

func testVerdictBadRow(t *testing.T, s store.Store) {
	h := enroll(t, s, "ada", "")
	bad := []store.OutboxRow{
		orow("A", "dev-ada", "noncompliant", t0),
		orow("A", "dev-ada", "Non-compliant", t0), // not a desired state
	}
	wantErr(t, s.SaveVerdict(ctx(t), verdict(h.ID, "NONCOMPLIANT", nil), 0, bad), store.ErrInvalid)
	for _, r := range []store.OutboxRow{
		{DeviceID: "d", Desired: "compliant", CreatedAt: t0},
		{IntegrationID: "A", Desired: "compliant", CreatedAt: t0},
		{IntegrationID: "A", DeviceID: "d", Desired: "compliant"},
	} {
		wantErr(t, s.SaveVerdict(ctx(t), verdict(h.ID, "NONCOMPLIANT", nil), 0, []store.OutboxRow{r}), store.ErrInvalid)
	}
	_, err := s.GetVerdict(ctx(t), h.ID)
	wantErr(t, err, store.ErrNotFound)
	eq(t, "rows after refused saves", len(items(t, s, "")), 0)
}

func testDueVerdicts(t *testing.T, s store.Store) {
	var ids []string
	for i, next := range []*time.Time{ptr(at(2 * time.Minute)), ptr(at(time.Minute)), nil, ptr(at(time.Hour))} {
		h := enroll(t, s, name("host", i), "")
		ids = append(ids, h.ID)
		noErr(t, s.SaveVerdict(ctx(t), verdict(h.ID, "GRACE", next), 0, nil))
	}
	eq(t, "due before any", len(must(s.DueVerdicts(ctx(t), at(59*time.Second), 10))(t)), 0)
	eq(t, "due at the first (inclusive)", must(s.DueVerdicts(ctx(t), at(time.Minute), 10))(t), []string{ids[1]})
	eq(t, "due, earliest first", must(s.DueVerdicts(ctx(t), at(5*time.Minute), 10))(t), []string{ids[1], ids[0]})
	eq(t, "due, limited", must(s.DueVerdicts(ctx(t), at(5*time.Minute), 1))(t), []string{ids[1]})
	eq(t, "due, no limit", must(s.DueVerdicts(ctx(t), at(2*time.Hour), 0))(t), []string{ids[1], ids[0], ids[3]})
	// Saving without a next transition takes the host off the list.
	noErr(t, s.SaveVerdict(ctx(t), verdict(ids[1], "NONCOMPLIANT", nil), 1, nil))
	eq(t, "due after save", must(s.DueVerdicts(ctx(t), at(5*time.Minute), 10))(t), []string{ids[0]})
}

func ptr[T any](v T) *T { return &v }

// Two evaluators save from one version at once: exactly one wins, and only
// its outbox rows exist.
func testVerdictRace(t *testing.T, s store.Store) {
	const rounds = 8
	h := enroll(t, s, "ada", "")
	noErr(t, s.SaveVerdict(ctx(t), verdict(h.ID, "COMPLIANT", nil), 0, nil))
	for r := range rounds {
		prev := int64(r + 1)
		states := []string{"NONCOMPLIANT", "COMPLIANT"}
		errs := make([]error, 2)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				v := verdict(h.ID, states[i], nil)
				v.Cause = fmt.Sprintf("round %d writer %d", r, i)
				rows := []store.OutboxRow{orow("A", fmt.Sprintf("dev-r%d-w%d", r, i), "compliant", t0),
					orow("B", fmt.Sprintf("dev-r%d-w%d", r, i), "compliant", t0)}
				errs[i] = s.SaveVerdict(t.Context(), v, prev, rows)
			}()
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner == -1:
				winner = i
			case err == nil:
				t.Fatalf("round %d: both saves from version %d won", r, prev)
			case !errors.Is(err, store.ErrConflict):
				t.Fatalf("round %d writer %d: %v, want ErrConflict", r, i, err)
			}
		}
		if winner == -1 {
			t.Fatalf("round %d: no save won: %v", r, errs)
		}
		v := must(s.GetVerdict(ctx(t), h.ID))(t)
		if v.Version != prev+1 || v.Cause != fmt.Sprintf("round %d writer %d", r, winner) {
			t.Fatalf("round %d: stored %+v, want writer %d at version %d", r, v, winner, prev+1)
		}
		var got []string
		for _, it := range items(t, s, store.SyncPending) {
			if it.DeviceID == fmt.Sprintf("dev-r%d-w%d", r, 0) || it.DeviceID == fmt.Sprintf("dev-r%d-w%d", r, 1) {
				got = append(got, it.IntegrationID+"/"+it.DeviceID)
			}
		}
		slices.Sort(got)
		dev := fmt.Sprintf("dev-r%d-w%d", r, winner)
		eq(t, fmt.Sprintf("round %d rows", r), got, []string{"A/" + dev, "B/" + dev})
	}
}

func fullIntegration(id string) store.Integration {
	return store.Integration{
		ID: id, Name: "Contoso " + id, Kind: "graph", Cloud: "custom",
		AuthorityHost: "https://login.example.test/", GraphBaseURL: "https://graph.example.test/v1.0", GraphResource: "https://graph.microsoft.us",
		ExtraCAPEM: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
		TenantID:   "tenant-1", ClientID: "client-1", CredentialKind: "certificate",
		SealedCredential: []byte{0x01, 0x00, 0xff, 0x7f}, SealedCertPassword: []byte{0x02, 0x03},
		SecretExpiresAt: ptr(at(30 * 24 * time.Hour)), CertNotAfter: ptr(at(365 * 24 * time.Hour)),
		ExtensionAttribute: 15, CompliantValue: "Yes", NoncompliantValue: "No",
		Teams: []string{"eng", "default"}, CreatedAt: t0, UpdatedAt: t0,
	}
}

func normIntegration(in store.Integration) store.Integration {
	in.CreatedAt, in.UpdatedAt = micro(in.CreatedAt), micro(in.UpdatedAt)
	for _, p := range []**time.Time{&in.SecretExpiresAt, &in.CertNotAfter, &in.HealthCheckedAt} {
		if *p != nil {
			*p = ptr(micro(**p))
		}
	}
	if in.Teams != nil {
		in.Teams = slices.Sorted(slices.Values(in.Teams))
	}
	if len(in.Settings) == 0 {
		in.Settings = []byte("{}")
	}
	in.SinkState = []byte("{}") // Create and Update never write it
	return in
}

func testIntegrationKinds(t *testing.T, s store.Store) {
	// A webhook has no tenant or app; its credential is the signing secret.
	wh := store.Integration{ID: "wh", Kind: "webhook", CredentialKind: "secret", SealedCredential: []byte("sealed"),
		Settings: []byte(`{"url":"https://example.test/hook"}`), CreatedAt: t0, UpdatedAt: t0}
	noErr(t, s.CreateIntegration(ctx(t), wh))
	got := must(s.GetIntegration(ctx(t), "wh"))(t)
	if got.Kind != "webhook" || string(got.Settings) != `{"url":"https://example.test/hook"}` || string(got.SinkState) != "{}" {
		t.Fatalf("webhook integration: %+v", got)
	}
	// The sink state is written on its own, survives updates, and does not
	// move updated-at (the sink cache key).
	noErr(t, s.SetIntegrationSinkState(ctx(t), "wh", []byte(`{"activated":true}`)))
	got = must(s.GetIntegration(ctx(t), "wh"))(t)
	if string(got.SinkState) != `{"activated":true}` || !got.UpdatedAt.Equal(micro(t0)) {
		t.Fatalf("sink state: %s updated %v", got.SinkState, got.UpdatedAt)
	}
	got.Settings, got.SinkState, got.UpdatedAt = []byte(`{"url":"https://example.test/2"}`), []byte(`{"x":1}`), at(time.Hour)
	noErr(t, s.UpdateIntegration(ctx(t), got))
	got = must(s.GetIntegration(ctx(t), "wh"))(t)
	if string(got.SinkState) != `{"activated":true}` || string(got.Settings) != `{"url":"https://example.test/2"}` {
		t.Fatalf("after update: settings %s state %s", got.Settings, got.SinkState)
	}
	wantErr(t, s.SetIntegrationSinkState(ctx(t), "nope", []byte("{}")), store.ErrNotFound)

	// A partner integration needs its tenant and app like graph.
	p := fullIntegration("partner")
	p.Kind, p.ExtensionAttribute = "intune-partner", 0
	noErr(t, s.CreateIntegration(ctx(t), p))
	p.ID, p.TenantID = "partner2", ""
	wantErr(t, s.CreateIntegration(ctx(t), p), store.ErrInvalid)
	bad := wh
	bad.ID, bad.Kind = "bad", "carrier-pigeon"
	wantErr(t, s.CreateIntegration(ctx(t), bad), store.ErrInvalid)
	bad.Kind, bad.Settings = "webhook", []byte(`[1]`)
	wantErr(t, s.CreateIntegration(ctx(t), bad), store.ErrInvalid)
}

func testIntegrationRoundTrip(t *testing.T, s store.Store) {
	full := fullIntegration("int-b")
	noErr(t, s.CreateIntegration(ctx(t), full))
	got := must(s.GetIntegration(ctx(t), "int-b"))(t)
	eq(t, "full integration (teams sorted)", got, normIntegration(full))
	utcTime(t, "CertNotAfter", *got.CertNotAfter)

	// Nil times and no teams stay nil; defaults fill kind, cloud and values.
	bare := store.Integration{ID: "int-a", TenantID: "t", ClientID: "c", CredentialKind: "secret",
		SealedCredential: []byte("sealed"), ExtensionAttribute: 1, CreatedAt: t0, UpdatedAt: t0}
	noErr(t, s.CreateIntegration(ctx(t), bare))
	wantBare := normIntegration(bare)
	wantBare.Kind, wantBare.Cloud = "graph", "public"
	wantBare.CompliantValue, wantBare.NoncompliantValue = "Compliant", "Non-compliant"
	gotBare := must(s.GetIntegration(ctx(t), "int-a"))(t)
	eq(t, "bare integration", gotBare, wantBare)
	if gotBare.SecretExpiresAt != nil || gotBare.CertNotAfter != nil || gotBare.HealthCheckedAt != nil ||
		gotBare.Teams != nil || gotBare.SealedCertPassword != nil {
		t.Fatalf("nil fields not kept nil: %+v", gotBare)
	}
	eq(t, "list (by id)", must(s.ListIntegrations(ctx(t)))(t), []store.Integration{wantBare, normIntegration(full)})
	wantErr(t, s.CreateIntegration(ctx(t), bare), store.ErrConflict)
	_, err := s.GetIntegration(ctx(t), "nope")
	wantErr(t, err, store.ErrNotFound)

	// Health is set on its own and survives an update; the update replaces
	// everything else but the id and created-at.
	noErr(t, s.SetIntegrationHealth(ctx(t), "int-b", "expired_secret", "AADSTS7000222", at(time.Minute)))
	upd := fullIntegration("int-b")
	upd.Name, upd.Cloud, upd.AuthorityHost, upd.GraphBaseURL, upd.ExtraCAPEM = "Renamed", "usgov", "", "", ""
	upd.CredentialKind, upd.SealedCredential, upd.SealedCertPassword = "secret", []byte("new"), nil
	upd.SecretExpiresAt, upd.CertNotAfter, upd.Teams = nil, nil, nil
	upd.ExtensionAttribute, upd.CompliantValue, upd.NoncompliantValue = 3, "ok", "not ok"
	upd.CreatedAt = at(time.Hour) // ignored
	upd.Health, upd.HealthMessage = "ignored", "ignored"
	upd.UpdatedAt = at(2 * time.Hour)
	noErr(t, s.UpdateIntegration(ctx(t), upd))
	got = must(s.GetIntegration(ctx(t), "int-b"))(t)
	want := normIntegration(upd)
	want.CreatedAt = micro(t0)
	want.Health, want.HealthMessage, want.HealthCheckedAt = "expired_secret", "AADSTS7000222", ptr(micro(at(time.Minute)))
	eq(t, "updated integration", got, want)

	// Without an updated-at the store takes now.
	before := time.Now().Add(-time.Second)
	upd.UpdatedAt = time.Time{}
	noErr(t, s.UpdateIntegration(ctx(t), upd))
	if got := must(s.GetIntegration(ctx(t), "int-b"))(t); got.UpdatedAt.Before(before) {
		t.Fatalf("UpdatedAt %v, want now", got.UpdatedAt)
	}

	missing := fullIntegration("nope")
	wantErr(t, s.UpdateIntegration(ctx(t), missing), store.ErrNotFound)
	wantErr(t, s.SetIntegrationHealth(ctx(t), "nope", "ok", "", t0), store.ErrNotFound)
}

func testIntegrationRejects(t *testing.T, s store.Store) {
	for name, mod := range map[string]func(*store.Integration){
		"empty id":             func(in *store.Integration) { in.ID = "" },
		"attribute 0":          func(in *store.Integration) { in.ExtensionAttribute = 0 },
		"attribute 16":         func(in *store.Integration) { in.ExtensionAttribute = 16 },
		"unknown cloud":        func(in *store.Integration) { in.Cloud = "mars" },
		"custom without hosts": func(in *store.Integration) { in.GraphBaseURL = "" },
		"credential kind":      func(in *store.Integration) { in.CredentialKind = "password" },
		"no credential":        func(in *store.Integration) { in.SealedCredential = nil },
		"no tenant":            func(in *store.Integration) { in.TenantID = "" },
		"no client":            func(in *store.Integration) { in.ClientID = "" },
		"same values":          func(in *store.Integration) { in.NoncompliantValue = in.CompliantValue },
		"team twice":           func(in *store.Integration) { in.Teams = []string{"eng", "eng"} },
	} {
		in := fullIntegration("int")
		mod(&in)
		if err := s.CreateIntegration(ctx(t), in); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("%s: error %v, want ErrInvalid", name, err)
		}
	}
	eq(t, "integrations after refused creates", len(must(s.ListIntegrations(ctx(t)))(t)), 0)
	noErr(t, s.CreateIntegration(ctx(t), fullIntegration("int")))
	bad := fullIntegration("int")
	bad.ExtensionAttribute = 99
	wantErr(t, s.UpdateIntegration(ctx(t), bad), store.ErrInvalid)
	eq(t, "attribute after refused update", must(s.GetIntegration(ctx(t), "int"))(t).ExtensionAttribute, 15)
}

func testIntegrationDelete(t *testing.T, s store.Store) {
	noErr(t, s.CreateIntegration(ctx(t), fullIntegration("A")))
	noErr(t, s.CreateIntegration(ctx(t), fullIntegration("B")))
	h := enroll(t, s, "ada", "")
	noErr(t, s.SaveVerdict(ctx(t), verdict(h.ID, "NONCOMPLIANT", nil), 0,
		[]store.OutboxRow{orow("A", "d1", "noncompliant", t0), orow("A", "d2", "noncompliant", t0), orow("B", "d1", "noncompliant", t0)}))

	noErr(t, s.DeleteIntegration(ctx(t), "A"))
	wantErr(t, s.DeleteIntegration(ctx(t), "A"), store.ErrNotFound)
	_, err := s.GetIntegration(ctx(t), "A")
	wantErr(t, err, store.ErrNotFound)
	dead := items(t, s, store.SyncDead)
	eq(t, "dead rows", itemDevices(dead), []string{"A/d1=noncompliant", "A/d2=noncompliant"})
	for _, it := range dead {
		if it.Error != store.ReasonIntegrationDeleted || it.Code != store.CodeIntegrationDeleted {
			t.Fatalf("dead row %+v, want reason %q", it, store.ReasonIntegrationDeleted)
		}
	}
	eq(t, "other integration's rows", itemDevices(items(t, s, store.SyncPending)), []string{"B/d1=noncompliant"})
	if ob, ok := s.(hubsync.Outbox); ok {
		w, err := ob.Claim(ctx(t), "w1", at(time.Hour), 10, time.Minute)
		noErr(t, err)
		if len(w) != 1 || w[0].Key != (hubsync.DeviceKey{IntegrationID: "B", DeviceID: "d1"}) {
			t.Fatalf("claim after delete: %+v", w)
		}
	}
}

func testFacts(t *testing.T, s store.Store) {
	facts := []store.FactQuery{
		{Name: "entra_device_id", Platform: "windows", Query: "SELECT win"},
		{Name: "entra_device_id", Platform: "darwin", Query: "SELECT mac"},
		{Name: "user_principal_name", Query: "SELECT upn"},
	}
	v0 := version(t, s)
	ch := apply(t, s, store.ApplyRequest{Policies: []store.Policy{pol("p1", "SELECT 1")}, Facts: facts})
	eq(t, "changes", ch, []store.PolicyChange{
		{Kind: "fact", ID: "entra_device_id:darwin", Action: store.ActionAdded},
		{Kind: "fact", ID: "entra_device_id:windows", Action: store.ActionAdded},
		{Kind: "fact", ID: "user_principal_name", Action: store.ActionAdded},
		{Kind: "policy", ID: "p1", Action: store.ActionAdded, Revision: 1},
	})
	sorted := []store.FactQuery{facts[1], facts[0], facts[2]}
	eq(t, "stored facts", must(s.ListFactQueries(ctx(t)))(t), sorted)
	v1 := version(t, s)
	if v1 == v0 {
		t.Fatal("adding facts kept the policy set version")
	}

	// Facts nil: the stored set stays and is not reported.
	ch = apply(t, s, store.ApplyRequest{Policies: []store.Policy{pol("p1", "SELECT 1")}})
	eq(t, "changes without facts", ch, []store.PolicyChange{{Kind: "policy", ID: "p1", Action: store.ActionUnchanged, Revision: 1}})
	eq(t, "facts kept", must(s.ListFactQueries(ctx(t)))(t), sorted)
	// The same set: unchanged, no new version.
	ch = apply(t, s, store.ApplyRequest{Facts: facts})
	eq(t, "same facts", len(ch), 3)
	for _, c := range ch {
		eq(t, "action of "+c.ID, c.Action, store.ActionUnchanged)
	}
	eq(t, "version after a no-op", version(t, s), v1)

	// Only facts change: a dry run reports, writes nothing.
	next := []store.FactQuery{
		{Name: "entra_device_id", Platform: "darwin", Query: "SELECT mac2"},
		{Name: "user_principal_name", Query: "SELECT upn"},
		{Name: "serial", Query: "SELECT serial"},
	}
	wantCh := []store.PolicyChange{
		{Kind: "fact", ID: "entra_device_id:darwin", Action: store.ActionChanged, Fields: []string{"query"}},
		{Kind: "fact", ID: "entra_device_id:windows", Action: store.ActionRemoved},
		{Kind: "fact", ID: "serial", Action: store.ActionAdded},
		{Kind: "fact", ID: "user_principal_name", Action: store.ActionUnchanged},
	}
	eq(t, "dry-run changes", apply(t, s, store.ApplyRequest{Facts: next, DryRun: true}), wantCh)
	eq(t, "facts after dry run", must(s.ListFactQueries(ctx(t)))(t), sorted)
	eq(t, "version after dry run", version(t, s), v1)
	eq(t, "changes", apply(t, s, store.ApplyRequest{Facts: next}), wantCh)
	eq(t, "replaced facts", must(s.ListFactQueries(ctx(t)))(t), []store.FactQuery{next[0], next[2], next[1]})
	v2 := version(t, s)
	if v2 == v1 {
		t.Fatal("changing only facts kept the policy set version")
	}
	eq(t, "policies untouched", len(must(s.ListPolicies(ctx(t)))(t)), 1)

	// Bad facts refuse the whole apply.
	for _, bad := range [][]store.FactQuery{
		{{Name: "", Query: "SELECT 1"}},
		{{Name: "x", Query: " "}},
		{{Name: "x", Query: "SELECT 1"}, {Name: "x", Query: "SELECT 2"}},
	} {
		_, err := s.ApplyPolicies(ctx(t), store.ApplyRequest{Policies: []store.Policy{pol("p2", "SELECT 2")}, Facts: bad, At: t0})
		wantErr(t, err, store.ErrInvalid)
	}
	eq(t, "policies after refused applies", len(must(s.ListPolicies(ctx(t)))(t)), 1)

	// An empty, non-nil set removes them all.
	ch = apply(t, s, store.ApplyRequest{Facts: []store.FactQuery{}})
	eq(t, "removals", len(ch), 3)
	eq(t, "facts after removing all", len(must(s.ListFactQueries(ctx(t)))(t)), 0)
}

func testSyncItems(t *testing.T, s store.Store) {
	ob, ok := s.(hubsync.Outbox)
	if !ok {
		t.Fatal("store does not implement hub/sync.Outbox")
	}
	h := enroll(t, s, "ada", "")
	noErr(t, s.SaveVerdict(ctx(t), verdict(h.ID, "NONCOMPLIANT", nil), 0, []store.OutboxRow{
		orow("A", "d1", "noncompliant", t0), orow("A", "d2", "noncompliant", t0), orow("B", "d3", "noncompliant", t0)}))
	all := items(t, s, "")
	eq(t, "pending rows", len(all), 3)
	if all[0].ID <= all[1].ID || all[1].ID <= all[2].ID {
		t.Fatalf("not newest first: %+v", all)
	}
	it := all[2]
	if it.IntegrationID != "A" || it.DeviceID != "d1" || it.HostID != "host-d1" || it.Desired != "noncompliant" ||
		it.Verdict != "NONCOMPLIANT" || it.State != store.SyncPending || it.Attempts != 0 ||
		!it.CreatedAt.Equal(micro(t0)) || !it.NextAt.Equal(micro(t0)) {
		t.Fatalf("item %+v", it)
	}

	// d1 is delivered, d2 dead-lettered, d3 in backoff.
	w, err := ob.Claim(ctx(t), "w1", at(time.Second), 10, time.Minute)
	noErr(t, err)
	eq(t, "claimed devices", len(w), 3)
	byDev := map[string]hubsync.DeviceWork{}
	for _, x := range w {
		byDev[x.Key.DeviceID] = x
	}
	noErr(t, ob.Settle(ctx(t), "w1", []hubsync.Settlement{
		{Key: byDev["d1"].Key, Done: []int64{byDev["d1"].Changes[0].OutboxID}, Written: "noncompliant", WrittenAt: at(time.Second)},
		{Key: byDev["d2"].Key, Dead: []hubsync.DeadRow{{ID: byDev["d2"].Changes[0].OutboxID, Attempts: 1,
			Code: "Request_ResourceNotFound", Reason: "device not found", At: at(time.Second)}}},
		{Key: byDev["d3"].Key, Retry: []hubsync.RetryRow{{ID: byDev["d3"].Changes[0].OutboxID, Attempts: 2,
			NextAt: at(time.Minute), Code: "503", Error: "unavailable"}}},
	}))

	eq(t, "pending and dead", itemDevices(items(t, s, "")), []string{"A/d2=noncompliant", "B/d3=noncompliant"})
	eq(t, "done", itemDevices(items(t, s, store.SyncDone)), []string{"A/d1=noncompliant"})
	deadItems := items(t, s, store.SyncDead)
	eq(t, "dead", len(deadItems), 1)
	d := deadItems[0]
	if d.Code != "Request_ResourceNotFound" || d.Error != "device not found" || d.Attempts != 1 {
		t.Fatalf("dead item %+v", d)
	}
	p := items(t, s, store.SyncPending)[0]
	if p.Code != "503" || p.Error != "unavailable" || p.Attempts != 2 || !p.NextAt.Equal(micro(at(time.Minute))) {
		t.Fatalf("retrying item %+v", p)
	}
	eq(t, "one integration", itemDevices(must(s.ListSyncItems(ctx(t), "", "B", 0))(t)), []string{"B/d3=noncompliant"})
	eq(t, "limit", len(must(s.ListSyncItems(ctx(t), "", "", 1))(t)), 1)
	_, err = s.ListSyncItems(ctx(t), "stuck", "", 0)
	wantErr(t, err, store.ErrInvalid)

	// Retry of a pending row waiting out a backoff or pause: due now,
	// attempts and last error kept; never pushed later than it was due.
	rp := must(s.RetrySyncItem(ctx(t), p.ID, at(30*time.Second)))(t)
	if rp.State != store.SyncPending || rp.Attempts != 2 || rp.Code != "503" || !rp.NextAt.Equal(micro(at(30*time.Second))) {
		t.Fatalf("retried pending item %+v", rp)
	}
	rp = must(s.RetrySyncItem(ctx(t), p.ID, at(time.Hour)))(t)
	if !rp.NextAt.Equal(micro(at(30 * time.Second))) {
		t.Fatalf("retry pushed a pending item later: %+v", rp)
	}
	// Done rows are finished: refused.
	_, err = s.RetrySyncItem(ctx(t), items(t, s, store.SyncDone)[0].ID, at(time.Hour))
	wantErr(t, err, store.ErrInvalid)
	// Dead rows: pending again, due now, attempts reset, and claimable.
	_, err = s.RetrySyncItem(ctx(t), 999999, at(time.Hour))
	wantErr(t, err, store.ErrNotFound)
	r := must(s.RetrySyncItem(ctx(t), d.ID, at(2*time.Second)))(t)
	if r.ID != d.ID || r.State != store.SyncPending || r.Attempts != 0 || !r.NextAt.Equal(micro(at(2*time.Second))) ||
		r.Error != "device not found" {
		t.Fatalf("retried item %+v", r)
	}
	eq(t, "dead after retry", len(items(t, s, store.SyncDead)), 0)
	w, err = ob.Claim(ctx(t), "w2", at(2*time.Second), 10, time.Minute)
	noErr(t, err)
	if len(w) != 1 || w[0].Key.DeviceID != "d2" || w[0].Changes[0].OutboxID != d.ID || w[0].Changes[0].Attempts != 0 {
		t.Fatalf("claim after retry %+v", w)
	}
	// A row retried after its integration was deleted can be claimed too
	// (the worker then dead-letters it as an unknown integration).
	noErr(t, ob.Settle(ctx(t), "w2", []hubsync.Settlement{{Key: w[0].Key, Dead: []hubsync.DeadRow{{ID: d.ID, Attempts: 1, Code: "x", Reason: "y", At: at(3 * time.Second)}}}}))
	noErr(t, s.CreateIntegration(ctx(t), fullIntegration("A")))
	noErr(t, s.DeleteIntegration(ctx(t), "A"))
	must(s.RetrySyncItem(ctx(t), d.ID, at(4*time.Second)))(t)
	w, err = ob.Claim(ctx(t), "w3", at(4*time.Second), 10, time.Minute)
	noErr(t, err)
	if len(w) != 1 || w[0].Key.DeviceID != "d2" {
		t.Fatalf("claim of a row retried after its integration was deleted: %+v", w)
	}
}

// testPruneSyncItems: done rows older than the cut go (also those of an
// integration deleted since); newer done rows, pending rows, dead rows, the
// done rows of a leased device and every device state stay; the outbox keeps
// working afterwards. Backends' tests lower the chunk size so the prune
// takes several chunks.
func testPruneSyncItems(t *testing.T, s store.Store) {
	ob, ok := s.(hubsync.Outbox)
	if !ok {
		t.Fatal("store does not implement hub/sync.Outbox")
	}
	enq, ok := s.(hubsync.Enqueuer)
	if !ok {
		t.Fatal("store does not implement hub/sync.Enqueuer")
	}
	ds, ok := s.(hubsync.DeviceStates)
	if !ok {
		t.Fatal("store does not implement hub/sync.DeviceStates")
	}
	add := func(integ, dev string, created time.Time) int64 {
		t.Helper()
		r := orow(integ, dev, "noncompliant", created)
		return must(enq.Enqueue(ctx(t), hubsync.Change{IntegrationID: r.IntegrationID, TenantID: r.TenantID,
			DeviceID: r.DeviceID, HostID: r.HostID, Desired: r.Desired, Verdict: r.Verdict, CreatedAt: r.CreatedAt}))(t)
	}
	cut := at(30 * time.Minute)
	noErr(t, s.CreateIntegration(ctx(t), fullIntegration("B")))
	// Old rows: d1 twice, d2, d3, B/e1 and L delivered; d4 dead; d5 retrying.
	// New: one more delivered row of d1.
	oldDone := []int64{add("A", "d1", at(time.Minute)), add("A", "d1", at(2*time.Minute)),
		add("A", "d2", at(3*time.Minute)), add("A", "d3", at(4*time.Minute)), add("B", "e1", at(5*time.Minute))}
	oldLeased := add("A", "L", at(6*time.Minute))
	dead := add("A", "d4", at(7*time.Minute))
	retrying := add("A", "d5", at(8*time.Minute))
	newDone := add("A", "d1", cut.Add(10*time.Minute))

	w, err := ob.Claim(ctx(t), "w1", at(time.Hour), 10, time.Minute)
	noErr(t, err)
	var settle []hubsync.Settlement
	for _, x := range w {
		st := hubsync.Settlement{Key: x.Key}
		for _, c := range x.Changes {
			switch c.OutboxID {
			case dead:
				st.Dead = append(st.Dead, hubsync.DeadRow{ID: c.OutboxID, Attempts: 1, Code: "Request_ResourceNotFound",
					Reason: "device not found", At: at(time.Hour)})
			case retrying:
				st.Retry = append(st.Retry, hubsync.RetryRow{ID: c.OutboxID, Attempts: 1, NextAt: at(5 * time.Hour),
					Code: "503", Error: "unavailable"})
			default:
				st.Done = append(st.Done, c.OutboxID)
				st.Written, st.WrittenAt = "noncompliant", at(time.Hour)
			}
		}
		settle = append(settle, st)
	}
	eq(t, "claimed devices", len(settle), 7)
	noErr(t, ob.Settle(ctx(t), "w1", settle))
	// B is deleted: its device rows go, its done row stays as history.
	noErr(t, s.DeleteIntegration(ctx(t), "B"))
	// L gets a new change and is leased by w2 while the prune runs.
	leasedNew := add("A", "L", at(90*time.Minute))
	w, err = ob.Claim(ctx(t), "w2", at(2*time.Hour), 10, time.Minute)
	noErr(t, err)
	if len(w) != 1 || w[0].Key.DeviceID != "L" {
		t.Fatalf("claim of L: %+v", w)
	}
	statesBefore := must(ds.DeviceStates(ctx(t), hubsync.DeviceKey{}, 0))(t)

	_, err = s.PruneSyncItems(ctx(t), time.Time{})
	wantErr(t, err, store.ErrInvalid)
	eq(t, "pruned", must(s.PruneSyncItems(ctx(t), cut))(t), len(oldDone))

	ids := func(state string) []int64 {
		var out []int64
		for _, it := range items(t, s, state) {
			out = append(out, it.ID)
		}
		slices.Sort(out)
		return out
	}
	eq(t, "done rows left", ids(store.SyncDone), []int64{oldLeased, newDone})
	eq(t, "dead rows left", ids(store.SyncDead), []int64{dead})
	eq(t, "pending rows left", ids(store.SyncPending), []int64{retrying, leasedNew})
	eq(t, "device states", must(ds.DeviceStates(ctx(t), hubsync.DeviceKey{}, 0))(t), statesBefore)
	eq(t, "pruned again", must(s.PruneSyncItems(ctx(t), cut))(t), 0)

	// The lease holder settles L; once released, L's old rows can go too.
	noErr(t, ob.Settle(ctx(t), "w2", []hubsync.Settlement{{Key: w[0].Key, Done: []int64{leasedNew},
		Written: "noncompliant", WrittenAt: at(2 * time.Hour)}}))
	eq(t, "pruned after release", must(s.PruneSyncItems(ctx(t), at(3*time.Hour)))(t), 3)
	eq(t, "done rows after the second prune", len(ids(store.SyncDone)), 0)

	// Claiming, settling and retrying keep working on the pruned outbox.
	again := add("A", "d2", at(3*time.Hour))
	w, err = ob.Claim(ctx(t), "w3", at(3*time.Hour), 10, time.Minute)
	noErr(t, err)
	if len(w) != 1 || w[0].Key.DeviceID != "d2" || len(w[0].Changes) != 1 || w[0].Changes[0].OutboxID != again ||
		w[0].LastWritten != "noncompliant" {
		t.Fatalf("claim after prune: %+v", w)
	}
	noErr(t, ob.Settle(ctx(t), "w3", []hubsync.Settlement{{Key: w[0].Key, Done: []int64{again},
		Written: "noncompliant", WrittenAt: at(3 * time.Hour)}}))
	eq(t, "done after prune", ids(store.SyncDone), []int64{again})
	must(s.RetrySyncItem(ctx(t), dead, at(3*time.Hour)))(t)
	w, err = ob.Claim(ctx(t), "w4", at(3*time.Hour), 10, time.Minute)
	noErr(t, err)
	if len(w) != 1 || w[0].Key.DeviceID != "d4" || w[0].Changes[0].OutboxID != dead {
		t.Fatalf("claim of the retried dead row after prune: %+v", w)
	}
}

// testResumeSyncItems: resuming an integration makes its waiting pending
// rows due now (attempts and last error kept) and leaves other
// integrations, due rows and dead rows alone.
func testResumeSyncItems(t *testing.T, s store.Store) {
	ob, ok := s.(hubsync.Outbox)
	if !ok {
		t.Fatal("store does not implement hub/sync.Outbox")
	}
	h := enroll(t, s, "ada", "")
	noErr(t, s.SaveVerdict(ctx(t), verdict(h.ID, "NONCOMPLIANT", nil), 0, []store.OutboxRow{
		orow("A", "d1", "noncompliant", t0), orow("A", "d2", "noncompliant", t0), orow("B", "d3", "noncompliant", t0)}))
	w, err := ob.Claim(ctx(t), "w1", at(time.Second), 10, time.Minute)
	noErr(t, err)
	var settles []hubsync.Settlement
	for _, x := range w {
		settles = append(settles, hubsync.Settlement{Key: x.Key, Retry: []hubsync.RetryRow{{ID: x.Changes[0].OutboxID,
			Attempts: 1, NextAt: at(5 * time.Minute), Code: "AADSTS7000222", Error: "expired"}}})
	}
	noErr(t, ob.Settle(ctx(t), "w1", settles))
	n, err := s.ResumeSyncItems(ctx(t), "A", at(2*time.Second))
	noErr(t, err)
	eq(t, "resumed", n, 2)
	for _, it := range items(t, s, store.SyncPending) {
		want := at(2 * time.Second)
		if it.IntegrationID == "B" {
			want = at(5 * time.Minute)
		}
		if !it.NextAt.Equal(micro(want)) || it.Attempts != 1 || it.Code != "AADSTS7000222" {
			t.Fatalf("after resume: %+v", it)
		}
	}
	w, err = ob.Claim(ctx(t), "w2", at(2*time.Second), 10, time.Minute)
	noErr(t, err)
	eq(t, "claimable after resume", len(w), 2)
	n, err = s.ResumeSyncItems(ctx(t), "A", at(3*time.Second))
	noErr(t, err)
	eq(t, "nothing waiting", n, 0)
}

// testRevokeSessionsKind: a session revocation row keeps its kind and user
// through Claim and the admin listing, does not change the device's desired
// state, and a revocation without a user or of an unknown kind is refused.
func testRevokeSessionsKind(t *testing.T, s store.Store) {
	ob := s.(hubsync.Outbox)
	ds := s.(hubsync.DeviceStates)
	h := enroll(t, s, "ada", "")
	rev := orow("A", "d1", "noncompliant", t0.Add(time.Second))
	rev.Kind, rev.Subject = store.OutboxRevokeSessions, "ada@example.com"
	noErr(t, s.SaveVerdict(ctx(t), verdict(h.ID, "COMPLIANT", nil), 0, []store.OutboxRow{orow("A", "d1", "compliant", t0), rev}))
	w, err := ob.Claim(ctx(t), "w1", at(2*time.Second), 10, time.Minute)
	noErr(t, err)
	if len(w) != 1 || len(w[0].Changes) != 2 || w[0].Changes[0].Kind != "" ||
		w[0].Changes[1].Kind != hubsync.KindRevokeSessions || w[0].Changes[1].Subject != "ada@example.com" {
		t.Fatalf("claimed %+v", w)
	}
	st, err := ds.DeviceStates(ctx(t), hubsync.DeviceKey{}, 10)
	noErr(t, err)
	if len(st) != 1 || st[0].Desired != "compliant" {
		t.Fatalf("a revocation row changed the desired state: %+v", st)
	}
	its := items(t, s, store.SyncPending)
	if len(its) != 2 || its[0].Kind != store.OutboxRevokeSessions || its[0].Subject != "ada@example.com" {
		t.Fatalf("items %+v", its)
	}
	bad := rev
	bad.Subject = ""
	wantErr(t, s.SaveVerdict(ctx(t), verdict(h.ID, "NONCOMPLIANT", nil), 1, []store.OutboxRow{bad}), store.ErrInvalid)
	bad = rev
	bad.Kind = "wipe_device"
	wantErr(t, s.SaveVerdict(ctx(t), verdict(h.ID, "NONCOMPLIANT", nil), 1, []store.OutboxRow{bad}), store.ErrInvalid)
}

// testDeviceChecks: one check per host, replaced on save, gone with the host.
func testDeviceChecks(t *testing.T, s store.Store) {
	h := enroll(t, s, "ada", "")
	_, err := s.GetDeviceCheck(ctx(t), h.ID)
	wantErr(t, err, store.ErrNotFound)
	c := store.DeviceCheck{HostID: h.ID, IntegrationID: "A", DeviceID: "d1", DisplayName: "WIN-7", OperatingSystem: "Windows",
		Mismatch: "Graph names the device WIN-7", CheckedAt: at(time.Second)}
	noErr(t, s.SaveDeviceCheck(ctx(t), c))
	c.Mismatch, c.CheckedAt = "", at(2*time.Second)
	noErr(t, s.SaveDeviceCheck(ctx(t), c))
	got := must(s.GetDeviceCheck(ctx(t), h.ID))(t)
	c.CheckedAt = micro(c.CheckedAt)
	eq(t, "device check", got, c)
	wantErr(t, s.SaveDeviceCheck(ctx(t), store.DeviceCheck{HostID: h.ID}), store.ErrInvalid)
	noErr(t, s.DeleteHost(ctx(t), h.ID))
	_, err = s.GetDeviceCheck(ctx(t), h.ID)
	wantErr(t, err, store.ErrNotFound)
}
