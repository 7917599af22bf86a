package graph

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	hubsync "github.com/posture-dev/posture/hub/sync"
	"github.com/posture-dev/posture/hub/sync/graph/standin"
)

const (
	clientID = "11111111-2222-3333-4444-555555555555"
	secret   = "s3cr3t-value~"
)

func devID(n int) string { return fmt.Sprintf("d0000000-0000-4000-8000-%012d", n) }

type env struct {
	pair   *standin.Pair
	sleeps *sleepRecorder
}

// sleepRecorder replaces the sink's waits: it records what was asked and
// returns at once, so tests assert the honoured Retry-After without waiting.
type sleepRecorder struct {
	mu sync.Mutex
	d  []time.Duration
}

func (r *sleepRecorder) sleep(ctx context.Context, d time.Duration) error {
	r.mu.Lock()
	r.d = append(r.d, d)
	r.mu.Unlock()
	return ctx.Err()
}

func (r *sleepRecorder) all() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.d...)
}

func newEnv(t *testing.T, devices int) *env {
	t.Helper()
	p, err := standin.Start(standin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	p.Entra.RegisterApp(standin.App{
		ClientID:    clientID,
		Secrets:     []standin.Secret{{Value: secret}},
		Permissions: []string{standin.PermDeviceReadWriteAll},
	})
	for i := 1; i <= devices; i++ {
		p.Graph.AddDevice(standin.Device{DeviceID: devID(i), DisplayName: fmt.Sprintf("host-%d", i), OperatingSystem: "MacMDM"})
	}
	return &env{pair: p, sleeps: &sleepRecorder{}}
}

func (e *env) config() Config {
	c := StandinConfig(e.pair, clientID, secret, 3)
	c.Logger = slog.New(slog.DiscardHandler)
	return c
}

func (e *env) sink(t *testing.T, cfg Config) *Sink {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.sleep = e.sleeps.sleep
	return s
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func attr(t *testing.T, e *env, id string) string {
	t.Helper()
	v, _ := e.pair.Graph.Attribute(id, 3)
	return v
}

func TestSinglePatchWithSecret(t *testing.T) {
	e := newEnv(t, 2)
	s := e.sink(t, e.config())
	out := s.apply(ctx(t), []change{{DeviceID: devID(1), Compliant: false}})
	if len(out) != 1 || out[0].Status != applied {
		t.Fatalf("outcome %+v", out)
	}
	if got := attr(t, e, devID(1)); got != "Non-compliant" {
		t.Fatalf("attribute = %q", got)
	}
	w := e.pair.Graph.Writes()
	if len(w) != 1 || w[0].Attribute != "extensionAttribute3" || w[0].Batched || w[0].Priority != "" || *w[0].Value != "Non-compliant" {
		t.Fatalf("writes %+v", w)
	}
	if st := e.pair.Graph.Stats(); st.Gzipped != st.Requests || st.Requests != 1 {
		t.Fatalf("want one gzip-bodied request, got %+v", st)
	}
	// azidentity with a custom authority must not ask for instance discovery.
	for _, p := range e.pair.Entra.Paths() {
		if strings.Contains(p, "discovery/instance") {
			t.Fatalf("instance discovery was called: %v", e.pair.Entra.Paths())
		}
	}
	if u := e.pair.Entra.UnknownPaths(); len(u) != 0 {
		t.Fatalf("client called endpoints the stand-in does not serve: %v", u)
	}
	// Second write flips it back; the token is cached (one token request).
	out = s.apply(WithLowPriority(ctx(t)), []change{{DeviceID: devID(1), Compliant: true}})
	if out[0].Status != applied || attr(t, e, devID(1)) != "Compliant" {
		t.Fatalf("flip back: %+v, attr %q", out, attr(t, e, devID(1)))
	}
	if w := e.pair.Graph.Writes(); w[1].Priority != "Low" {
		t.Fatalf("reconcile write priority %q", w[1].Priority)
	}
	if n := len(e.pair.Entra.TokenRequests()); n != 1 {
		t.Fatalf("token requests = %d, want 1 (cached)", n)
	}
}

func TestBatchWithPerItemOutcomes(t *testing.T) {
	e := newEnv(t, 30)
	s := e.sink(t, e.config())
	var changes []change
	for i := 1; i <= 23; i++ {
		changes = append(changes, change{DeviceID: devID(i), Compliant: i%2 == 0})
	}
	changes = append(changes, change{DeviceID: devID(999)}, change{DeviceID: "not-a-guid')"})
	out := s.apply(ctx(t), changes)
	if len(out) != len(changes) {
		t.Fatalf("%d outcomes for %d changes", len(out), len(changes))
	}
	for i := 0; i < 23; i++ {
		if out[i].Status != applied || out[i].DeviceID != devID(i+1) {
			t.Fatalf("item %d: %+v", i, out[i])
		}
		want := map[bool]string{true: "Compliant", false: "Non-compliant"}[(i+1)%2 == 0]
		if got := attr(t, e, devID(i+1)); got != want {
			t.Fatalf("device %d attribute %q, want %q", i+1, got, want)
		}
		if n := len(e.pair.Graph.WritesFor(devID(i + 1))); n != 1 {
			t.Fatalf("device %d written %d times", i+1, n)
		}
	}
	if o := out[23]; o.Status != failed || o.Code != "device_not_found" || o.Health != "" {
		t.Fatalf("unknown device: %+v", o)
	}
	if o := out[24]; o.Status != failed || o.Code != "invalid_device_id" {
		t.Fatalf("bad id: %+v", o)
	}
	if st := e.pair.Graph.Stats(); st.Batches != 2 || st.Requests != 2 {
		t.Fatalf("want 2 batches (20 + 4), got %+v", st)
	}
	if w := e.pair.Graph.Writes(); !w[0].Batched {
		t.Fatal("batched write not marked")
	}
}

func TestBatchItem429FractionalRetryAfterAnd5xx(t *testing.T) {
	e := newEnv(t, 5)
	e.pair.Graph.InjectFault(standin.Fault{Scope: standin.ScopeItem, DeviceID: devID(2), Status: 429, RetryAfter: "0.25", Times: 1})
	e.pair.Graph.InjectFault(standin.Fault{Scope: standin.ScopeItem, DeviceID: devID(4), Status: 503, Times: 1})
	s := e.sink(t, e.config())
	var changes []change
	for i := 1; i <= 5; i++ {
		changes = append(changes, change{DeviceID: devID(i)})
	}
	out := s.apply(ctx(t), changes)
	for i, o := range out {
		if o.Status != applied {
			t.Fatalf("item %d: %+v", i, o)
		}
		if n := len(e.pair.Graph.WritesFor(devID(i + 1))); n != 1 {
			t.Fatalf("device %d written %d times, want exactly 1", i+1, n)
		}
	}
	// One wait covering both items: the larger of 250ms (Retry-After) and the
	// 500ms first backoff for the 503 that had none.
	if got := e.sleeps.all(); !slices.Equal(got, []time.Duration{500 * time.Millisecond}) {
		t.Fatalf("waits %v", got)
	}
	if st := e.pair.Graph.Stats(); st.Batches != 2 {
		t.Fatalf("want the two failed items re-sent in a second batch, got %+v", st)
	}
}

func TestFractionalRetryAfterHonoured(t *testing.T) {
	e := newEnv(t, 3)
	e.pair.Graph.InjectFault(standin.Fault{Scope: standin.ScopeItem, DeviceID: devID(1), Status: 429, RetryAfter: "0.25", Times: 2})
	s := e.sink(t, e.config())
	out := s.apply(ctx(t), []change{{DeviceID: devID(1)}, {DeviceID: devID(2)}})
	if out[0].Status != applied || out[1].Status != applied {
		t.Fatalf("%+v", out)
	}
	if got := e.sleeps.all(); !slices.Equal(got, []time.Duration{250 * time.Millisecond, 250 * time.Millisecond}) {
		t.Fatalf("waits %v, want two of 250ms", got)
	}
	if n := len(e.pair.Graph.WritesFor(devID(1))); n != 1 {
		t.Fatalf("%d writes", n)
	}
}

func TestGzipBodySurvivesRetry(t *testing.T) {
	e := newEnv(t, 3)
	s := e.sink(t, e.config())
	// Whole-request 429 on the single PATCH, then on a $batch.
	e.pair.Graph.InjectFault(standin.Fault{Scope: standin.ScopeRequest, Status: 429, RetryAfter: "1.5", Times: 1})
	if out := s.apply(ctx(t), []change{{DeviceID: devID(1)}}); out[0].Status != applied {
		t.Fatalf("%+v", out)
	}
	e.pair.Graph.InjectFault(standin.Fault{Scope: standin.ScopeRequest, Status: 503, Times: 1})
	if out := s.apply(ctx(t), []change{{DeviceID: devID(2)}, {DeviceID: devID(3)}}); out[0].Status != applied || out[1].Status != applied {
		t.Fatalf("%+v", out)
	}
	st := e.pair.Graph.Stats()
	if st.Requests != 4 || st.Gzipped != 4 {
		t.Fatalf("want 4 gzip-bodied requests (2 sends + 2 re-sends), got %+v", st)
	}
	for i := 1; i <= 3; i++ {
		if n := len(e.pair.Graph.WritesFor(devID(i))); n != 1 || attr(t, e, devID(i)) != "Non-compliant" {
			t.Fatalf("device %d: %d writes, attr %q", i, n, attr(t, e, devID(i)))
		}
	}
	if got := e.sleeps.all(); !slices.Equal(got, []time.Duration{1500 * time.Millisecond, 500 * time.Millisecond}) {
		t.Fatalf("waits %v", got)
	}
}

func TestLongRetryAfterHandedBack(t *testing.T) {
	e := newEnv(t, 2)
	e.pair.Graph.InjectFault(standin.Fault{Scope: standin.ScopeItem, DeviceID: devID(1), Status: 429, RetryAfter: "30.5"})
	e.pair.Graph.InjectFault(standin.Fault{Scope: standin.ScopeRequest, Method: "PATCH", Status: 500})
	s := e.sink(t, e.config())
	out := s.apply(ctx(t), []change{{DeviceID: devID(1)}, {DeviceID: devID(2)}})
	if o := out[0]; o.Status != retry || o.RetryAfter != 30500*time.Millisecond || o.Code != "TooManyRequests" {
		t.Fatalf("throttled item: %+v", o)
	}
	if out[1].Status != applied {
		t.Fatalf("other item: %+v", out[1])
	}
	if len(e.sleeps.all()) != 0 || len(e.pair.Graph.WritesFor(devID(1))) != 0 {
		t.Fatalf("waited %v / wrote a throttled item", e.sleeps.all())
	}
	// A persistent 500 on the single PATCH: retried MaxRetries times, then Retry.
	out = s.apply(ctx(t), []change{{DeviceID: devID(2), Compliant: true}})
	if o := out[0]; o.Status != retry || o.Health != "" {
		t.Fatalf("persistent 500: %+v", o)
	}
	if n := len(e.sleeps.all()); n != 3 {
		t.Fatalf("%d waits, want MaxRetries=3", n)
	}
}

func TestRealWaitOnFractionalRetryAfter(t *testing.T) {
	e := newEnv(t, 2)
	e.pair.Graph.InjectFault(standin.Fault{Scope: standin.ScopeItem, DeviceID: devID(1), Status: 429, RetryAfter: "0.2", Times: 1})
	s, err := New(e.config()) // the real timer-based wait
	if err != nil {
		t.Fatal(err)
	}
	out := s.apply(ctx(t), []change{{DeviceID: devID(1)}, {DeviceID: devID(2)}})
	if out[0].Status != applied || out[1].Status != applied {
		t.Fatalf("%+v", out)
	}
	w := e.pair.Graph.WritesFor(devID(1))
	if len(w) != 1 {
		t.Fatalf("%d writes", len(w))
	}
}

func TestSlowResponseTimesOut(t *testing.T) {
	e := newEnv(t, 1)
	e.pair.Graph.InjectFault(standin.Fault{Scope: standin.ScopeRequest, Delay: 5 * time.Second, Times: 1})
	cfg := e.config()
	cfg.RequestTimeout = 300 * time.Millisecond
	s := e.sink(t, cfg)
	out := s.apply(ctx(t), []change{{DeviceID: devID(1)}})
	if out[0].Status != retry {
		t.Fatalf("slow response: %+v", out[0])
	}
	if out = s.apply(ctx(t), []change{{DeviceID: devID(1)}}); out[0].Status != applied {
		t.Fatalf("after the slow one: %+v", out[0])
	}
}

func newRSACert(t *testing.T, notAfter time.Time) ([]byte, *x509.Certificate) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "posture-graph"},
		NotBefore:    time.Now().Add(-48 * time.Hour),
		NotAfter:     notAfter,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pemData := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	return pemData, cert
}

