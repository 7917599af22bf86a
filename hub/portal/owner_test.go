package portal

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/sqlite"
)

// An admin's user principal name override decides whose device it is in the
// portal: the reported user loses it, the admin's pick gets it.
func TestListMyDevicesFollowsUPNOverride(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Now()
	const id = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
	if _, err := st.EnrollHost(ctx, store.Host{ID: id, Team: store.DefaultTeam, Hostname: "mac-1", EnrolledAt: now, LastSeenAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetHostIdentity(ctx, id, "", "shared.kiosk@example.com"); err != nil {
		t.Fatal(err)
	}
	signer, err := NewSigner([]byte(strings.Repeat("k", 32)), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	svc := NewService(ServiceConfig{Store: st, Signer: signer})
	mine := func(user string) []string {
		t.Helper()
		tok, _ := signer.Sign(kindSession, user, time.Hour)
		c := (&http.Cookie{Name: SessionCookie, Value: tok}).String()
		resp, err := svc.ListMyDevices(metadata.NewIncomingContext(ctx, metadata.Pairs("cookie", c)), &posturev1.ListMyDevicesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, d := range resp.GetDevices() {
			ids = append(ids, d.GetDeviceId())
		}
		return ids
	}
	if got := mine("shared.kiosk@example.com"); len(got) != 1 {
		t.Fatalf("reported user's devices before the override: %v", got)
	}
	if err := st.SetHostUPNOverride(ctx, id, "Ada@Example.com"); err != nil {
		t.Fatal(err)
	}
	if got := mine("shared.kiosk@example.com"); len(got) != 0 {
		t.Fatalf("the reported user still sees the device after the admin's override: %v", got)
	}
	if got := mine("ada@example.com"); len(got) != 1 || got[0] != id {
		t.Fatalf("the admin's user does not see the device: %v", got)
	}
}
