package cli

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/sync/graph/standin"
)

func TestCLIIntegrationsAndSync(t *testing.T) {
	c := startCLIHub(t)
	pair, err := standin.Start(standin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pair.Close)
	pair.Entra.RegisterApp(standin.App{ClientID: cliClientID, Secrets: []standin.Secret{{Value: cliSecret}}, Permissions: []string{"Device.ReadWrite.All"}})
	const device = "0b6f2c1e-8a55-4c1f-9f3e-6d2a7c9e1b42"
	pair.Graph.AddDevice(standin.Device{ID: "obj-1", DeviceID: device, DisplayName: "mac-1", OperatingSystem: "MacMDM"})

	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("standin-ca.pem", string(pair.CA.CertPEM()))
	secretFile := write("secret", cliSecret+"\n")
	wrongFile := write("wrong", "not-the-secret\n")
	base := []string{"--cloud", "custom", "--authority-host", pair.Entra.URL(), "--graph-base-url", pair.Graph.URL(),
		"--extra-ca-file", caFile, "--tenant-id", pair.Entra.Tenant(), "--client-id", cliClientID, "--attribute", "10"}
	create := func(args ...string) []string {
		return append(append([]string{"integrations", "create"}, base...), args...)
	}

	// Refused: the secret as a plain flag, no credential, a bad attribute.
	if code, _, errs := c.run(t, create("--name", "x", "--client-secret", cliSecret)...); code != 2 || !strings.Contains(errs, "flag provided but not defined: -client-secret") {
		t.Fatalf("--client-secret: exit %d %q", code, errs)
	}
	if errs := c.fails(t, create("--name", "x")...); !strings.Contains(errs, "a credential is required") {
		t.Fatalf("no credential: %q", errs)
	}
	if errs := c.fails(t, create("--name", "x", "--client-secret-file", secretFile, "--attribute", "16")...); !strings.Contains(errs, "want 1..15") {
		t.Fatalf("attribute 16: %q", errs)
	}
	if errs := c.fails(t, create("--name", "x", "--client-secret-file", secretFile, "--cloud", "mars")...); !strings.Contains(errs, "--cloud") {
		t.Fatalf("bad cloud: %q", errs)
	}

	out := c.ok(t, create("--name", "entra", "--client-secret-file", secretFile, "--teams", "default, ops", "--secret-expires", time.Now().AddDate(0, 0, 10).Format(time.DateOnly))...)
	if !strings.Contains(out, "credential") || !strings.Contains(out, "secret, expires") || !strings.Contains(out, `extensionAttribute10 = "Compliant" / "Non-compliant"`) {
		t.Fatalf("create output:\n%s", out)
	}
	var all posturev1.ListIntegrationsResponse
	c.jsonOut(t, &all, "integrations", "list")
	if len(all.GetIntegrations()) != 1 {
		t.Fatalf("integrations: %v", all.GetIntegrations())
	}
	in := all.GetIntegrations()[0]
	if in.GetCredentialKind() != "secret" || in.GetTenantId() != pair.Entra.Tenant() || strings.Join(in.GetTeams(), ",") != "default,ops" ||
		in.GetExtensionAttribute() != 10 || len(in.GetWarnings()) != 1 {
		t.Fatalf("integration: %v", in)
	}
	id := in.GetId()
	for _, args := range [][]string{{"integrations", "list"}, {"integrations", "list", "--json"}, {"integrations", "get", id}, {"integrations", "get", id, "--json"}} {
		if out := c.ok(t, args...); strings.Contains(out, cliSecret) {
			t.Fatalf("%v shows the secret:\n%s", args, out)
		}
	}
	table := c.ok(t, "integrations", "list")
	if !strings.Contains(table, id) || !strings.Contains(table, "secret") || !strings.Contains(table, "unchecked") {
		t.Fatalf("integrations list:\n%s", table)
	}

	out = c.ok(t, "integrations", "test", id)
	if !regexp.MustCompile(`(?m)^ok\s+true$`).MatchString(out) || !regexp.MustCompile(`(?m)^device read\s+ok$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^User.RevokeSessions.All\s+not granted`).MatchString(out) {
		t.Fatalf("test output:\n%s", out)
	}
	if get := c.ok(t, "integrations", "get", id); !strings.Contains(get, "health          ok (checked") {
		t.Fatalf("health after test:\n%s", get)
	}

	// Update one setting: the rest, and the sealed credential, stay.
	c.ok(t, "integrations", "update", id, "--compliant-value", "OK")
	var got posturev1.Integration
	c.jsonOut(t, &got, "integrations", "get", id)
	if got.GetCompliantValue() != "OK" || got.GetNoncompliantValue() != "Non-compliant" || got.GetClientId() != cliClientID ||
		got.GetCloud() != "custom" || got.GetExtraCaPem() == "" || len(got.GetTeams()) != 2 || got.GetSecretExpiresAt() == nil {
		t.Fatalf("after update: %v", &got)
	}
	var tr posturev1.TestIntegrationResponse
	c.jsonOut(t, &tr, "integrations", "test", id)
	if !tr.GetOk() {
		t.Fatalf("test after update: %v", &tr)
	}

	// A wrong secret: test says so and exits 1; the env variable is read
	// when no file is given.
	t.Setenv(envClientSecret, "also-wrong")
	out = c.ok(t, create("--name", "from-env")...)
	os.Unsetenv(envClientSecret)
	envID := strings.Fields(strings.Split(out, "\n")[0])[1]
	if errs := c.fails(t, "integrations", "test", envID); !strings.Contains(errs, "connection test failed") {
		t.Fatalf("secret from %s not used: %q", envClientSecret, errs)
	}
	out = c.ok(t, create("--name", "wrong", "--client-secret-file", wrongFile)...)
	wrongID := strings.Fields(strings.Split(out, "\n")[0])[1]
	code, out, errs := c.run(t, "integrations", "test", wrongID)
	if code != 1 || !strings.Contains(out, "secret_invalid") || !strings.Contains(out, "token        failed") || !strings.Contains(errs, "connection test failed") {
		t.Fatalf("test with a wrong secret: exit %d\n%s\n%s", code, out, errs)
	}
	// Replacing the credential fixes it.
	c.ok(t, "integrations", "update", wrongID, "--client-secret-file", secretFile)
	c.ok(t, "integrations", "test", wrongID)
	c.ok(t, "integrations", "delete", wrongID)
	// Failing credentials pause their whole tenant in the sync worker; only
	// the working integration stays for the sync part.
	c.ok(t, "integrations", "delete", envID)
	if errs := c.fails(t, "integrations", "get", wrongID); !strings.Contains(errs, "NotFound") {
		t.Fatalf("get after delete: %q", errs)
	}

	// Sync: a mapped host is written once; the outbox shows it done.
	c.enrollHost(t, "host-1", "mac-1")
	c.ok(t, "hosts", "set-entra-id", "host-1", device)
	var items posturev1.ListSyncItemsResponse
	deadline := time.Now().Add(30 * time.Second)
	for {
		c.jsonOut(t, &items, "sync", "list", "--state", "done", "--integration", id)
		if len(items.GetItems()) > 0 {
			break
		}
		if time.Now().After(deadline) {
			pending := c.ok(t, "sync", "list")
			t.Fatalf("no sync item done; pending/dead:\n%s", pending)
		}
	}
	it := items.GetItems()[0]
	if it.GetDeviceId() != device || it.GetHostId() != "host-1" || it.GetState() != "done" {
		t.Fatalf("sync item: %v", it)
	}
	want := map[string]string{"compliant": "OK", "noncompliant": "Non-compliant"}[it.GetDesired()]
	if v, _ := pair.Graph.Attribute(device, 10); want == "" || v != want {
		t.Fatalf("Graph attribute after syncing %q: %q", it.GetDesired(), v)
	}
	table = c.ok(t, "sync", "list", "--state", "done", "--limit", "5")
	if !strings.HasPrefix(table, "ID") || !strings.Contains(table, device) {
		t.Fatalf("sync list:\n%s", table)
	}
	if errs := c.fails(t, "sync", "list", "--state", "stuck"); !strings.Contains(errs, "want pending, dead or done") {
		t.Fatalf("bad state: %q", errs)
	}
	if errs := c.fails(t, "sync", "retry", "abc"); !strings.Contains(errs, "positive number") {
		t.Fatalf("bad id: %q", errs)
	}
	if errs := c.fails(t, "sync", "retry", "999999"); !strings.Contains(errs, "NotFound") {
		t.Fatalf("retry unknown item: %q", errs)
	}
	if out := c.ok(t, "integrations", "resume", id); !strings.Contains(out, "resumed: 0 held-back writes") {
		t.Fatalf("resume: %q", out)
	}
	if errs := c.fails(t, "integrations", "resume", "nope"); !strings.Contains(errs, "NotFound") {
		t.Fatalf("resume unknown integration: %q", errs)
	}
}

