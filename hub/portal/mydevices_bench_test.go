package portal

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/compliance"
	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/sqlite"
)

// BenchmarkListMyDevices measures one "Your devices" load for a user with 3
// hosts in a fleet of 5,000 (each with a verdict) on SQLite:
//
//	go test -run XXX -bench ListMyDevices -benchmem ./hub/portal/
//
// "indexed" is ListMyDevices (one query on the user index, verdicts
// joined); "go-filter" is the implementation it replaced, kept here for
// comparison: every host loaded and filtered in Go, then one GetVerdict per
// owned host.
func BenchmarkListMyDevices(b *testing.B) {
	const fleet, user = 5000, "user-7@example.com"
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "hub.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	now := time.Now()
	for i := range fleet {
		h, err := st.EnrollHost(ctx, store.Host{Team: store.DefaultTeam, Hostname: fmt.Sprintf("host-%05d", i),
			Platform: "darwin", HardwareUUID: fmt.Sprintf("hw-%d", i), EnrolledAt: now, LastSeenAt: now})
		if err != nil {
			b.Fatal(err)
		}
		// 3 hosts per user: user-7 owns hosts 7, 1674 and 3341.
		if err := st.SetHostIdentity(ctx, h.ID, fmt.Sprintf("dev-%d", i), fmt.Sprintf("User-%d@example.com", i%1667)); err != nil {
			b.Fatal(err)
		}
		if err := st.SaveVerdict(ctx, store.Verdict{HostID: h.ID, State: "COMPLIANT", Cause: "passing",
			Desired: "compliant", UpdatedAt: now}, 0, nil); err != nil {
			b.Fatal(err)
		}
	}
	signer, err := NewSigner([]byte(strings.Repeat("k", 32)), time.Now)
	if err != nil {
		b.Fatal(err)
	}
	svc := NewService(ServiceConfig{Store: st, Signer: signer})
	tok, _ := signer.Sign(kindSession, user, time.Hour)
	callCtx := metadata.NewIncomingContext(ctx, metadata.Pairs("cookie", (&http.Cookie{Name: SessionCookie, Value: tok}).String()))

	b.Run("indexed", func(b *testing.B) {
		for b.Loop() {
			resp, err := svc.ListMyDevices(callCtx, &posturev1.ListMyDevicesRequest{})
			if err != nil || len(resp.GetDevices()) != 3 {
				b.Fatalf("devices %d, err %v", len(resp.GetDevices()), err)
			}
		}
	})
	b.Run("go-filter", func(b *testing.B) {
		for b.Loop() {
			devs, err := goFilterMyDevices(ctx, st, user)
			if err != nil || len(devs) != 3 {
				b.Fatalf("devices %d, err %v", len(devs), err)
			}
		}
	})
}

// goFilterMyDevices is ListMyDevices as it was before HostsOfUser.
func goFilterMyDevices(ctx context.Context, st *sqlite.Store, user string) ([]*posturev1.PortalDeviceSummary, error) {
	hosts, err := st.ListHosts(ctx, store.HostFilter{})
	if err != nil {
		return nil, err
	}
	var out []*posturev1.PortalDeviceSummary
	for _, h := range hosts {
		if !ownedBy(h, user) {
			continue
		}
		sum := &posturev1.PortalDeviceSummary{DeviceId: h.ID, Hostname: h.Hostname, Platform: h.Platform,
			State: string(compliance.Unknown), LastSeenAt: ts(h.LastSeenAt)}
		if v, err := st.GetVerdict(ctx, h.ID); err == nil {
			sum.State = v.State
		}
		out = append(out, sum)
	}
	return out, nil
}