func TestCertificateCredential(t *testing.T) {
	e := newEnv(t, 2)
	pemData, cert := newRSACert(t, time.Now().Add(10*24*time.Hour))
	e.pair.Entra.RegisterApp(standin.App{ClientID: clientID, Certificates: []*x509.Certificate{cert}, Permissions: []string{standin.PermDeviceReadWriteAll}})
	cfg := e.config()
	cfg.ClientSecret = ""
	cfg.Certificate = pemData
	s := e.sink(t, cfg)
	out := s.apply(ctx(t), []change{{DeviceID: devID(1)}, {DeviceID: devID(2), Compliant: true}})
	if out[0].Status != applied || out[1].Status != applied {
		t.Fatalf("%+v", out)
	}
	reqs := e.pair.Entra.TokenRequests()
	if len(reqs) != 1 || reqs[0].Method != "certificate" || reqs[0].Error != 0 {
		t.Fatalf("token requests %+v", reqs)
	}
	w := s.ExpiryWarning(time.Now())
	if w == nil || w.Threshold != 14 || w.DaysLeft != 10 || w.Credential != "certificate" {
		t.Fatalf("expiry warning %+v", w)
	}
	rep := s.TestConnection(ctx(t))
	if !rep.OK || len(rep.Warnings) == 0 || !strings.Contains(rep.Warnings[0], "expires in 10 days") {
		t.Fatalf("report %+v", rep)
	}
}

