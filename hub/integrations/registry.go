// Package integrations turns stored integrations into live sinks: it seals
// credentials before they are stored, opens them only to build a sink,
// caches sinks per integration version, tests connections and records each
// integration's health where admins can see it.
package integrations

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/posture-dev/posture/hub/secrets"
	"github.com/posture-dev/posture/hub/store"
	hubsync "github.com/posture-dev/posture/hub/sync"
	"github.com/posture-dev/posture/hub/sync/graph"
)

// KindGraph is the Entra device extension-attribute integration.
const KindGraph = "graph"

// Credential kinds as stored.
const (
	CredentialSecret      = "secret"
	CredentialCertificate = "certificate"
)

// Store is what the registry reads and writes.
type Store interface {
	GetIntegration(ctx context.Context, id string) (store.Integration, error)
	ListIntegrations(ctx context.Context) ([]store.Integration, error)
	UpdateIntegration(ctx context.Context, in store.Integration) error
	SetIntegrationHealth(ctx context.Context, id, health, message string, at time.Time) error
}

// Registry builds and caches sinks.
type Registry struct {
	st   Store
	keys *secrets.Keyring
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex
	sinks   map[string]cachedSink
	hosts   HostStore // for webhook events; see SetHosts
	partner PartnerDefaults
	scope   *scopes // Entra group scoping; see scope.go
	// kick wakes Run to record a health change at once.
	kick chan struct{}
	// onRebuild is called with an integration's id when its sink is
	// rebuilt for a new version (credential or configuration changed).
	onRebuild func(id string)
}

// OnRebuild sets the function called when an integration's sink is rebuilt
// because the integration changed (the sync worker ends its pause: the
// change may be the fix). Set it before use.
func (r *Registry) OnRebuild(f func(id string)) { r.onRebuild = f }

type cachedSink struct {
	sink      *graph.Sink
	other     hubsync.Sink // a non-graph kind (sink is nil then)
	updatedAt time.Time
	reported  graph.HealthStatus
}

// New returns a Registry.
func New(st Store, keys *secrets.Keyring, log *slog.Logger) *Registry {
	if log == nil {
		log = slog.Default()
	}
	return &Registry{st: st, keys: keys, log: log, now: time.Now, sinks: map[string]cachedSink{}, kick: make(chan struct{}, 1)}
}

// Credential is what an admin hands over: a client secret, or a certificate
// with its key (PEM, or PFX with a password).
type Credential struct {
	ClientSecret        string
	Certificate         []byte
	CertificatePassword string
}

// Empty reports whether no credential was given (an update keeps the stored one).
func (c Credential) Empty() bool { return c.ClientSecret == "" && len(c.Certificate) == 0 }

// aad binds a sealed credential to its integration: a ciphertext copied to
// another row does not open.
func aad(id string) []byte { return []byte("posture integration " + id) }

// Prepare validates an integration with its credential (building a sink,
// which makes no network call), seals the credential into in, and records
// the certificate's expiry. With an empty credential it keeps the sealed
// one already in `in` (an update).
func (r *Registry) Prepare(in *store.Integration, cred Credential) error {
	if in.Kind == "" {
		in.Kind = KindGraph
	}
	if err := checkScope(*in); err != nil {
		return err
	}
	if in.Kind != KindGraph {
		return r.prepareOther(in, cred)
	}
	if in.CompliantValue == "" {
		in.CompliantValue = graph.DefaultCompliantValue
	}
	if in.NoncompliantValue == "" {
		in.NoncompliantValue = graph.DefaultNoncompliantValue
	}
	if cred.Empty() {
		if len(in.SealedCredential) == 0 {
			return errors.New("a client secret or a certificate is required")
		}
		var err error
		if cred, err = r.open(*in); err != nil {
			return err
		}
	}
	if cred.ClientSecret != "" && len(cred.Certificate) > 0 {
		return errors.New("give a client secret or a certificate, not both")
	}
	cfg := r.config(*in, cred)
	sink, err := graph.New(cfg)
	if err != nil {
		return err
	}
	if cred.ClientSecret != "" {
		in.CredentialKind = CredentialSecret
		sealed, err := r.keys.Seal([]byte(cred.ClientSecret), aad(in.ID))
		if err != nil {
			return err
		}
		in.SealedCredential, in.SealedCertPassword, in.CertNotAfter = []byte(sealed), nil, nil
		return nil
	}
	in.CredentialKind = CredentialCertificate
	sealed, err := r.keys.Seal(cred.Certificate, aad(in.ID))
	if err != nil {
		return err
	}
	in.SealedCredential = []byte(sealed)
	in.SealedCertPassword = nil
	if cred.CertificatePassword != "" {
		pw, err := r.keys.Seal([]byte(cred.CertificatePassword), aad(in.ID+"/password"))
		if err != nil {
			return err
		}
		in.SealedCertPassword = []byte(pw)
	}
	if _, exp := sink.CredentialExpiry(); !exp.IsZero() {
		in.CertNotAfter = &exp
	}
	return nil
}

