package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/posture-dev/posture/hub/store"
)

// "Your devices" in a real browser shows each device's real state: an Entra
// device claimed by ada's and bob's hosts is blocked pending IT review
// (bob's host never shown), a revoked host is blocked with no link, and of a
// Mac re-enrolled into another team the earlier registration names the
// current one.
func TestPortalMyDevicesStatesInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("runs posture.ext and chromium")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	env := startPortalEnv(t, ctx)
	st, eng := env.hp.hub.Store, env.hp.hub.Engine
	now := time.Now()
	add := func(name, team, hw, entra, upn string) store.Host {
		t.Helper()
		h, err := st.EnrollHost(ctx, store.Host{Team: team, Hostname: name, Platform: "darwin", HardwareUUID: hw, EnrolledAt: now, LastSeenAt: now})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.SetHostIdentity(ctx, h.ID, entra, upn); err != nil {
			t.Fatal(err)
		}
		return h
	}
	conflict := add("ada-conflict", store.DefaultTeam, "hw-conflict", "11111111-0000-0000-0000-000000000001", portalUser)
	rival := add("bob-rival", store.DefaultTeam, "hw-rival", "11111111-0000-0000-0000-000000000001", "bob@contoso.example")
	old := add("ada-old", store.DefaultTeam, "hw-old", "", strings.ToUpper(portalUser))
	if _, err := st.RevokeHost(ctx, old.ID, now); err != nil {
		t.Fatal(err)
	}
	orig := add("ada-laptop", store.DefaultTeam, "hw-laptop", "", portalUser)
	dup := add("ada-laptop", "eng", "hw-laptop", "", portalUser)
	for _, h := range []store.Host{conflict, rival, old, orig, dup} {
		if _, err := eng.Evaluate(ctx, h.ID, true); err != nil {
			t.Fatal(err)
		}
	}

	browser := newBrowser(t, trustCA(t, env.idpCA))
	shots := artifactDir(t)
	bctx, cancelB := context.WithTimeout(browser, 2*time.Minute)
	defer cancelB()
	do(t, bctx, "open /remediate with no device", chromedp.Navigate(env.base+"/remediate"), chromedp.WaitVisible(chromedp.CSS("#login")))
	do(t, bctx, "sign in",
		chromedp.SendKeys(chromedp.CSS("#login"), portalUser),
		chromedp.SendKeys(chromedp.CSS("#passwd"), portalPass),
		chromedp.Click(chromedp.CSS("#idSIButton9")),
		chromedp.WaitVisible(chromedp.CSS("#devices")),
	)
	screenshot(t, bctx, shots, "my-devices-states.png")
	devices := pageText(t, bctx, "#devices")
	if strings.Contains(devices, "bob-rival") || strings.Contains(pageEval[string](t, bctx, `document.documentElement.outerHTML`), rival.ID) {
		t.Fatalf("ada's devices show bob's host:\n%s", devices)
	}
	item := func(id string) string { return pageText(t, bctx, "#device-"+id) }
	if s := item(conflict.ID); !strings.Contains(s, "Blocked: IT review") || !strings.Contains(s, "blocked until IT reviews it") {
		t.Fatalf("conflicting device reads %q", s)
	}
	if s := item(old.ID); !strings.Contains(s, "Blocked") || !strings.Contains(s, "contact IT") {
		t.Fatalf("revoked device reads %q", s)
	}
	if n := pageEval[int](t, bctx, `document.querySelectorAll('#device-`+old.ID+` a').length`); n != 0 {
		t.Fatalf("revoked device has %d links", n)
	}
	if s := item(orig.ID); !strings.Contains(s, "earlier registration") || !strings.Contains(s, "registered again as ada-laptop") {
		t.Fatalf("earlier registration reads %q", s)
	}
	if s := item(dup.ID); strings.Contains(s, "earlier registration") || !strings.Contains(s, "current registration") {
		t.Fatalf("current registration reads %q", s)
	}
	// The conflicting device's own page says the same, not "fix the steps".
	do(t, bctx, "open the conflicting device", chromedp.Click(chromedp.CSS("#device-"+conflict.ID+" a")), chromedp.WaitVisible(chromedp.CSS("#state")))
	if s := pageText(t, bctx, "#lead"); !strings.Contains(s, "until your IT team reviews it") {
		t.Fatalf("conflicting device's page leads with %q", s)
	}
	if html := pageEval[string](t, bctx, `document.documentElement.outerHTML`); strings.Contains(html, "bob-rival") || strings.Contains(html, rival.ID) {
		t.Fatal("the conflicting device's page names bob's host")
	}
}