func TestTokenErrorsMapToHealth(t *testing.T) {
	goodPEM, goodCert := newRSACert(t, time.Now().Add(365*24*time.Hour))
	otherPEM, _ := newRSACert(t, time.Now().Add(365*24*time.Hour))
	expiredPEM, expiredCert := newRSACert(t, time.Now().Add(-time.Hour))
	_ = goodPEM
	cases := []struct {
		name   string
		app    standin.App
		mutate func(*Config)
		health Health
		code   string
	}{
		{"wrong secret", standin.App{Secrets: []standin.Secret{{Value: "other"}}}, nil, HealthSecretInvalid, "AADSTS7000215"},
		{"expired secret", standin.App{Secrets: []standin.Secret{{Value: secret, Expires: time.Now().Add(-time.Hour)}}}, nil, HealthSecretExpired, "AADSTS7000222"},
		{"unknown app", standin.App{}, func(c *Config) { c.ClientID = "99999999-2222-3333-4444-555555555555" }, HealthAppNotFound, "AADSTS700016"},
		{"unregistered certificate", standin.App{Certificates: []*x509.Certificate{goodCert}}, func(c *Config) { c.ClientSecret, c.Certificate = "", otherPEM }, HealthCertificateInvalid, "AADSTS700027"},
		{"expired certificate", standin.App{Certificates: []*x509.Certificate{expiredCert}}, func(c *Config) { c.ClientSecret, c.Certificate = "", expiredPEM }, HealthCertificateInvalid, "AADSTS700027"},
		{"unknown tenant", standin.App{Secrets: []standin.Secret{{Value: secret}}}, func(c *Config) { c.TenantID = "00000000-0000-0000-0000-00000000dead" }, HealthTenantNotFound, "AADSTS90002"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 2)
			tc.app.ClientID = clientID
			tc.app.Permissions = []string{standin.PermDeviceReadWriteAll}
			e.pair.Entra.RegisterApp(tc.app)
			cfg := e.config()
			if tc.mutate != nil {
				tc.mutate(&cfg)
			}
			s := e.sink(t, cfg)
			for _, changes := range [][]change{{{DeviceID: devID(1)}}, {{DeviceID: devID(1)}, {DeviceID: devID(2)}}} {
				for _, o := range s.apply(ctx(t), changes) {
					if o.Status != failed || o.Health != tc.health || o.Code != tc.code || o.Message == "" {
						t.Fatalf("outcome %+v, want %s %s", o, tc.health, tc.code)
					}
				}
			}
			if _, err := s.Read(ctx(t), []string{devID(1)}); err == nil || !strings.Contains(err.Error(), string(tc.health)) {
				t.Fatalf("Read error %v", err)
			}
			rep := s.TestConnection(ctx(t))
			if rep.OK || rep.TokenOK || rep.Health != tc.health || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], tc.code) {
				t.Fatalf("report %+v", rep)
			}
			if len(e.pair.Graph.Writes()) != 0 {
				t.Fatal("a write happened without a token")
			}
		})
	}
}

