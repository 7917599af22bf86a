package integrations

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/secrets"
	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/sqlite"
	hubsync "github.com/posture-dev/posture/hub/sync"
	"github.com/posture-dev/posture/hub/sync/graph/standin"
)

// deviceID is an Entra device id (a GUID, as Graph requires).
const deviceID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"

const plainSecret = "s3cret-Value~with.enough_entropy"

func keyring(t *testing.T, fill byte) *secrets.Keyring {
	t.Helper()
	k, err := secrets.NewKeyring(bytes.Repeat([]byte{fill}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func baseIntegration(id string) store.Integration {
	return store.Integration{ID: id, Name: id, TenantID: "tenant", ClientID: "client", ExtensionAttribute: 5}
}

// certPEM is a self-signed RSA certificate and its key, as an admin would
// upload them.
func certPEM(t *testing.T, notAfter time.Time) ([]byte, *x509.Certificate, []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "posture-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	out := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	return out, cert, keyDER
}

func TestPrepareSealsSecret(t *testing.T) {
	keys := keyring(t, 1)
	r := New(nil, keys, quiet())
	in := baseIntegration("int-1")
	if err := r.Prepare(&in, Credential{ClientSecret: plainSecret}); err != nil {
		t.Fatal(err)
	}
	if in.Kind != KindGraph || in.CredentialKind != CredentialSecret || in.CompliantValue != "Compliant" || in.NoncompliantValue != "Non-compliant" {
		t.Fatalf("prepared %+v", in)
	}
	if len(in.SealedCredential) == 0 || bytes.Contains(in.SealedCredential, []byte(plainSecret)) ||
		bytes.Contains(in.SealedCredential, []byte(base64.StdEncoding.EncodeToString([]byte(plainSecret)))) {
		t.Fatalf("sealed credential %q holds the secret", in.SealedCredential)
	}
	if in.CertNotAfter != nil || in.SealedCertPassword != nil {
		t.Fatalf("secret credential with certificate fields: %+v", in)
	}
	plain, err := keys.Open(string(in.SealedCredential), aad("int-1"))
	if err != nil || string(plain) != plainSecret {
		t.Fatalf("open: %q, %v", plain, err)
	}
	if _, err := keys.Open(string(in.SealedCredential), aad("int-2")); err == nil {
		t.Fatal("credential opened with another integration's associated data")
	}
	// The same through the registry: a sealed credential copied to another
	// integration does not open there.
	copied := in
	copied.ID = "int-2"
	if err := r.Prepare(&copied, Credential{}); err == nil || !strings.Contains(err.Error(), "open credential") {
		t.Fatalf("copied credential: %v", err)
	}
	// Nor with another key.
	other := New(nil, keyring(t, 2), quiet())
	again := in
	if err := other.Prepare(&again, Credential{}); err == nil {
		t.Fatal("credential opened with another key")
	}
}

func TestPrepareRejectsInvalidConfigs(t *testing.T) {
	r := New(nil, keyring(t, 1), quiet())
	pemData, _, _ := certPEM(t, time.Now().Add(90*24*time.Hour))
	for _, tc := range []struct {
		name string
		mod  func(*store.Integration)
		cred Credential
		want string
	}{
		{"secret and certificate", nil, Credential{ClientSecret: plainSecret, Certificate: pemData}, "not both"},
		{"no credential", nil, Credential{}, "client secret or a certificate is required"},
		{"attribute 0", func(in *store.Integration) { in.ExtensionAttribute = 0 }, Credential{ClientSecret: plainSecret}, "1..15"},
		{"attribute 16", func(in *store.Integration) { in.ExtensionAttribute = 16 }, Credential{ClientSecret: plainSecret}, "1..15"},
		// graph names whichever missing URL it checks first (map order).
		{"custom cloud without URLs", func(in *store.Integration) { in.Cloud = "custom" }, Credential{ClientSecret: plainSecret}, "custom cloud needs an https "},
		{"custom cloud without Graph URL", func(in *store.Integration) { in.Cloud, in.AuthorityHost = "custom", "https://login.example.com/" }, Credential{ClientSecret: plainSecret}, "custom cloud needs an https Graph base URL"},
		{"other kind", func(in *store.Integration) { in.Kind = "pigeon" }, Credential{ClientSecret: plainSecret}, `kind "pigeon" is not supported`},
		{"webhook without url", func(in *store.Integration) { in.Kind = "webhook" }, Credential{ClientSecret: plainSecret}, "webhook url"},
		{"webhook to plain http", func(in *store.Integration) {
			in.Kind, in.Settings = "webhook", []byte(`{"url":"http://siem.example.com/x"}`)
		},
			Credential{ClientSecret: plainSecret}, "plain http only to loopback"},
		{"webhook with a certificate", func(in *store.Integration) {
			in.Kind, in.Settings = "webhook", []byte(`{"url":"https://siem.example.com/x"}`)
		},
			Credential{Certificate: []byte("pem")}, "not a certificate"},
		{"webhook unknown setting", func(in *store.Integration) {
			in.Kind, in.Settings = "webhook", []byte(`{"url":"https://siem.example.com/x","urll":"y"}`)
		},
			Credential{ClientSecret: plainSecret}, "unknown field"},
		{"same values", func(in *store.Integration) { in.CompliantValue, in.NoncompliantValue = "x", "x" }, Credential{ClientSecret: plainSecret}, "must differ"},
		{"not a certificate", nil, Credential{Certificate: []byte("not a pem")}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := baseIntegration("int-1")
			if tc.mod != nil {
				tc.mod(&in)
			}
			err := r.Prepare(&in, tc.cred)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
			if len(in.SealedCredential) != 0 {
				t.Fatal("a rejected credential was sealed anyway")
			}
		})
	}
}

func TestPrepareUpdateKeepsOrReplacesCredential(t *testing.T) {
	keys := keyring(t, 1)
	st := openStore(t)
	ctx := context.Background()
	r := New(st, keys, quiet())
	in := baseIntegration("int-1")
	exp := time.Now().Add(60 * 24 * time.Hour).UTC().Truncate(time.Second)
	in.SecretExpiresAt = &exp
	if err := r.Prepare(&in, Credential{ClientSecret: plainSecret}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateIntegration(ctx, in); err != nil {
		t.Fatal(err)
	}

	// An update without a credential keeps the stored one.
	upd, err := st.GetIntegration(ctx, "int-1")
	if err != nil {
		t.Fatal(err)
	}
	upd.ExtensionAttribute = 9
	if err := r.Prepare(&upd, Credential{}); err != nil {
		t.Fatal(err)
	}
	if upd.CredentialKind != CredentialSecret || upd.SecretExpiresAt == nil || !upd.SecretExpiresAt.Equal(exp) {
		t.Fatalf("updated %+v", upd)
	}
	if plain, err := keys.Open(string(upd.SealedCredential), aad("int-1")); err != nil || string(plain) != plainSecret {
		t.Fatalf("kept credential opens to %q, %v", plain, err)
	}

	// A rejected update leaves the stored credential as it was.
	bad := upd
	bad.ExtensionAttribute = 16
	if err := r.Prepare(&bad, Credential{ClientSecret: "another"}); err == nil {
		t.Fatal("attribute 16 accepted")
	}
	if !bytes.Equal(bad.SealedCredential, upd.SealedCredential) || bad.CredentialKind != CredentialSecret {
		t.Fatal("a rejected update changed the credential")
	}

	// Replacing the secret with a certificate records its expiry; the
	// certificate and its key are sealed.
	notAfter := time.Now().Add(20 * 24 * time.Hour).UTC().Truncate(time.Second)
	pemData, _, keyDER := certPEM(t, notAfter)
	if err := r.Prepare(&upd, Credential{Certificate: pemData}); err != nil {
		t.Fatal(err)
	}
	if upd.CredentialKind != CredentialCertificate || upd.CertNotAfter == nil || !upd.CertNotAfter.Equal(notAfter) {
		t.Fatalf("certificate credential: kind %q, not after %v, want %v", upd.CredentialKind, upd.CertNotAfter, notAfter)
	}
	for _, leak := range [][]byte{[]byte("PRIVATE KEY"), []byte(base64.StdEncoding.EncodeToString(keyDER)[:40])} {
		if bytes.Contains(upd.SealedCredential, leak) {
			t.Fatalf("sealed certificate holds %q", leak)
		}
	}
	if err := st.UpdateIntegration(ctx, upd); err != nil {
		t.Fatal(err)
	}

	// A certificate update without a credential keeps the certificate and
	// its expiry.
	again, err := st.GetIntegration(ctx, "int-1")
	if err != nil {
		t.Fatal(err)
	}
	again.Name = "renamed"
	if err := r.Prepare(&again, Credential{}); err != nil {
		t.Fatal(err)
	}
	if again.CredentialKind != CredentialCertificate || again.CertNotAfter == nil || !again.CertNotAfter.Equal(notAfter) {
		t.Fatalf("kept certificate: %+v", again)
	}
	if plain, err := keys.Open(string(again.SealedCredential), aad("int-1")); err != nil || !bytes.Equal(plain, pemData) {
		t.Fatalf("kept certificate does not open to the PEM: %v", err)
	}

	// Back to a secret: the certificate's expiry goes.
	if err := r.Prepare(&again, Credential{ClientSecret: "new-secret"}); err != nil {
		t.Fatal(err)
	}
	if again.CredentialKind != CredentialSecret || again.CertNotAfter != nil {
		t.Fatalf("secret after certificate: %+v", again)
	}
}

func TestSinkCachesPerUpdatedAtAndRebuildsAfterUpdate(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	r := New(st, keyring(t, 1), quiet())
	in := baseIntegration("int-1")
	if err := r.Prepare(&in, Credential{ClientSecret: plainSecret}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateIntegration(ctx, in); err != nil {
		t.Fatal(err)
	}
	s1, err := r.Sink(ctx, "int-1")
	if err != nil {
		t.Fatal(err)
	}
	if s2, err := r.Sink(ctx, "int-1"); err != nil || s2 != s1 {
		t.Fatalf("second Sink: rebuilt (%v)", err)
	}
	if rd, err := r.Reader(ctx, "int-1"); err != nil || rd != s1.(hubsync.Reader) {
		t.Fatalf("Reader is not the cached sink (%v)", err)
	}

	upd, err := st.GetIntegration(ctx, "int-1")
	if err != nil {
		t.Fatal(err)
	}
	upd.ExtensionAttribute = 11
	upd.UpdatedAt = upd.UpdatedAt.Add(time.Second)
	if err := st.UpdateIntegration(ctx, upd); err != nil {
		t.Fatal(err)
	}
	s3, err := r.Sink(ctx, "int-1")
	if err != nil {
		t.Fatal(err)
	}
	if s3 == s1 {
		t.Fatal("sink not rebuilt after an update")
	}
	if s4, err := r.Sink(ctx, "int-1"); err != nil || s4 != s3 {
		t.Fatalf("rebuilt sink not cached (%v)", err)
	}

	if err := st.DeleteIntegration(ctx, "int-1"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"int-1", "never-existed"} {
		if _, err := r.Sink(ctx, id); !errors.Is(err, hubsync.ErrUnknownIntegration) {
			t.Fatalf("Sink(%s) after delete: %v, want ErrUnknownIntegration", id, err)
		}
		if _, err := r.Reader(ctx, id); !errors.Is(err, hubsync.ErrUnknownIntegration) {
			t.Fatalf("Reader(%s) after delete: %v, want ErrUnknownIntegration", id, err)
		}
	}
}

func TestWarnings(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	day := 24 * time.Hour
	cert := func(exp *time.Time) store.Integration {
		return store.Integration{CredentialKind: CredentialCertificate, CertNotAfter: exp}
	}
	secret := func(exp *time.Time) store.Integration {
		return store.Integration{CredentialKind: CredentialSecret, SecretExpiresAt: exp}
	}
	for _, tc := range []struct {
		name string
		in   store.Integration
		want string // "" = no warning
	}{
		{"certificate in 40 days", cert(at(40 * day)), ""},
		{"certificate in 30 days", cert(at(30 * day)), "certificate expires within 30 days (2026-12-23, 30 days left)"},
		{"certificate in 20 days", cert(at(20 * day)), "certificate expires within 30 days"},
		{"certificate in 14 days", cert(at(14 * day)), "certificate expires within 14 days"},
		{"certificate in 8 days", cert(at(8 * day)), "certificate expires within 14 days"},
		{"certificate in 7 days", cert(at(7 * day)), "certificate expires within 7 days"},
		{"certificate in an hour", cert(at(time.Hour)), "certificate expires within 7 days (2026-11-23, 1 days left)"},
		{"certificate expired", cert(at(-day)), "certificate expired on 2026-11-22"},
		{"certificate expiring now", cert(at(0)), "certificate expired on 2026-11-23"},
		{"secret in 10 days", secret(at(10 * day)), "client secret expires within 14 days"},
		{"secret expired", secret(at(-time.Minute)), "client secret expired on 2026-11-23"},
		{"secret in 31 days", secret(at(31 * day)), ""},
		{"secret expiry unknown", secret(nil), ""},
		{"certificate expiry unknown", cert(nil), ""},
		// A stale certificate expiry on a secret integration is not the
		// secret's.
		{"secret with old certificate expiry", store.Integration{CredentialKind: CredentialSecret, CertNotAfter: at(-day)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Warnings(tc.in, now)
			if tc.want == "" {
				if len(got) != 0 {
					t.Fatalf("warnings %q, want none", got)
				}
				return
			}
			if len(got) != 1 || !strings.Contains(got[0], tc.want) {
				t.Fatalf("warnings %q, want one saying %q", got, tc.want)
			}
		})
	}
}

func TestTestRecordsHealth(t *testing.T) {
	pair, err := standin.Start(standin.Options{Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pair.Close)
	pair.Entra.RegisterApp(standin.App{ClientID: "app-1", Secrets: []standin.Secret{{Value: plainSecret}}, Permissions: []string{"Device.ReadWrite.All"}})
	pair.Graph.AddDevice(standin.Device{ID: "obj-1", DeviceID: deviceID, DisplayName: "mac", OperatingSystem: "MacMDM"})

	st := openStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := New(st, keyring(t, 1), quiet())
	checkedAt := time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return checkedAt }
	create := func(id, secret string) {
		t.Helper()
		in := store.Integration{ID: id, Name: id, Cloud: "custom", AuthorityHost: pair.Entra.URL(), GraphBaseURL: pair.Graph.URL(),
			ExtraCAPEM: string(pair.CA.CertPEM()), TenantID: pair.Entra.Tenant(), ClientID: "app-1", ExtensionAttribute: 4}
		if err := r.Prepare(&in, Credential{ClientSecret: secret}); err != nil {
			t.Fatal(err)
		}
		if err := st.CreateIntegration(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	create("good", plainSecret)
	create("wrong", "not-the-secret")

	rep, err := r.Test(ctx, "good")
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Health != "ok" || !rep.TokenOK || !rep.ReadOK || rep.SampleDeviceID != deviceID {
		t.Fatalf("report %+v", rep)
	}
	got, err := st.GetIntegration(ctx, "good")
	if err != nil {
		t.Fatal(err)
	}
	if got.Health != "ok" || got.HealthMessage != "connection test passed" || got.HealthCheckedAt == nil || !got.HealthCheckedAt.Equal(checkedAt) {
		t.Fatalf("recorded health %q %q at %v", got.Health, got.HealthMessage, got.HealthCheckedAt)
	}

	rep, err = r.Test(ctx, "wrong")
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.Health != "secret_invalid" || rep.TokenOK {
		t.Fatalf("wrong secret: report %+v", rep)
	}
	got, err = st.GetIntegration(ctx, "wrong")
	if err != nil {
		t.Fatal(err)
	}
	if got.Health != "secret_invalid" || !strings.Contains(got.HealthMessage, "AADSTS7000215") {
		t.Fatalf("wrong secret: recorded health %q %q", got.Health, got.HealthMessage)
	}
	if strings.Contains(got.HealthMessage, "not-the-secret") {
		t.Fatal("the health message repeats the secret")
	}

	if _, err := r.Test(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Test of a missing integration: %v", err)
	}
}

func TestRunRecordsHealthSeenByLiveSinks(t *testing.T) {
	pair, err := standin.Start(standin.Options{Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pair.Close)
	pair.Entra.RegisterApp(standin.App{ClientID: "app-1", Secrets: []standin.Secret{{Value: plainSecret}}, Permissions: []string{"Device.ReadWrite.All"}})
	pair.Graph.AddDevice(standin.Device{ID: "obj-1", DeviceID: deviceID, DisplayName: "mac", OperatingSystem: "MacMDM"})

	st := openStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := New(st, keyring(t, 1), quiet())
	in := store.Integration{ID: "wrong", Name: "wrong", Cloud: "custom", AuthorityHost: pair.Entra.URL(), GraphBaseURL: pair.Graph.URL(),
		ExtraCAPEM: string(pair.CA.CertPEM()), TenantID: pair.Entra.Tenant(), ClientID: "app-1", ExtensionAttribute: 4}
	if err := r.Prepare(&in, Credential{ClientSecret: "not-the-secret"}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateIntegration(ctx, in); err != nil {
		t.Fatal(err)
	}
	s, err := r.Sink(ctx, "wrong")
	if err != nil {
		t.Fatal(err)
	}
	out := s.Apply(ctx, []hubsync.Change{{IntegrationID: "wrong", TenantID: in.TenantID, DeviceID: deviceID, HostID: "h1",
		Desired: "noncompliant", Verdict: "NONCOMPLIANT", CreatedAt: time.Now()}})
	if len(out) != 1 || out[0].Kind == hubsync.OutcomeOK {
		t.Fatalf("apply with a wrong secret: %+v", out)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { r.Run(runCtx, 5*time.Millisecond); close(done) }()
	defer func() { stop(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := st.GetIntegration(ctx, "wrong")
		if err != nil {
			t.Fatal(err)
		}
		if got.Health == "secret_invalid" {
			if !strings.Contains(got.HealthMessage, "AADSTS7000215") || got.HealthCheckedAt == nil {
				t.Fatalf("recorded %q %q at %v", got.Health, got.HealthMessage, got.HealthCheckedAt)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health never recorded (now %q %q)", got.Health, got.HealthMessage)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// With Application.Read.All, a connection test reads the secret's real
// expiry from the app registration and stores it, so warnings need no input.
func TestTestStoresSecretExpiryReadFromGraph(t *testing.T) {
	pair, err := standin.Start(standin.Options{Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pair.Close)
	expires := time.Now().Add(10 * 24 * time.Hour).UTC().Truncate(time.Second)
	pair.Entra.RegisterApp(standin.App{ClientID: "app-2", Secrets: []standin.Secret{{Value: plainSecret, Expires: expires}},
		Permissions: []string{standin.PermDeviceReadWriteAll, standin.PermApplicationReadAll}})
	st := openStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := New(st, keyring(t, 1), quiet())
	in := store.Integration{ID: "exp", Name: "exp", Cloud: "custom", AuthorityHost: pair.Entra.URL(), GraphBaseURL: pair.Graph.URL(),
		ExtraCAPEM: string(pair.CA.CertPEM()), TenantID: pair.Entra.Tenant(), ClientID: "app-2", ExtensionAttribute: 4}
	if err := r.Prepare(&in, Credential{ClientSecret: plainSecret}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateIntegration(ctx, in); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Test(ctx, "exp"); err != nil {
		t.Fatal(err)
	}
	got, err := st.GetIntegration(ctx, "exp")
	if err != nil {
		t.Fatal(err)
	}
	if got.SecretExpiresAt == nil || !got.SecretExpiresAt.Equal(expires) {
		t.Fatalf("stored secret expiry %v, want %v", got.SecretExpiresAt, expires)
	}
	if w := Warnings(got, time.Now()); len(w) != 1 || !strings.Contains(w[0], "within 14 days") {
		t.Fatalf("warnings %v", w)
	}
}

func TestWebhookKind(t *testing.T) {
	st := openStore(t)
	r := New(st, keyring(t, 7), quiet())
	in := store.Integration{ID: "wh", Name: "siem", Kind: KindWebhook, TenantID: "stale", ExtensionAttribute: 9,
		Settings: []byte(`{"url":"https://siem.example.com/posture"}`)}
	if err := r.Prepare(&in, Credential{ClientSecret: plainSecret}); err != nil {
		t.Fatal(err)
	}
	if in.TenantID != "" || in.CredentialKind != CredentialSecret || bytes.Contains(in.SealedCredential, []byte(plainSecret)) {
		t.Fatalf("prepared: %+v", in)
	}
	if err := st.CreateIntegration(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	s, err := r.Sink(context.Background(), "wh")
	if err != nil || s.Name() != "webhook" {
		t.Fatalf("sink %v %v", s, err)
	}
	if _, err := r.Reader(context.Background(), "wh"); err == nil {
		t.Fatal("a webhook sink offered itself as a reconcile reader")
	}
	// Another key cannot open the secret (sealed, bound to the row).
	if _, err := New(st, keyring(t, 8), quiet()).Sink(context.Background(), "wh"); err == nil {
		t.Fatal("opened with the wrong key")
	}
}
