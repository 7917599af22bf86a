package storetest

import (
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

var hostTests = []suiteTest{
	{"Hosts/EnrollAndGet", testEnrollAndGet},
	{"Hosts/EnrollMatchesHardwareUUID", testEnrollMatchesHardwareUUID},
	{"Hosts/EnrollRevokedRefused", testEnrollRevokedRefused},
	{"Hosts/EnrollOtherTeamMakesDuplicate", testEnrollOtherTeamDuplicate},
	{"Hosts/HelloKeepsHardwareUUID", testHelloKeepsHardwareUUID},
	{"Hosts/ByEntraDeviceID", testHostsByEntraDeviceID},
	{"Hosts/SupersededEnrollmentWritesNothing", testSupersededEnrollment},
	{"Hosts/EnrollExplicitIDConflict", testEnrollExplicitIDConflict},
	{"Hosts/List", testListHosts},
	{"Hosts/Updates", testHostUpdates},
	{"Hosts/TouchNeverBackwards", testTouchHost},
	{"Hosts/Revoke", testRevokeHost},
	{"Hosts/Delete", testDeleteHost},
	{"Ping", func(t *testing.T, s store.Store) { noErr(t, s.Ping(ctx(t))) }},
}

func fullHost() store.Host {
	return store.Host{
		Hostname: "mbp-ada", Platform: "darwin", OSPlatform: "darwin", OSName: "macOS",
		OSVersion: "15.1", OsqueryVersion: "5.14.1", HardwareSerial: "C02XYZ",
		HardwareUUID: "5E1F-AB", HardwareModel: "MacBookPro18,1", ExtVersion: "0.1.0",
		EntraDeviceID: "dev-1", UserPrincipalName: "ada@example.com",
		EnrolledAt: t0, CertSerial: "01ab", CertNotAfter: at(30 * 24 * time.Hour),
	}
}

func testEnrollAndGet(t *testing.T, s store.Store) {
	in := fullHost()
	h := must(s.EnrollHost(ctx(t), in))(t)
	if h.ID == "" {
		t.Fatal("EnrollHost returned no id")
	}
	want := in
	want.ID = h.ID
	want.Team = store.DefaultTeam
	want.EnrolledAt = micro(t0)
	want.LastSeenAt = micro(t0)
	want.CertNotAfter = micro(in.CertNotAfter)
	eq(t, "enrolled host", h, want)
	got := must(s.GetHost(ctx(t), h.ID))(t)
	eq(t, "stored host", got, want)
	utcTime(t, "EnrolledAt", got.EnrolledAt)
	utcTime(t, "CertNotAfter", got.CertNotAfter)
	if got.Revoked() {
		t.Fatal("new host is revoked")
	}

	_, err := s.GetHost(ctx(t), "no-such-host")
	wantErr(t, err, store.ErrNotFound)

	// An explicit id is kept; no hardware uuid never matches another host.
	a := must(s.EnrollHost(ctx(t), store.Host{ID: "host-a", Hostname: "a", Team: "eng", EnrolledAt: t0}))(t)
	b := must(s.EnrollHost(ctx(t), store.Host{Hostname: "b", EnrolledAt: t0}))(t)
	eq(t, "explicit id", a.ID, "host-a")
	eq(t, "explicit team", a.Team, "eng")
	if b.ID == a.ID || b.ID == h.ID {
		t.Fatal("hosts without hardware uuid were merged")
	}
}

func testEnrollMatchesHardwareUUID(t *testing.T, s store.Store) {
	first := must(s.EnrollHost(ctx(t), fullHost()))(t)
	noErr(t, s.SetHostEntraOverride(ctx(t), first.ID, "admin-dev"))
	noErr(t, s.SetHostUPNOverride(ctx(t), first.ID, "grace@example.com"))
	noErr(t, s.TouchHost(ctx(t), first.ID, at(time.Hour)))

	again := fullHost()
	again.Hostname = "mbp-ada-renamed"
	again.OSVersion = "15.2"
	again.EnrolledAt = at(2 * time.Hour)
	again.CertSerial = "02cd"
	again.CertNotAfter = at(60 * 24 * time.Hour)
	again.EntraDeviceID = "ignored-at-enroll"
	h := must(s.EnrollHost(ctx(t), again))(t)
	eq(t, "re-enrolled id", h.ID, first.ID)
	eq(t, "team", h.Team, store.DefaultTeam)
	eq(t, "hostname", h.Hostname, "mbp-ada-renamed")
	eq(t, "re-enroll count", h.ReenrollCount, 1)
	if h.ReenrolledAt == nil || !h.ReenrolledAt.Equal(micro(at(2*time.Hour))) {
		t.Fatalf("reenrolled at = %v", h.ReenrolledAt)
	}
	eq(t, "not a duplicate", h.DuplicateOf, "")
	eq(t, "os version", h.OSVersion, "15.2")
	eq(t, "enrolled at", h.EnrolledAt, micro(at(2*time.Hour)))
	eq(t, "cert serial", h.CertSerial, "02cd")
	eq(t, "cert not after", h.CertNotAfter, micro(at(60*24*time.Hour)))
	eq(t, "identity kept", h.EntraDeviceID, "dev-1")
	eq(t, "override kept", h.EntraDeviceIDOverride, "admin-dev")
	eq(t, "upn override kept", h.UserPrincipalNameOverride, "grace@example.com")
	eq(t, "last seen", h.LastSeenAt, micro(at(2*time.Hour)))
	eq(t, "stored", must(s.GetHost(ctx(t), h.ID))(t), h)
	eq(t, "host count", len(must(s.ListHosts(ctx(t), store.HostFilter{}))(t)), 1)

	other := fullHost()
	other.HardwareUUID = "OTHER"
	o := must(s.EnrollHost(ctx(t), other))(t)
	if o.ID == h.ID {
		t.Fatal("different hardware uuid matched")
	}
}

func testEnrollRevokedRefused(t *testing.T, s store.Store) {
	h := must(s.EnrollHost(ctx(t), fullHost()))(t)
	must(s.RevokeHost(ctx(t), h.ID, at(time.Minute)))(t)
	before := must(s.GetHost(ctx(t), h.ID))(t)

	again := fullHost()
	again.Hostname = "changed"
	again.EnrolledAt = at(time.Hour)
	_, err := s.EnrollHost(ctx(t), again)
	wantErr(t, err, store.ErrRevoked)
	eq(t, "revoked host unchanged", must(s.GetHost(ctx(t), h.ID))(t), before)

	// Deleting the revoked host frees the hardware uuid.
	noErr(t, s.DeleteHost(ctx(t), h.ID))
	n := must(s.EnrollHost(ctx(t), again))(t)
	if n.ID == h.ID || n.Revoked() {
		t.Fatalf("enroll after delete: got %+v", n)
	}
}

func testEnrollExplicitIDConflict(t *testing.T, s store.Store) {
	must(s.EnrollHost(ctx(t), store.Host{ID: "dup", HardwareUUID: "hw-1", EnrolledAt: t0}))(t)
	_, err := s.EnrollHost(ctx(t), store.Host{ID: "dup", HardwareUUID: "hw-2", EnrolledAt: t0})
	wantErr(t, err, store.ErrConflict)
	_, err = s.EnrollHost(ctx(t), store.Host{ID: "dup", EnrolledAt: t0})
	wantErr(t, err, store.ErrConflict)
}

func testListHosts(t *testing.T, s store.Store) {
	c := enroll(t, s, "charlie", "eng")
	a := enroll(t, s, "alpha", "eng")
	b := enroll(t, s, "bravo", "")
	ids := func(hs []store.Host) []string {
		var out []string
		for _, h := range hs {
			out = append(out, h.ID)
		}
		return out
	}
	eq(t, "all hosts by hostname", ids(must(s.ListHosts(ctx(t), store.HostFilter{}))(t)), []string{a.ID, b.ID, c.ID})
	eq(t, "team eng", ids(must(s.ListHosts(ctx(t), store.HostFilter{Team: "eng"}))(t)), []string{a.ID, c.ID})
	eq(t, "default team", ids(must(s.ListHosts(ctx(t), store.HostFilter{Team: store.DefaultTeam}))(t)), []string{b.ID})
	eq(t, "empty team", len(must(s.ListHosts(ctx(t), store.HostFilter{Team: "nobody"}))(t)), 0)
}

func testHostUpdates(t *testing.T, s store.Store) {
	h := must(s.EnrollHost(ctx(t), fullHost()))(t)

	facts := store.Host{ID: h.ID, Hostname: "renamed", Platform: "darwin", OSPlatform: "darwin",
		OSName: "macOS", OSVersion: "15.3", OsqueryVersion: "5.15.0", HardwareSerial: "C02XYZ",
		HardwareModel: "MacBookPro18,1", ExtVersion: "0.2.0",
		// Not facts: must be ignored.
		Team: "other", CertSerial: "ff", EntraDeviceID: "x", EnrolledAt: at(time.Hour)}
	noErr(t, s.UpdateHostFacts(ctx(t), facts))
	got := must(s.GetHost(ctx(t), h.ID))(t)
	want := h
	want.Hostname, want.OSVersion, want.OsqueryVersion, want.ExtVersion = "renamed", "15.3", "5.15.0", "0.2.0"
	eq(t, "after UpdateHostFacts (empty hardware uuid keeps the stored one)", got, want)

	noErr(t, s.SetHostIdentity(ctx(t), h.ID, "dev-2", "grace@example.com"))
	got = must(s.GetHost(ctx(t), h.ID))(t)
	eq(t, "identity", []string{got.EntraDeviceID, got.UserPrincipalName}, []string{"dev-2", "grace@example.com"})
	eq(t, "effective without override", got.EffectiveEntraDeviceID(), "dev-2")

	noErr(t, s.SetHostEntraOverride(ctx(t), h.ID, "dev-admin"))
	eq(t, "effective with override", must(s.GetHost(ctx(t), h.ID))(t).EffectiveEntraDeviceID(), "dev-admin")
	noErr(t, s.SetHostEntraOverride(ctx(t), h.ID, ""))
	eq(t, "override cleared", must(s.GetHost(ctx(t), h.ID))(t).EffectiveEntraDeviceID(), "dev-2")

	eq(t, "upn without override", got.EffectiveUserPrincipalName(), "grace@example.com")
	noErr(t, s.SetHostUPNOverride(ctx(t), h.ID, "ada.admin@example.com"))
	got = must(s.GetHost(ctx(t), h.ID))(t)
	eq(t, "upn with override", []string{got.UserPrincipalName, got.UserPrincipalNameOverride, got.EffectiveUserPrincipalName()},
		[]string{"grace@example.com", "ada.admin@example.com", "ada.admin@example.com"})
	// A later fact report changes the reported UPN, never the override.
	noErr(t, s.SetHostIdentity(ctx(t), h.ID, "dev-2", "mallory@example.com"))
	got = must(s.GetHost(ctx(t), h.ID))(t)
	eq(t, "override wins over a new report", got.EffectiveUserPrincipalName(), "ada.admin@example.com")
	eq(t, "listed with override", must(s.ListHosts(ctx(t), store.HostFilter{}))(t)[0].UserPrincipalNameOverride, "ada.admin@example.com")
	noErr(t, s.SetHostUPNOverride(ctx(t), h.ID, ""))
	eq(t, "upn override cleared", must(s.GetHost(ctx(t), h.ID))(t).EffectiveUserPrincipalName(), "mallory@example.com")

	noErr(t, s.SetHostCert(ctx(t), h.ID, "0a0b", at(90*24*time.Hour)))
	got = must(s.GetHost(ctx(t), h.ID))(t)
	eq(t, "cert", []any{got.CertSerial, got.CertNotAfter}, []any{"0a0b", micro(at(90 * 24 * time.Hour))})

	wantErr(t, s.UpdateHostFacts(ctx(t), store.Host{ID: "missing"}), store.ErrNotFound)
	wantErr(t, s.SetHostIdentity(ctx(t), "missing", "a", "b"), store.ErrNotFound)
	wantErr(t, s.SetHostEntraOverride(ctx(t), "missing", "a"), store.ErrNotFound)
	wantErr(t, s.SetHostUPNOverride(ctx(t), "missing", "a"), store.ErrNotFound)
	wantErr(t, s.SetHostCert(ctx(t), "missing", "a", t0), store.ErrNotFound)
}

func testTouchHost(t *testing.T, s store.Store) {
	h := enroll(t, s, "touchy", "")
	noErr(t, s.TouchHost(ctx(t), h.ID, at(time.Hour)))
	eq(t, "forward", must(s.GetHost(ctx(t), h.ID))(t).LastSeenAt, micro(at(time.Hour)))
	noErr(t, s.TouchHost(ctx(t), h.ID, at(time.Minute)))
	eq(t, "never backwards", must(s.GetHost(ctx(t), h.ID))(t).LastSeenAt, micro(at(time.Hour)))
	noErr(t, s.TouchHost(ctx(t), h.ID, at(time.Hour)))
	wantErr(t, s.TouchHost(ctx(t), "missing", at(time.Hour)), store.ErrNotFound)

	// RecordResults coalesces last-seen the same way.
	must(s.RecordResults(ctx(t), h.ID, nil, at(2*time.Hour)))(t)
	eq(t, "record moves forward", must(s.GetHost(ctx(t), h.ID))(t).LastSeenAt, micro(at(2*time.Hour)))
	must(s.RecordResults(ctx(t), h.ID, nil, at(time.Hour)))(t)
	eq(t, "record never backwards", must(s.GetHost(ctx(t), h.ID))(t).LastSeenAt, micro(at(2*time.Hour)))
}

func testRevokeHost(t *testing.T, s store.Store) {
	h := enroll(t, s, "rev", "")
	r := must(s.RevokeHost(ctx(t), h.ID, at(time.Hour)))(t)
	if !r.Revoked() || !r.RevokedAt.Equal(micro(at(time.Hour))) {
		t.Fatalf("revoked at = %v", r.RevokedAt)
	}
	utcTime(t, "RevokedAt", *r.RevokedAt)
	r2 := must(s.RevokeHost(ctx(t), h.ID, at(2*time.Hour)))(t)
	eq(t, "second revoke keeps the first time", *r2.RevokedAt, micro(at(time.Hour)))
	eq(t, "stored", must(s.GetHost(ctx(t), h.ID))(t), r2)
	_, err := s.RevokeHost(ctx(t), "missing", t0)
	wantErr(t, err, store.ErrNotFound)

	// A revoked host's results are refused and change nothing.
	apply(t, s, store.ApplyRequest{Policies: []store.Policy{pol("p", "SELECT 1")}})
	_, err = s.RecordResults(ctx(t), h.ID, []store.Result{res("p", 1, store.StatusPass, at(3*time.Hour))}, at(3*time.Hour))
	wantErr(t, err, store.ErrRevoked)
	eq(t, "no results for revoked host", len(must(s.LatestResults(ctx(t), h.ID))(t)), 0)
}

func testDeleteHost(t *testing.T, s store.Store) {
	apply(t, s, store.ApplyRequest{Policies: []store.Policy{pol("p1", "SELECT 1"), pol("p2", "SELECT 2")}})
	gone := enroll(t, s, "gone", "")
	kept := enroll(t, s, "kept", "")
	record(t, s, gone.ID, res("p1", 1, store.StatusPass, at(time.Minute)), res("p2", 1, store.StatusFail, at(time.Minute)))
	record(t, s, gone.ID, res("p1", 1, store.StatusFail, at(2*time.Minute)))
	record(t, s, kept.ID, res("p1", 1, store.StatusPass, at(time.Minute)))
	eq(t, "counts before", counts(t, s), map[string]store.PolicyCounts{"p1": pc("p1", 1, 1, 0), "p2": pc("p2", 0, 1, 0)})

	noErr(t, s.DeleteHost(ctx(t), gone.ID))
	_, err := s.GetHost(ctx(t), gone.ID)
	wantErr(t, err, store.ErrNotFound)
	eq(t, "results gone", len(must(s.LatestResults(ctx(t), gone.ID))(t)), 0)
	eq(t, "history gone", len(must(s.History(ctx(t), gone.ID, "p1", 0))(t)), 0)
	eq(t, "counts after", counts(t, s), map[string]store.PolicyCounts{"p1": pc("p1", 1, 0, 0), "p2": pc("p2", 0, 0, 0)})
	eq(t, "other host kept", len(must(s.LatestResults(ctx(t), kept.ID))(t)), 1)
	checkCounts(t, s)
	wantErr(t, s.DeleteHost(ctx(t), gone.ID), store.ErrNotFound)
}

// Another team's secret never moves a host: the enroll makes a new host
// marked as a duplicate; that team enrolling again reuses the duplicate; a
// revoked original blocks every team.
func testEnrollOtherTeamDuplicate(t *testing.T, s store.Store) {
	orig := must(s.EnrollHost(ctx(t), fullHost()))(t)
	other := fullHost()
	other.Team = "lab"
	other.Hostname = "attacker"
	other.EnrolledAt = at(time.Hour)
	dup := must(s.EnrollHost(ctx(t), other))(t)
	if dup.ID == orig.ID {
		t.Fatal("another team's enroll reused the host")
	}
	eq(t, "duplicate of", dup.DuplicateOf, orig.ID)
	eq(t, "duplicate team", dup.Team, "lab")
	if dup.ReenrolledAt != nil {
		t.Fatal("a new duplicate looks re-enrolled")
	}
	eq(t, "original untouched", must(s.GetHost(ctx(t), orig.ID))(t), orig)

	other.EnrolledAt = at(2 * time.Hour)
	again := must(s.EnrollHost(ctx(t), other))(t)
	eq(t, "same team re-enrolls the duplicate", again.ID, dup.ID)
	eq(t, "duplicate re-enroll count", again.ReenrollCount, 1)
	eq(t, "original still untouched", must(s.GetHost(ctx(t), orig.ID))(t), orig)
	eq(t, "host count", len(must(s.ListHosts(ctx(t), store.HostFilter{}))(t)), 2)

	must(s.RevokeHost(ctx(t), orig.ID, at(3*time.Hour)))(t)
	third := fullHost()
	third.Team = "ops"
	_, err := s.EnrollHost(ctx(t), third)
	wantErr(t, err, store.ErrRevoked)
}

func testHelloKeepsHardwareUUID(t *testing.T, s store.Store) {
	a := must(s.EnrollHost(ctx(t), fullHost()))(t)
	b := fullHost()
	b.HardwareUUID = "B-UUID"
	bh := must(s.EnrollHost(ctx(t), b))(t)
	upd := bh
	upd.HardwareUUID = a.HardwareUUID
	upd.Hostname = "b-renamed"
	noErr(t, s.UpdateHostFacts(ctx(t), upd))
	got := must(s.GetHost(ctx(t), bh.ID))(t)
	eq(t, "hardware uuid", got.HardwareUUID, "B-UUID")
	eq(t, "hostname", got.Hostname, "b-renamed")
}

func testHostsByEntraDeviceID(t *testing.T, s store.Store) {
	a := must(s.EnrollHost(ctx(t), store.Host{ID: "a", Hostname: "a", HardwareUUID: "A", EnrolledAt: t0}))(t)
	b := must(s.EnrollHost(ctx(t), store.Host{ID: "b", Hostname: "b", HardwareUUID: "B", EnrolledAt: t0}))(t)
	c := must(s.EnrollHost(ctx(t), store.Host{ID: "c", Hostname: "c", HardwareUUID: "C", EnrolledAt: t0}))(t)
	noErr(t, s.SetHostIdentity(ctx(t), b.ID, "dev-x", ""))
	noErr(t, s.SetHostIdentity(ctx(t), a.ID, "dev-x", ""))
	noErr(t, s.SetHostEntraOverride(ctx(t), c.ID, "dev-x"))
	must(s.RevokeHost(ctx(t), a.ID, at(time.Minute)))(t)
	hs := must(s.HostsByEntraDeviceID(ctx(t), "dev-x"))(t)
	var ids []string
	for _, h := range hs {
		ids = append(ids, h.ID)
	}
	eq(t, "claimants", ids, []string{"a", "b", "c"})
	eq(t, "none", len(must(s.HostsByEntraDeviceID(ctx(t), "dev-y"))(t)), 0)
	eq(t, "empty id", len(must(s.HostsByEntraDeviceID(ctx(t), ""))(t)), 0)
}

// A batch sent for an earlier enrollment of the host is refused inside the
// transaction and writes nothing.
func testSupersededEnrollment(t *testing.T, s store.Store) {
	apply(t, s, store.ApplyRequest{Policies: []store.Policy{pol("p", "SELECT 1")}})
	h := must(s.EnrollHost(ctx(t), fullHost()))(t)
	old := store.WithEnrollment(ctx(t), h.ReenrollCount)
	again := fullHost()
	again.EnrolledAt = at(time.Hour)
	h2 := must(s.EnrollHost(ctx(t), again))(t)
	r := res("p", 1, store.StatusPass, at(2*time.Hour))
	_, err := s.RecordResults(old, h.ID, []store.Result{r}, at(2*time.Hour))
	wantErr(t, err, store.ErrSuperseded)
	eq(t, "nothing written", len(must(s.LatestResults(ctx(t), h.ID))(t)), 0)
	cur := store.WithEnrollment(ctx(t), h2.ReenrollCount)
	must(s.RecordResults(cur, h.ID, []store.Result{r}, at(2*time.Hour)))(t)
	eq(t, "written", len(must(s.LatestResults(ctx(t), h.ID))(t)), 1)
}