func TestPermissionMissing(t *testing.T) {
	e := newEnv(t, 2)
	e.pair.Entra.SetPermissions(clientID, standin.PermDeviceReadAll)
	s := e.sink(t, e.config())
	for _, changes := range [][]change{{{DeviceID: devID(1)}}, {{DeviceID: devID(1)}, {DeviceID: devID(2)}}} {
		for _, o := range s.apply(ctx(t), changes) {
			if o.Status != failed || o.Health != HealthPermissionMissing || o.Code != "Authorization_RequestDenied" || !strings.Contains(o.Message, "Device.ReadWrite.All") {
				t.Fatalf("outcome %+v", o)
			}
		}
	}
	rep := s.TestConnection(ctx(t))
	if rep.OK || !rep.TokenOK || !rep.ReadOK || rep.Health != HealthPermissionMissing || len(rep.Problems) != 1 ||
		!strings.Contains(rep.Problems[0], "lacks the application permission Device.ReadWrite.All (granted: Device.Read.All)") {
		t.Fatalf("report %+v", rep)
	}

	e.pair.Entra.SetPermissions(clientID)
	e.pair.Entra.RevokeTokens()
	s = e.sink(t, e.config())
	rep = s.TestConnection(ctx(t))
	if rep.OK || rep.ReadOK || len(rep.Problems) != 2 || !strings.Contains(rep.Problems[1], "Graph refused to list devices") {
		t.Fatalf("report without permissions %+v", rep)
	}
	if _, err := s.Read(ctx(t), []string{devID(1)}); err == nil || !strings.Contains(err.Error(), string(HealthPermissionMissing)) {
		t.Fatalf("Read: %v", err)
	}
}

