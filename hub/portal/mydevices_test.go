package portal

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/sqlite"
)

type myDevicesFixture struct {
	t      *testing.T
	ctx    context.Context
	st     *sqlite.Store
	signer *Signer
	svc    *Service
}

func newMyDevicesFixture(t *testing.T) *myDevicesFixture {
	t.Helper()
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	signer, err := NewSigner([]byte(strings.Repeat("k", 32)), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	return &myDevicesFixture{t: t, ctx: ctx, st: st, signer: signer, svc: NewService(ServiceConfig{Store: st, Signer: signer})}
}

// host enrolls a host of team with a hardware UUID, reporting an Entra
// device id and upn.
func (f *myDevicesFixture) host(name, team, hw, entra, upn string, enrolled time.Time) store.Host {
	f.t.Helper()
	h, err := f.st.EnrollHost(f.ctx, store.Host{Team: team, Hostname: name, Platform: "darwin", HardwareUUID: hw,
		EnrolledAt: enrolled, LastSeenAt: enrolled})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.st.SetHostIdentity(f.ctx, h.ID, entra, upn); err != nil {
		f.t.Fatal(err)
	}
	h, err = f.st.GetHost(f.ctx, h.ID)
	if err != nil {
		f.t.Fatal(err)
	}
	return h
}

func (f *myDevicesFixture) verdict(h store.Host, state, cause string) {
	f.t.Helper()
	desired := "noncompliant"
	if state == "COMPLIANT" {
		desired = "compliant"
	}
	if err := f.st.SaveVerdict(f.ctx, store.Verdict{HostID: h.ID, State: state, Cause: cause, Desired: desired,
		UpdatedAt: time.Now()}, 0, nil); err != nil {
		f.t.Fatal(err)
	}
}

func (f *myDevicesFixture) list(user string) *posturev1.ListMyDevicesResponse {
	f.t.Helper()
	tok, _ := f.signer.Sign(kindSession, user, time.Hour)
	c := (&http.Cookie{Name: SessionCookie, Value: tok}).String()
	resp, err := f.svc.ListMyDevices(metadata.NewIncomingContext(f.ctx, metadata.Pairs("cookie", c)), &posturev1.ListMyDevicesRequest{})
	if err != nil {
		f.t.Fatal(err)
	}
	return resp
}

// summary is what a test compares of a PortalDeviceSummary.
func summary(d *posturev1.PortalDeviceSummary) string {
	s := d.GetHostname() + " " + d.GetState() + "/" + d.GetCause()
	if d.GetRevoked() {
		s += " revoked"
	}
	if d.GetReplacedBy() != "" {
		s += " replaced-by=" + d.GetReplacedBy()
	}
	return s
}

// Every state a user's device can be in reaches "Your devices" as what it
// is; another user's host is never listed nor named.
func TestListMyDevicesStates(t *testing.T) {
	f := newMyDevicesFixture(t)
	now := time.Now().Add(-time.Hour)
	ada := "Ada@Example.com"

	ok := f.host("a-ok", "default", "hw-ok", "dev-ok", "ada@example.com", now)
	f.verdict(ok, "COMPLIANT", "passing")
	// An Entra device two hosts claim: ada's and bob's.
	conflict := f.host("b-conflict", "default", "hw-conflict", "dev-shared", "ADA@example.com", now)
	bobs := f.host("bob-secret-mac", "default", "hw-bob", "dev-shared", "bob@example.com", now)
	f.verdict(conflict, "NONCOMPLIANT", "device_conflict")
	f.verdict(bobs, "NONCOMPLIANT", "device_conflict")
	// A live host whose Entra device a revoked host named.
	devRevoked := f.host("c-devrevoked", "default", "hw-devrevoked", "dev-gone", "ada@example.com", now)
	f.verdict(devRevoked, "NONCOMPLIANT", "device_revoked")
	// A host IT revoked (its last verdict said compliant).
	revoked := f.host("d-revoked", "default", "hw-revoked", "dev-revoked", "ada@example.com", now)
	f.verdict(revoked, "COMPLIANT", "passing")
	if _, err := f.st.RevokeHost(f.ctx, revoked.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	// A Mac re-enrolled from team-a into team-b: the duplicate is current.
	orig := f.host("mac", "team-a", "hw-mac", "dev-mac", "ada@example.com", now)
	dup := f.host("mac", "team-b", "hw-mac", "dev-mac", "ada@example.com", now.Add(time.Minute))
	if dup.DuplicateOf != orig.ID {
		t.Fatalf("duplicate of %q, want %q", dup.DuplicateOf, orig.ID)
	}
	f.verdict(orig, "NONCOMPLIANT", "device_conflict")
	f.verdict(dup, "NONCOMPLIANT", "device_conflict")
	// Ada's host enrolled as a duplicate of bob's: related to nothing of ada's.
	bobOrig := f.host("shared-box", "team-a", "hw-shared", "", "bob@example.com", now)
	adaDup := f.host("shared-box", "team-b", "hw-shared", "", "ada@example.com", now.Add(time.Minute))
	if adaDup.DuplicateOf != bobOrig.ID {
		t.Fatalf("duplicate of %q, want %q", adaDup.DuplicateOf, bobOrig.ID)
	}
	// No verdict yet.
	f.host("e-new", "default", "hw-new", "", "ada@example.com", now)

	resp := f.list(ada)
	var got []string
	for _, d := range resp.GetDevices() {
		got = append(got, summary(d))
	}
	want := []string{
		"a-ok COMPLIANT/passing",
		"b-conflict NONCOMPLIANT/device_conflict",
		"c-devrevoked NONCOMPLIANT/device_revoked",
		"d-revoked NONCOMPLIANT/revoked revoked",
		"e-new UNKNOWN/no_results",
		"mac NONCOMPLIANT/device_conflict",
		"mac NONCOMPLIANT/device_conflict replaced-by=" + dup.ID,
		"shared-box UNKNOWN/no_results",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("ada's devices:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if resp.GetDevices()[5].GetDeviceId() != dup.ID {
		t.Fatalf("the current registration is not listed first")
	}

	// Nothing of bob's hosts reaches ada: not in the JSON, not on the page.
	page := renderDevices(t, f.signer, resp)
	for _, leak := range []string{bobs.ID, bobs.Hostname, bobOrig.ID, "bob@"} {
		if strings.Contains(resp.String(), leak) || strings.Contains(page, leak) {
			t.Fatalf("ada's devices reveal bob's host (%q)", leak)
		}
	}
	for _, want := range []string{
		"access is blocked until IT reviews it",                 // conflict
		"belongs to a registration your IT team removed",        // device_revoked
		"removed this device from the compliance service",       // revoked
		`It was registered again as <a href="#device-` + dup.ID, // duplicate
		`<li id="device-` + revoked.ID + `" data-state="NONCOMPLIANT" data-cause="revoked"><strong>d-revoked</strong>`,
	} {
		if !strings.Contains(page, want) {
			t.Fatalf("the page lacks %q:\n%s", want, page)
		}
	}
	if strings.Count(page, "current registration") != 1 {
		t.Fatalf("want exactly the re-enrolled Mac marked current:\n%s", page)
	}
	if strings.Contains(page, "device_id="+revoked.ID) {
		t.Fatal("a revoked host links to a page that would say it does not exist")
	}

	// Bob sees his hosts, and nothing says his box was re-registered by ada.
	got = nil
	for _, d := range f.list("bob@example.com").GetDevices() {
		got = append(got, summary(d))
	}
	if want := "bob-secret-mac NONCOMPLIANT/device_conflict\nshared-box UNKNOWN/no_results"; strings.Join(got, "\n") != want {
		t.Fatalf("bob's devices:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}

	// The revoked host stays "no device you may see" on its own page, as
	// for a host that does not exist.
	tok, _ := f.signer.Sign(kindSession, ada, time.Hour)
	c := (&http.Cookie{Name: SessionCookie, Value: tok}).String()
	_, err := f.svc.GetDevice(metadata.NewIncomingContext(f.ctx, metadata.Pairs("cookie", c)),
		&posturev1.GetPortalDeviceRequest{DeviceId: revoked.ID})
	if status.Code(err) != codes.NotFound || err.Error() != errNoDevice.Error() {
		t.Fatalf("revoked host's page: %v", err)
	}
}

// A user principal name that only folds to the user's under Unicode rules
// (Kelvin sign for K) is somebody else's, in the list and on the page.
func TestListMyDevicesFoldsASCIIOnly(t *testing.T) {
	f := newMyDevicesFixture(t)
	h := f.host("kelvin", "default", "hw-k", "", "\u212Aate@example.com", time.Now())
	if got := f.list("kate@example.com").GetDevices(); len(got) != 0 {
		t.Fatalf("kate sees %v", got)
	}
	if ownedBy(h, "kate@example.com") {
		t.Fatal("kate may open the Kelvin host's page")
	}
	if got := f.list("KATE@example.com"); len(got.GetDevices()) != 0 {
		t.Fatalf("KATE sees %v", got.GetDevices())
	}
}

func renderDevices(t *testing.T, signer *Signer, resp *posturev1.ListMyDevicesResponse) string {
	t.Helper()
	p, err := NewPages(nil, signer, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	p.render(rec, http.StatusOK, "devices", page{Title: "Your devices", SignedIn: true, User: resp.GetUser(),
		Devices: deviceRows(resp.GetDevices()), NextPath: "/remediate"})
	return rec.Body.String()
}
