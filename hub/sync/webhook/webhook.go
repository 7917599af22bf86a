// Package webhook is the signed-webhook sink: each device state change is
// POSTed as JSON to one URL, signed with HMAC-SHA256 so the receiver can
// check where it came from and reject replays. Deliveries go through the
// sync outbox like every sink: retried with backoff, dead-lettered with a
// visible reason, one delivery per transition.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	hubsync "github.com/posture-dev/posture/hub/sync"
)

// Header names.
const (
	// SignatureHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256 of
	// "<t>.<body>">". Several v1 values may follow during a secret rotation.
	SignatureHeader = "Posture-Signature"
	// EventHeader is the delivery's id (stable across retries): receivers
	// drop a repeated id.
	EventHeader = "Posture-Event-Id"
)

// DefaultTolerance is how old a signature Verify accepts.
const DefaultTolerance = 5 * time.Minute

// Event is the JSON body of one delivery.
type Event struct {
	ID       string `json:"id"` // = EventHeader
	Type     string `json:"type"`
	DeviceID string `json:"device_id"` // Entra device id
	HostID   string `json:"host_id"`
	Hostname string `json:"hostname,omitempty"`
	// Verdict is the hub's state (COMPLIANT, NONCOMPLIANT, GRACE, UNKNOWN);
	// Compliant is what an identity provider should act on (GRACE counts
	// as compliant until its deadline).
	Verdict         string          `json:"verdict"`
	Compliant       bool            `json:"compliant"`
	FailingPolicies []FailingPolicy `json:"failing_policies"`
	Time            time.Time       `json:"time"` // when the verdict changed
	SentAt          time.Time       `json:"sent_at"`
}

// FailingPolicy is one policy the host fails.
type FailingPolicy struct {
	ID       string `json:"id"`
	Name     string `json:"name,omitempty"`
	Severity string `json:"severity,omitempty"`
	Blocking bool   `json:"blocking"`
}

// HostInfo is what the sink adds about a host at send time.
type HostInfo struct {
	Hostname        string
	FailingPolicies []FailingPolicy
}

// Hosts looks hosts up (hub/integrations wires the store in). A missing
// host (deleted meanwhile) returns a zero HostInfo and no error.
type Hosts interface {
	HostInfo(ctx context.Context, hostID string) (HostInfo, error)
}

// Config configures a Sink.
type Config struct {
	URL    string
	Secret []byte
	Hosts  Hosts        // optional: without it events carry ids only
	Client *http.Client // default: 10s timeout, no redirects
	Logger *slog.Logger
	Now    func() time.Time
}

// Sink posts signed events.
type Sink struct {
	cfg Config
}

// New checks cfg: an http(s) URL (plain http only to loopback, where tests
// and local relays live) and a secret of at least 16 bytes.
func New(cfg Config) (*Sink, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("webhook url %q: want https://host/path", cfg.URL)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if h := u.Hostname(); h != "localhost" && h != "127.0.0.1" && h != "::1" {
			return nil, fmt.Errorf("webhook url %q: plain http only to loopback; use https", cfg.URL)
		}
	default:
		return nil, fmt.Errorf("webhook url %q: want https", cfg.URL)
	}
	if u.User != nil {
		return nil, errors.New("webhook url: no credentials in the URL; the signature authenticates the hub")
	}
	if len(cfg.Secret) < 16 {
		return nil, errors.New("webhook secret: at least 16 bytes")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sink{cfg: cfg}, nil
}

// Name implements hubsync.Sink.
func (s *Sink) Name() string { return "webhook" }

// MaxBatch: each event is its own POST; a small batch keeps one Apply
// within its timeout against a slow receiver.
func (s *Sink) MaxBatch() int { return 5 }

// Apply posts one event per change.
func (s *Sink) Apply(ctx context.Context, changes []hubsync.Change) []hubsync.Outcome {
	out := make([]hubsync.Outcome, len(changes))
	for i, c := range changes {
		out[i] = s.send(ctx, c)
	}
	return out
}

// EventFor builds the event of a change.
func (s *Sink) EventFor(ctx context.Context, c hubsync.Change) (Event, error) {
	ev := Event{
		ID: "posture-" + strconv.FormatInt(c.OutboxID, 10), Type: "device.compliance", DeviceID: c.DeviceID, HostID: c.HostID,
		Verdict: c.Verdict, Compliant: c.Desired == hubsync.DesiredCompliant, FailingPolicies: []FailingPolicy{},
		Time: c.CreatedAt.UTC(), SentAt: s.cfg.Now().UTC(),
	}
	if s.cfg.Hosts != nil && c.HostID != "" {
		hi, err := s.cfg.Hosts.HostInfo(ctx, c.HostID)
		if err != nil {
			return Event{}, err
		}
		ev.Hostname = hi.Hostname
		if hi.FailingPolicies != nil {
			ev.FailingPolicies = hi.FailingPolicies
		}
	}
	return ev, nil
}

func (s *Sink) send(ctx context.Context, c hubsync.Change) hubsync.Outcome {
	ev, err := s.EventFor(ctx, c)
	if err != nil {
		return hubsync.Outcome{Kind: hubsync.OutcomeRetry, Code: "host_lookup", Message: err.Error()}
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return hubsync.Outcome{Kind: hubsync.OutcomePermanent, Code: "encode", Message: err.Error()}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return hubsync.Outcome{Kind: hubsync.OutcomePermanent, Code: "request", Message: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "posture-hub")
	req.Header.Set(EventHeader, ev.ID)
	req.Header.Set(SignatureHeader, Sign(s.cfg.Secret, s.cfg.Now(), body))
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return hubsync.Outcome{Kind: hubsync.OutcomeRetry, Code: "unreachable", Message: err.Error()}
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	msg := strings.TrimSpace(string(snippet))
	code := strconv.Itoa(resp.StatusCode)
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return hubsync.Outcome{Kind: hubsync.OutcomeOK}
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		return hubsync.Outcome{Kind: hubsync.OutcomeThrottled, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), s.cfg.Now()), Code: code, Message: msg}
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusRequestTimeout:
		return hubsync.Outcome{Kind: hubsync.OutcomeRetry, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), s.cfg.Now()), Code: code, Message: msg}
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		// Redirects are not followed: the signature was made for this URL.
		return hubsync.Outcome{Kind: hubsync.OutcomePermanent, Code: code, Message: "redirected to " + resp.Header.Get("Location") + ": set the final URL"}
	default:
		// 4xx: the receiver refused this event (bad signature, unknown
		// device): sending it again will not help.
		return hubsync.Outcome{Kind: hubsync.OutcomePermanent, Code: code, Message: msg}
	}
}

func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 {
		return time.Duration(f * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Sign returns the signature header value for body at time t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + mac(secret, ts, body)
}

func mac(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Verification errors.
var (
	ErrBadHeader    = errors.New("webhook: malformed signature header")
	ErrBadSignature = errors.New("webhook: no signature matches")
	ErrTooOld       = errors.New("webhook: signature timestamp outside the tolerance (replay?)")
)

// Verify checks a delivery as a receiver should: the header's timestamp is
// within tolerance of now (either way), and one v1 signature matches the
// body under secret (compared in constant time). Receivers should also drop
// an EventHeader id they have seen.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrBadHeader
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrBadHeader
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return ErrTooOld
	}
	want := []byte(mac(secret, ts, body))
	for _, s := range sigs {
		if hmac.Equal([]byte(s), want) {
			return nil
		}
	}
	return ErrBadSignature
}