func TestReadForReconcile(t *testing.T) {
	e := newEnv(t, 25)
	e.pair.Graph.SetAttribute(devID(1), 3, "Compliant")
	e.pair.Graph.SetAttribute(devID(2), 3, "Non-compliant")
	e.pair.Graph.InjectFault(standin.Fault{Scope: standin.ScopeItem, Method: "GET", DeviceID: devID(3), Status: 429, RetryAfter: "0.1", Times: 1})
	s := e.sink(t, e.config())
	var ids []string
	for i := 1; i <= 25; i++ {
		ids = append(ids, devID(i))
	}
	ids = append(ids, devID(500))
	got, err := s.Read(ctx(t), ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 25 || got[devID(1)] != hubsync.DesiredCompliant || got[devID(2)] != hubsync.DesiredNoncompliant || got[devID(3)] != "" {
		t.Fatalf("read %v", got)
	}
	if _, ok := got[devID(500)]; ok {
		t.Fatal("unknown device reported as present")
	}
	if st := e.pair.Graph.Stats(); st.LowPriority != st.Requests || st.Batches != 3 {
		t.Fatalf("reconcile traffic not low priority / not batched: %+v", st)
	}
	if len(e.pair.Graph.Writes()) != 0 {
		t.Fatal("Read wrote")
	}
}

func TestTestConnectionOK(t *testing.T) {
	e := newEnv(t, 1)
	e.pair.Graph.SetAttribute(devID(1), 3, "corp-laptop")
	cfg := e.config()
	cfg.SecretExpiresAt = time.Now().Add(5 * 24 * time.Hour)
	s := e.sink(t, cfg)
	rep := s.TestConnection(ctx(t))
	if !rep.OK || !rep.TokenOK || !rep.ReadOK || rep.Health != HealthOK || rep.SampleDeviceID != devID(1) ||
		!slices.Equal(rep.Roles, []string{"Device.ReadWrite.All"}) {
		t.Fatalf("report %+v", rep)
	}
	joined := strings.Join(rep.Warnings, "\n")
	if !strings.Contains(joined, "client secret") || !strings.Contains(joined, "expires in 5 days") || !strings.Contains(joined, `"corp-laptop"`) {
		t.Fatalf("warnings %q", joined)
	}
}

func TestUntrustedGraphCertificate(t *testing.T) {
	e := newEnv(t, 1)
	cfg := e.config()
	cfg.ExtraCAPEM = nil
	s := e.sink(t, cfg)
	rep := s.TestConnection(ctx(t))
	if rep.OK || rep.Health != HealthUnreachable || !strings.Contains(rep.Problems[0], "cannot reach the authority") {
		t.Fatalf("report %+v", rep)
	}
}

func TestConfigValidation(t *testing.T) {
	good := Config{Cloud: CloudUSGov, TenantID: "t", ClientID: "c", ClientSecret: "s", Attribute: 15}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := New(good)
	if err != nil {
		t.Fatal(err)
	}
	if s.ep.GraphBaseURL != "https://graph.microsoft.us/v1.0" || s.scope != "https://graph.microsoft.us/.default" || s.Value(true) != "Compliant" || s.Value(false) != "Non-compliant" {
		t.Fatalf("usgov endpoints %+v scope %s", s.ep, s.scope)
	}
	bad := []struct {
		mutate func(*Config)
		want   string
	}{
		{func(c *Config) { c.Cloud = "mars" }, "unknown cloud"},
		{func(c *Config) {
			c.Cloud = CloudCustom
			c.AuthorityHost = "http://x/"
			c.GraphBaseURL = "https://g/v1.0"
		}, "https authority host"},
		{func(c *Config) { c.Cloud = CloudCustom; c.AuthorityHost = "https://x/" }, "https Graph base URL"},
		{func(c *Config) { c.Attribute = 16 }, "1..15"},
		{func(c *Config) { c.Attribute = 0 }, "1..15"},
		{func(c *Config) { c.ClientSecret = "" }, "client secret or a certificate is required"},
		{func(c *Config) { c.Certificate = []byte("x") }, "not both"},
		{func(c *Config) { c.CompliantValue = "   " }, "must not be blank"},
		{func(c *Config) { c.CompliantValue = "X"; c.NoncompliantValue = "X" }, "must differ"},
		{func(c *Config) { c.ExtraCAPEM = []byte("junk") }, "no PEM certificate"},
		{func(c *Config) { c.TenantID = "" }, "tenant id"},
	}
	for _, b := range bad {
		c := good
		b.mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%+v: error %v, want %q", c, err, b.want)
		}
	}
	c := good
	c.ClientSecret, c.Certificate = "", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	if _, err := New(c); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("bad certificate accepted: %v", err)
	}
}