func (r *Registry) open(in store.Integration) (Credential, error) {
	plain, err := r.keys.Open(string(in.SealedCredential), aad(in.ID))
	if err != nil {
		return Credential{}, fmt.Errorf("integration %s: open credential (was the secrets key changed?): %w", in.ID, err)
	}
	if in.CredentialKind == CredentialSecret {
		return Credential{ClientSecret: string(plain)}, nil
	}
	c := Credential{Certificate: plain}
	if len(in.SealedCertPassword) > 0 {
		pw, err := r.keys.Open(string(in.SealedCertPassword), aad(in.ID+"/password"))
		if err != nil {
			return Credential{}, fmt.Errorf("integration %s: open certificate password: %w", in.ID, err)
		}
		c.CertificatePassword = string(pw)
	}
	return c, nil
}

func (r *Registry) config(in store.Integration, cred Credential) graph.Config {
	cfg := graph.Config{
		Cloud: graph.Cloud(in.Cloud), AuthorityHost: in.AuthorityHost, GraphBaseURL: in.GraphBaseURL, GraphResource: in.GraphResource,
		TenantID: in.TenantID, ClientID: in.ClientID,
		ClientSecret: cred.ClientSecret, Certificate: cred.Certificate, CertificatePassword: cred.CertificatePassword,
		Attribute: in.ExtensionAttribute, CompliantValue: in.CompliantValue, NoncompliantValue: in.NoncompliantValue,
		Logger: r.log.With("integration", in.ID),
		// Record health as soon as a sink sees it change: admins watching
		// `integrations list` after a fix see the last attempt, not the
		// one before the last tick.
		OnHealth: func(graph.HealthStatus) {
			select {
			case r.kick <- struct{}{}:
			default:
			}
		},
	}
	if strings.TrimSpace(in.ExtraCAPEM) != "" {
		cfg.ExtraCAPEM = []byte(in.ExtraCAPEM)
	}
	if in.SecretExpiresAt != nil {
		cfg.SecretExpiresAt = *in.SecretExpiresAt
	}
	return cfg
}

// build makes a fresh sink for a stored integration.
func (r *Registry) build(in store.Integration) (*graph.Sink, error) {
	cred, err := r.open(in)
	if err != nil {
		return nil, err
	}
	return graph.New(r.config(in, cred))
}

// Sink is the hub/sync SinkResolver: the cached sink of an integration,
// rebuilt when the integration was updated.
func (r *Registry) Sink(ctx context.Context, id string) (hubsync.Sink, error) {
	in, err := r.st.GetIntegration(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		r.mu.Lock()
		delete(r.sinks, id) // deleted: drop its cached sink and token
		r.mu.Unlock()
		return nil, fmt.Errorf("integration %s: %w", id, hubsync.ErrUnknownIntegration)
	}
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	c, ok := r.sinks[id]
	r.mu.Unlock()
	if ok && c.updatedAt.Equal(in.UpdatedAt) {
		if c.other != nil {
			return c.other, nil
		}
		return c.sink, nil
	}
	if in.Kind != KindGraph {
		o, err := r.buildOther(in)
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		r.sinks[id] = cachedSink{other: o, updatedAt: in.UpdatedAt}
		r.mu.Unlock()
		return o, nil
	}
	s, err := r.build(in)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.sinks[id] = cachedSink{sink: s, updatedAt: in.UpdatedAt}
	r.mu.Unlock()
	if ok && r.onRebuild != nil {
		r.onRebuild(id)
	}
	return s, nil
}