// appCert makes an app registration's certificate: a PEM file with the
// certificate and its key, as the CLI reads it.
func appCert(t *testing.T, notAfter time.Time) (*x509.Certificate, []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "posture-cli-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature}
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
	pemBytes := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	return cert, pemBytes
}

func TestCLIIntegrationCertificate(t *testing.T) {
	c := startCLIHub(t)
	pair, err := standin.Start(standin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pair.Close)
	notAfter := time.Now().Add(20 * 24 * time.Hour).Truncate(time.Second)
	cert, pemBytes := appCert(t, notAfter)
	pair.Entra.RegisterApp(standin.App{ClientID: cliClientID, Certificates: []*x509.Certificate{cert}, Permissions: []string{"Device.ReadWrite.All"}})
	pair.Graph.AddDevice(standin.Device{ID: "obj-1", DeviceID: "0b6f2c1e-8a55-4c1f-9f3e-6d2a7c9e1b42", DisplayName: "mac-1"})

	dir := t.TempDir()
	caFile, certFile, pwFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "app.pem"), filepath.Join(dir, "pw")
	for p, b := range map[string][]byte{caFile: pair.CA.CertPEM(), certFile: pemBytes, pwFile: []byte("pw\n")} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"integrations", "create", "--name", "entra-cert", "--cloud", "custom", "--authority-host", pair.Entra.URL(),
		"--graph-base-url", pair.Graph.URL(), "--extra-ca-file", caFile, "--tenant-id", pair.Entra.Tenant(),
		"--client-id", cliClientID, "--attribute", "3"}

	if errs := c.fails(t, append(args, "--certificate-password-file", pwFile)...); !strings.Contains(errs, "needs --certificate-file") {
		t.Fatalf("password without certificate: %q", errs)
	}
	t.Setenv(envClientSecret, "a-secret")
	if errs := c.fails(t, append(args, "--certificate-file", certFile)...); !strings.Contains(errs, "not both") {
		t.Fatalf("secret and certificate: %q", errs)
	}
	os.Unsetenv(envClientSecret)

	var in posturev1.Integration
	c.jsonOut(t, &in, append(args, "--certificate-file", certFile)...)
	if in.GetCredentialKind() != "certificate" || !in.GetCertificateNotAfter().AsTime().Equal(notAfter) || len(in.GetCertificate()) != 0 || len(in.GetWarnings()) != 1 {
		t.Fatalf("integration with a certificate: %v", &in)
	}
	if out := c.ok(t, "integrations", "get", in.GetId()); !strings.Contains(out, "certificate, valid until "+fmtTime(in.GetCertificateNotAfter())) || strings.Contains(out, "PRIVATE KEY") {
		t.Fatalf("integrations get:\n%s", out)
	}
	var tr posturev1.TestIntegrationResponse
	c.jsonOut(t, &tr, "integrations", "test", in.GetId())
	if !tr.GetOk() || !tr.GetTokenOk() || !tr.GetDeviceReadOk() {
		t.Fatalf("test with a certificate: %v", &tr)
	}
}
