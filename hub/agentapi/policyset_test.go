package agentapi

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/sqlite"
)

// The host's posture_results table shows each policy's name, which only
// the policy set carries to the agent.
func TestPolicySetCarriesPolicyNames(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ps.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.ApplyPolicies(ctx, store.ApplyRequest{At: time.Now(), Policies: []store.Policy{
		{ID: "disk", Name: "Disk encrypted", Query: "SELECT 1", Severity: "high"},
		{ID: "fw", Name: "Firewall on", Query: "SELECT 2", Severity: "low", Platforms: []string{"windows"}},
	}}); err != nil {
		t.Fatal(err)
	}
	srv := New(Config{Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), PolicyInterval: time.Minute})
	ps, err := srv.PolicySetFor(ctx, store.Host{Team: store.DefaultTeam, Platform: "darwin"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps.GetPolicies()) != 1 {
		t.Fatalf("policies = %v, want only disk on darwin", ps.GetPolicies())
	}
	if p := ps.GetPolicies()[0]; p.GetId() != "disk" || p.GetName() != "Disk encrypted" || p.GetQuery() != "SELECT 1" {
		t.Errorf("policy = %v", p)
	}
}