func TestCustomValues(t *testing.T) {
	e := newEnv(t, 1)
	cfg := e.config()
	cfg.Attribute = 15
	cfg.CompliantValue, cfg.NoncompliantValue = "ok", "blocked"
	s := e.sink(t, cfg)
	if out := s.apply(ctx(t), []change{{DeviceID: devID(1)}}); out[0].Status != applied {
		t.Fatalf("%+v", out)
	}
	if v, _ := e.pair.Graph.Attribute(devID(1), 15); v != "blocked" {
		t.Fatalf("attribute 15 = %q", v)
	}
	got, err := s.Read(ctx(t), []string{devID(1)})
	if err != nil || got[devID(1)] != hubsync.DesiredNoncompliant {
		t.Fatalf("read %v %v", got, err)
	}
}

func TestExpiryThreshold(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for _, tc := range []struct {
		left time.Duration
		th   int
		ok   bool
	}{
		{31 * day, 0, false}, {30 * day, 30, true}, {15 * day, 30, true}, {14 * day, 14, true},
		{8 * day, 14, true}, {7 * day, 7, true}, {time.Hour, 7, true}, {0, 0, true}, {-day, 0, true},
	} {
		th, ok := ExpiryThreshold(now.Add(tc.left), now)
		if th != tc.th || ok != tc.ok {
			t.Errorf("left %v: got %d %v, want %d %v", tc.left, th, ok, tc.th, tc.ok)
		}
	}
	if _, ok := ExpiryThreshold(time.Time{}, now); ok {
		t.Error("unknown expiry warned")
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"0.25": 250 * time.Millisecond, "2": 2 * time.Second, "1.5": 1500 * time.Millisecond,
		"Thu, 01 Jan 2026 00:00:03 GMT": 3 * time.Second,
	} {
		if got, ok := parseRetryAfter(in, now); !ok || got != want {
			t.Errorf("%q: %v %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "-1", "soon", "NaN"} {
		if _, ok := parseRetryAfter(in, now); ok {
			t.Errorf("%q accepted", in)
		}
	}
}

// The sync worker's view: Apply/Read through the hub/sync interfaces.
var (
	_ hubsync.Sink       = (*Sink)(nil)
	_ hubsync.Reader     = (*Sink)(nil)
	_ hubsync.BatchSizer = (*Sink)(nil)
)

func TestSyncInterfaceOutcomes(t *testing.T) {
	e := newEnv(t, 4)
	e.pair.Graph.InjectFault(standin.Fault{Scope: standin.ScopeItem, DeviceID: devID(2), Status: 429, RetryAfter: "42"})
	e.pair.Graph.InjectFault(standin.Fault{Scope: standin.ScopeItem, DeviceID: devID(3), Status: 500})
	s := e.sink(t, e.config())
	changes := []hubsync.Change{
		{DeviceID: devID(1), Desired: hubsync.DesiredNoncompliant},
		{DeviceID: devID(2), Desired: hubsync.DesiredNoncompliant},
		{DeviceID: devID(3), Desired: hubsync.DesiredNoncompliant},
		{DeviceID: devID(404), Desired: hubsync.DesiredCompliant},
		{DeviceID: devID(4), Desired: hubsync.DesiredCompliant, LowPriority: true},
	}
	out := s.Apply(ctx(t), changes)
	want := []hubsync.OutcomeKind{hubsync.OutcomeOK, hubsync.OutcomeThrottled, hubsync.OutcomeRetry, hubsync.OutcomePermanent, hubsync.OutcomeOK}
	for i, o := range out {
		if o.Kind != want[i] {
			t.Errorf("change %d: %+v, want %v", i, o, want[i])
		}
	}
	if out[1].RetryAfter != 42*time.Second || out[1].Code != "TooManyRequests" || out[3].Code != "device_not_found" {
		t.Fatalf("details: %+v", out)
	}
	// A LowPriority change (reconcile repair) makes the call background traffic.
	if w := e.pair.Graph.WritesFor(devID(4)); len(w) != 1 || w[0].Priority != "Low" || *w[0].Value != "Compliant" {
		t.Fatalf("repair write %+v", w)
	}
	if h := s.Health(); h.Health != HealthOK {
		t.Fatalf("health %+v", h)
	}
	if s.MaxBatch() != 20 || s.Name() != "graph" {
		t.Fatal("name / batch size")
	}

	e.pair.Entra.RegisterApp(standin.App{ClientID: clientID, Secrets: []standin.Secret{{Value: secret, Expires: time.Now().Add(-time.Minute)}}})
	e.pair.Entra.RevokeTokens()
	s = e.sink(t, e.config())
	out = s.Apply(ctx(t), changes[:1])
	if o := out[0]; o.Kind != hubsync.OutcomeThrottled || o.Code != "AADSTS7000222" || o.RetryAfter != credentialPause {
		t.Fatalf("expired secret: %+v", o)
	}
	if h := s.Health(); h.Health != HealthSecretExpired || HealthFromCode(out[0].Code) != HealthSecretExpired {
		t.Fatalf("health %+v", h)
	}
	if HealthFromCode("Authorization_RequestDenied") != HealthPermissionMissing || HealthFromCode("device_not_found") != "" {
		t.Fatal("HealthFromCode")
	}
}

func TestPFXCertificate(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed; PFX fixtures are made with it")
	}
	e := newEnv(t, 1)
	pemData, cert := newRSACert(t, time.Now().Add(90*24*time.Hour))
	dir := t.TempDir()
	in := filepath.Join(dir, "cred.pem")
	if err := os.WriteFile(in, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	pfx := filepath.Join(dir, "cred.pfx")
	// 3DES + SHA-1 MAC: the PKCS#12 flavour azidentity's parser reads.
	out, err := exec.Command(openssl, "pkcs12", "-export", "-in", in, "-out", pfx, "-passout", "pass:pfx-pw",
		"-certpbe", "PBE-SHA1-3DES", "-keypbe", "PBE-SHA1-3DES", "-macalg", "sha1").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl: %v: %s", err, out)
	}
	data, err := os.ReadFile(pfx)
	if err != nil {
		t.Fatal(err)
	}
	e.pair.Entra.RegisterApp(standin.App{ClientID: clientID, Certificates: []*x509.Certificate{cert}, Permissions: []string{standin.PermDeviceReadWriteAll}})
	cfg := e.config()
	cfg.ClientSecret, cfg.Certificate = "", data
	cfg.CertificatePassword = "wrong"
	if _, err := New(cfg); err == nil {
		t.Fatal("PFX opened with the wrong password")
	}
	cfg.CertificatePassword = "pfx-pw"
	s := e.sink(t, cfg)
	if out := s.apply(ctx(t), []change{{DeviceID: devID(1)}}); out[0].Status != applied {
		t.Fatalf("%+v", out)
	}
	if s.ExpiryWarning(time.Now()) != nil {
		t.Fatal("a certificate valid for 90 days should not warn")
	}
	if kind, exp := s.CredentialExpiry(); kind != "certificate" || !exp.Equal(cert.NotAfter) {
		t.Fatalf("expiry %s %v", kind, exp)
	}
}

func TestSecretExpiryReadFromGraph(t *testing.T) {
	e := newEnv(t, 1)
	expires := time.Now().Add(20 * 24 * time.Hour).Truncate(time.Second)
	e.pair.Entra.RegisterApp(standin.App{ClientID: clientID,
		Secrets:     []standin.Secret{{Value: "zzz-old", Expires: time.Now().Add(time.Hour)}, {Value: secret, Expires: expires}},
		Permissions: []string{standin.PermDeviceReadWriteAll, standin.PermApplicationReadAll}})
	s := e.sink(t, e.config())
	rep := s.TestConnection(ctx(t))
	if !rep.OK || len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "client secret") || !strings.Contains(rep.Warnings[0], "expires in 20 days") {
		t.Fatalf("report %+v", rep)
	}
	if _, got := s.CredentialExpiry(); !got.Equal(expires) {
		t.Fatalf("expiry %v, want %v", got, expires)
	}
	if w := s.ExpiryWarning(time.Now()); w == nil || w.Threshold != 30 {
		t.Fatalf("warning %+v", w)
	}

	// Without Application.Read.All nothing is read and nothing is claimed.
	e.pair.Entra.SetPermissions(clientID, standin.PermDeviceReadWriteAll)
	e.pair.Entra.RevokeTokens()
	s = e.sink(t, e.config())
	if rep := s.TestConnection(ctx(t)); !rep.OK || len(rep.Warnings) != 0 {
		t.Fatalf("report %+v", rep)
	}
	if _, err := s.RefreshSecretExpiry(ctx(t)); err == nil || !strings.Contains(err.Error(), "Application.Read.All") && !strings.Contains(err.Error(), "Authorization_RequestDenied") {
		t.Fatalf("refresh without permission: %v", err)
	}
}

