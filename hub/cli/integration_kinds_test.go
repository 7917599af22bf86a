package cli

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/sync/graph/standin"
	intunestandin "github.com/posture-dev/posture/hub/sync/intune/standin"
)

func TestCLIPartnerAndWebhookKinds(t *testing.T) {
	c := startCLIHub(t)
	pair, err := standin.Start(standin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pair.Close)
	pair.Entra.RegisterApp(standin.App{ClientID: cliClientID, Secrets: []standin.Secret{{Value: cliSecret}}})
	itn, err := intunestandin.New(pair.CA, pair.Entra, intunestandin.Options{PartnerClientID: cliClientID})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(itn.Close)
	itn.AddGroup("12345678-1234-1234-1234-123456789012", "Posture devices")
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.pem", string(pair.CA.CertPEM()))
	secretFile := write("secret", cliSecret+"\n")

	if errs := c.fails(t, "integrations", "create", "--name", "x", "--kind", "pigeon", "--client-secret-file", secretFile); !strings.Contains(errs, "--kind") {
		t.Fatalf("bad kind: %q", errs)
	}
	var in posturev1.Integration
	c.jsonOut(t, &in, "integrations", "create", "--name", "intune", "--kind", "intune-partner", "--cloud", "custom",
		"--authority-host", pair.Entra.URL(), "--graph-base-url", itn.GraphBaseURL(), "--extra-ca-file", caFile,
		"--tenant-id", pair.Entra.Tenant(), "--client-id", cliClientID, "--client-secret-file", secretFile,
		"--portal-url", "https://posture.example.com", "--platforms", "macos,ios", "--partner-group", "Posture devices")
	if in.GetKind() != "intune-partner" || strings.Join(in.GetPartnerPlatforms(), ",") != "ios,macos" || in.GetPartnerGroup() != "Posture devices" {
		t.Fatalf("created %v", &in)
	}
	// The connection test activates the tenant and creates the policies.
	c.ok(t, "integrations", "test", in.GetId())
	out := c.ok(t, "integrations", "get", in.GetId())
	for _, want := range []string{"activation", "activated", "policy macos", "assigned", "policy ios", "platform_not_registered", "last heartbeat"} {
		if !strings.Contains(out, want) {
			t.Fatalf("get lacks %q:\n%s", want, out)
		}
	}
	if errs := c.fails(t, "integrations", "update", in.GetId(), "--kind", "webhook"); !strings.Contains(errs, "cannot change") {
		t.Fatalf("kind change: %q", errs)
	}
	out = c.ok(t, "integrations", "deprovision", in.GetId())
	if !strings.Contains(out, "deprovisioned") {
		t.Fatalf("deprovision:\n%s", out)
	}
	if prov, _, _ := itn.Provisioned(); prov != 2 {
		t.Fatalf("provisioned %d", prov)
	}

	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(hook.Close)
	hookSecret := write("hook", "a-webhook-signing-secret\n")
	if errs := c.fails(t, "integrations", "create", "--name", "siem", "--kind", "webhook", "--client-secret-file", hookSecret); !strings.Contains(errs, "--webhook-url") {
		t.Fatalf("webhook without url: %q", errs)
	}
	out = c.ok(t, "integrations", "create", "--name", "siem", "--kind", "webhook", "--webhook-url", hook.URL, "--client-secret-file", hookSecret)
	if !strings.Contains(out, "webhook url") || strings.Contains(out, "extensionAttribute") || strings.Contains(out, "a-webhook-signing-secret") {
		t.Fatalf("webhook create:\n%s", out)
	}
}
