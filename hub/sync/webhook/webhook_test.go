package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	hubsync "github.com/posture-dev/posture/hub/sync"
	"github.com/posture-dev/posture/hub/sync/webhook"
)

var secret = []byte("0123456789abcdef-webhook-secret")

type hosts map[string]webhook.HostInfo

func (h hosts) HostInfo(_ context.Context, id string) (webhook.HostInfo, error) { return h[id], nil }

// receiver verifies every delivery as a careful receiver would: signature,
// tolerance, and a seen-id set against replays.
type receiver struct {
	t      *testing.T
	secret []byte

	mu       sync.Mutex
	seen     map[string]bool
	events   []webhook.Event
	rejected []string
	fail     func(n int) int // status to answer for the n-th delivery (0 = 204)
	n        int
}

func newReceiver(t *testing.T) (*receiver, *httptest.Server) {
	r := &receiver{t: t, secret: secret, seen: map[string]bool{}}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return r, srv
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	if r.fail != nil {
		if st := r.fail(r.n); st != 0 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(st)
			return
		}
	}
	if err := webhook.Verify(r.secret, req.Header.Get(webhook.SignatureHeader), body, time.Now(), time.Minute); err != nil {
		r.rejected = append(r.rejected, err.Error())
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	id := req.Header.Get(webhook.EventHeader)
	if r.seen[id] {
		w.WriteHeader(http.StatusNoContent) // a replay or a retry after a lost answer: ack, do not act twice
		return
	}
	r.seen[id] = true
	var ev webhook.Event
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID != id {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	r.events = append(r.events, ev)
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) got() []webhook.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]webhook.Event(nil), r.events...)
}

func TestSignVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"device_id":"d"}`)
	h := webhook.Sign(secret, now, body)
	if !strings.HasPrefix(h, "t=1800000000,v1=") {
		t.Fatalf("header %q", h)
	}
	if err := webhook.Verify(secret, h, body, now.Add(30*time.Second), time.Minute); err != nil {
		t.Fatal(err)
	}
	// Rotation: a second v1 under the new secret still verifies.
	other := webhook.Sign([]byte("another-secret-of-16+"), now, body)
	if err := webhook.Verify(secret, other+","+strings.Split(h, ",")[1], body, now, time.Minute); err != nil {
		t.Fatalf("rotation header: %v", err)
	}
	for name, c := range map[string]struct {
		header string
		body   []byte
		now    time.Time
		want   error
	}{
		"tampered body":      {h, []byte(`{"device_id":"e"}`), now, webhook.ErrBadSignature},
		"wrong secret":       {other, body, now, webhook.ErrBadSignature},
		"replayed later":     {h, body, now.Add(2 * time.Minute), webhook.ErrTooOld},
		"from the future":    {h, body, now.Add(-2 * time.Minute), webhook.ErrTooOld},
		"timestamp moved":    {strings.Replace(h, "t=1800000000", "t=1800000100", 1), body, now.Add(100 * time.Second), webhook.ErrBadSignature},
		"no signature":       {"t=1800000000", body, now, webhook.ErrBadHeader},
		"garbage":            {"sha256=abc", body, now, webhook.ErrBadHeader},
		"empty":              {"", body, now, webhook.ErrBadHeader},
		"signature, no time": {"v1=" + strings.Split(h, "v1=")[1], body, now, webhook.ErrBadHeader},
	} {
		if err := webhook.Verify(secret, c.header, c.body, c.now, time.Minute); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", name, err, c.want)
		}
	}
}

func TestNewRejects(t *testing.T) {
	for _, u := range []string{"", "ftp://x/y", "http://example.com/hook", "https://user:pw@example.com/", "not a url"} {
		if _, err := webhook.New(webhook.Config{URL: u, Secret: secret}); err == nil {
			t.Errorf("url %q accepted", u)
		}
	}
	if _, err := webhook.New(webhook.Config{URL: "https://example.com/h", Secret: []byte("short")}); err == nil {
		t.Error("short secret accepted")
	}
	if _, err := webhook.New(webhook.Config{URL: "http://127.0.0.1:9/h", Secret: secret}); err != nil {
		t.Errorf("loopback http refused: %v", err)
	}
}

func TestApplyOutcomes(t *testing.T) {
	r, srv := newReceiver(t)
	s, err := webhook.New(webhook.Config{URL: srv.URL, Secret: secret, Hosts: hosts{"h1": {Hostname: "mac-1",
		FailingPolicies: []webhook.FailingPolicy{{ID: "macos-filevault", Name: "FileVault", Severity: "high", Blocking: true}}}}})
	if err != nil {
		t.Fatal(err)
	}
	statuses := map[int]int{1: 503, 2: 500, 3: 429, 4: 400, 5: 302}
	r.fail = func(n int) int { return statuses[n] }
	c := hubsync.Change{OutboxID: 7, IntegrationID: "wh", DeviceID: "dev-1", HostID: "h1", Desired: hubsync.DesiredNoncompliant, Verdict: "NONCOMPLIANT", CreatedAt: time.Now()}
	want := []hubsync.OutcomeKind{hubsync.OutcomeThrottled, hubsync.OutcomeRetry, hubsync.OutcomeThrottled, hubsync.OutcomePermanent, hubsync.OutcomePermanent, hubsync.OutcomeOK}
	for i, k := range want {
		if o := s.Apply(context.Background(), []hubsync.Change{c})[0]; o.Kind != k {
			t.Fatalf("delivery %d: %v (%s %s), want %v", i+1, o.Kind, o.Code, o.Message, k)
		}
	}
	evs := r.got()
	if len(evs) != 1 {
		t.Fatalf("events %v", evs)
	}
	ev := evs[0]
	if ev.ID != "posture-7" || ev.DeviceID != "dev-1" || ev.Hostname != "mac-1" || ev.Compliant || ev.Verdict != "NONCOMPLIANT" ||
		len(ev.FailingPolicies) != 1 || ev.FailingPolicies[0].ID != "macos-filevault" || ev.Time.IsZero() {
		t.Fatalf("event %+v", ev)
	}
	// A receiver with another secret refuses: permanent (401), not retried forever.
	r.secret = []byte("some-other-secret-value")
	c.OutboxID = 8
	if o := s.Apply(context.Background(), []hubsync.Change{c})[0]; o.Kind != hubsync.OutcomePermanent || o.Code != "401" {
		t.Fatalf("wrong secret: %+v", o)
	}
}

// Through the real worker and outbox: transitions with failures in between
// reach the receiver once each, in order, every one verified.
func TestWorkerDeliversEachTransitionOnce(t *testing.T) {
	r, srv := newReceiver(t)
	r.fail = func(n int) int {
		if n%3 == 1 {
			return 502
		}
		return 0
	}
	s, err := webhook.New(webhook.Config{URL: srv.URL, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	ob := hubsync.NewMemOutbox()
	w, err := hubsync.NewWorker(hubsync.Config{Outbox: ob, Sinks: func(context.Context, string) (hubsync.Sink, error) { return s, nil },
		BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	states := []string{hubsync.DesiredCompliant, hubsync.DesiredNoncompliant, hubsync.DesiredCompliant, hubsync.DesiredNoncompliant}
	for i, d := range states {
		if _, err := ob.Enqueue(ctx, hubsync.Change{IntegrationID: "wh", DeviceID: "dev-1", HostID: "h1", Desired: d, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(r.got()) < i+1 {
			if time.Now().After(deadline) {
				t.Fatalf("transition %d not delivered; rows %+v", i, ob.Rows(""))
			}
			if _, err := w.RunOnce(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Nothing more is pending, and a further round sends nothing.
	if _, err := w.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	evs := r.got()
	if len(evs) != len(states) || len(r.rejected) != 0 {
		t.Fatalf("events %d (rejected %v), want %d", len(evs), r.rejected, len(states))
	}
	for i, ev := range evs {
		if ev.Compliant != (states[i] == hubsync.DesiredCompliant) {
			t.Fatalf("event %d: %+v, want %s", i, ev, states[i])
		}
	}
}