func TestWrongBaseURL404IsNotDeviceNotFound(t *testing.T) {
	// A plain 404 (no Graph error body) must not dead-letter devices.
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }))
	defer srv.Close()
	e := newEnv(t, 1)
	cfg := e.config()
	cfg.GraphBaseURL = srv.URL + "/v1.0"
	cfg.ExtraCAPEM = append(e.pair.CA.CertPEM(), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})...)
	s := e.sink(t, cfg)
	out := s.apply(ctx(t), []change{{DeviceID: devID(1)}})
	if o := out[0]; o.Status != retry || o.Health != HealthUnreachable || o.Code != "http_404" {
		t.Fatalf("%+v", o)
	}
}

func TestWindowsMDMRoute(t *testing.T) {
	e := newEnv(t, 2) // devices 1 and 2 are macOS
	win := devID(3)
	e.pair.Graph.AddDevice(standin.Device{DeviceID: win, OperatingSystem: "Windows"})
	cfg := e.config()
	cfg.WindowsMDM = true

	// Not an approved MDM app: Graph refuses isCompliant, which surfaces as a
	// permission problem rather than a silent attribute-only write.
	s := e.sink(t, cfg)
	out := s.apply(ctx(t), []change{{DeviceID: win}})
	if o := out[0]; o.Status != failed || o.Health != HealthPermissionMissing || !strings.Contains(o.Message, "approved Windows MDM app") {
		t.Fatalf("non-MDM app: %+v", o)
	}

	e.pair.Entra.RegisterApp(standin.App{ClientID: clientID, Secrets: []standin.Secret{{Value: secret}}, Permissions: []string{standin.PermDeviceReadWriteAll}, MDM: true})
	e.pair.Entra.RevokeTokens()
	s = e.sink(t, cfg)
	out = s.apply(ctx(t), []change{{DeviceID: devID(1)}, {DeviceID: win}})
	if out[0].Status != applied || out[1].Status != applied {
		t.Fatalf("%+v", out)
	}
	d, _ := e.pair.Graph.Device(win)
	if d.IsCompliant == nil || *d.IsCompliant || d.IsManaged == nil || !*d.IsManaged || d.ExtensionAttributes["extensionAttribute3"] != "Non-compliant" {
		t.Fatalf("windows device %+v", d)
	}
	if mac, _ := e.pair.Graph.Device(devID(1)); mac.IsCompliant != nil || mac.ExtensionAttributes["extensionAttribute3"] != "Non-compliant" {
		t.Fatalf("mac device %+v", mac)
	}
	// The operating system is read once, then cached.
	before := e.pair.Graph.Stats().Requests
	if out := s.apply(ctx(t), []change{{DeviceID: win, Compliant: true}}); out[0].Status != applied {
		t.Fatalf("%+v", out)
	}
	if n := e.pair.Graph.Stats().Requests - before; n != 1 {
		t.Fatalf("%d requests for a cached device, want 1", n)
	}
	if d, _ := e.pair.Graph.Device(win); d.IsCompliant == nil || !*d.IsCompliant {
		t.Fatalf("flip back %+v", d)
	}
}