// Reader returns the sink as a reconcile reader.
func (r *Registry) Reader(ctx context.Context, id string) (hubsync.Reader, error) {
	s, err := r.Sink(ctx, id)
	if err != nil {
		return nil, err
	}
	rd, ok := s.(hubsync.Reader)
	if !ok {
		return nil, fmt.Errorf("integration %s: a %s sink cannot be read back", id, s.Name())
	}
	return rd, nil
}

// Test runs a connection test on a fresh sink and records the health.
func (r *Registry) Test(ctx context.Context, id string) (graph.ConnectionReport, error) {
	in, err := r.st.GetIntegration(ctx, id)
	if err != nil {
		return graph.ConnectionReport{}, err
	}
	if in.Kind != KindGraph {
		return r.testOther(ctx, in)
	}
	s, err := r.build(in)
	if err != nil {
		return graph.ConnectionReport{}, err
	}
	rep := s.TestConnection(ctx)
	// With Application.Read.All the test reads the secret's real expiry
	// from the app registration: keep it, so expiry warnings need no
	// admin input. UpdatedAt stays, so the cached sink is still current.
	if kind, exp := s.CredentialExpiry(); in.CredentialKind == CredentialSecret && kind == "client secret" && !exp.IsZero() &&
		(in.SecretExpiresAt == nil || !in.SecretExpiresAt.Equal(exp)) {
		in.SecretExpiresAt = &exp
		if err := r.st.UpdateIntegration(ctx, in); err != nil {
			r.log.Warn("store secret expiry read from Graph", "integration", id, "err", err)
		}
	}
	msg := strings.Join(rep.Problems, "; ")
	if rep.OK {
		msg = "connection test passed"
	}
	if err := r.st.SetIntegrationHealth(ctx, id, string(rep.Health), msg, r.now()); err != nil {
		return rep, err
	}
	return rep, nil
}

// Warnings are the credential-expiry warnings (30/14/7 days) of an integration.
func Warnings(in store.Integration, now time.Time) []string {
	if in.CredentialKind == CredentialSecret && in.Health == string(graph.HealthSecretExpired) {
		// Entra refused the secret as expired: that beats the date typed at
		// setup, which may be wrong or missing.
		return []string{"Entra says the client secret has expired (AADSTS7000222): writes to Entra fail until a new secret is added and the integration updated"}
	}
	var exp time.Time
	what := "client secret"
	switch {
	case in.CredentialKind == CredentialCertificate && in.CertNotAfter != nil:
		exp, what = *in.CertNotAfter, "certificate"
	case in.CredentialKind == CredentialSecret && in.SecretExpiresAt != nil:
		exp = *in.SecretExpiresAt
	default:
		return nil
	}
	th, ok := graph.ExpiryThreshold(exp, now)
	if !ok {
		return nil
	}
	if th == 0 {
		return []string{fmt.Sprintf("the %s expired on %s: writes to Entra fail until it is replaced", what, exp.UTC().Format(time.DateOnly))}
	}
	// Rounded up like graph.Sink.ExpiryWarning: exactly 7 days left is
	// "7 days", within the 7-day threshold, not 8.
	days := int(math.Ceil(exp.Sub(now).Hours() / 24))
	return []string{fmt.Sprintf("the %s expires within %d days (%s, %d days left): add a new one and update the integration", what, th, exp.UTC().Format(time.DateOnly), days)}
}

// Run records sink health changes seen by live sinks until ctx ends.
func (r *Registry) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.recordHealth(ctx)
		case <-r.kick:
			r.recordHealth(ctx)
		}
	}
}

func (r *Registry) recordHealth(ctx context.Context) {
	r.mu.Lock()
	type upd struct {
		id string
		h  graph.HealthStatus
	}
	var todo []upd
	for id, c := range r.sinks {
		if c.sink == nil {
			continue // non-graph kinds record their own state
		}
		h := c.sink.Health()
		if !h.At.IsZero() && (h.Health != c.reported.Health || h.Message != c.reported.Message) {
			c.reported = h
			r.sinks[id] = c
			todo = append(todo, upd{id, h})
		}
	}
	r.mu.Unlock()
	for _, u := range todo {
		msg := u.h.Message
		if u.h.Code != "" {
			msg = u.h.Code + ": " + msg
		}
		if err := r.st.SetIntegrationHealth(ctx, u.id, string(u.h.Health), msg, u.h.At); err != nil && !errors.Is(err, store.ErrNotFound) {
			r.log.Warn("record integration health", "integration", u.id, "err", err)
		}
	}
}
