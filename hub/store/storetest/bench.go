package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

// BatchSize is the number of results per batch in BenchmarkRecordResults.
const BatchSize = 50

// BenchmarkRecordResults measures RecordResults with batches of BatchSize
// results: "unchanged" (the steady state: statuses repeat, only the latest
// rows move) and "changed" (every status flips: history rows and count
// updates too). open gets a fresh store per sub-benchmark.
func BenchmarkRecordResults(b *testing.B, open func(tb testing.TB) store.Store) {
	for _, mode := range []string{"unchanged", "changed"} {
		b.Run(mode, func(b *testing.B) {
			s := open(b)
			ctx := b.Context()
			var ps []store.Policy
			for i := 0; i < BatchSize; i++ {
				ps = append(ps, pol(fmt.Sprintf("p-%03d", i), fmt.Sprintf("SELECT %d", i)))
			}
			if _, err := s.ApplyPolicies(ctx, store.ApplyRequest{Policies: ps, At: t0}); err != nil {
				b.Fatal(err)
			}
			h, err := s.EnrollHost(ctx, store.Host{Hostname: "bench", HardwareUUID: "bench", EnrolledAt: t0})
			if err != nil {
				b.Fatal(err)
			}
			batch := func(n int) []store.Result {
				st := store.StatusPass
				if mode == "changed" && n%2 == 1 {
					st = store.StatusFail
				}
				rs := make([]store.Result, BatchSize)
				for i := range rs {
					rs[i] = res(ps[i].ID, 1, st, at(time.Duration(n)*time.Second))
				}
				return rs
			}
			if _, err := s.RecordResults(ctx, h.ID, batch(0), t0); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for n := 1; n <= b.N; n++ {
				out, err := s.RecordResults(ctx, h.ID, batch(n), at(time.Duration(n)*time.Second))
				if err != nil {
					b.Fatal(err)
				}
				if out.Updated != BatchSize {
					b.Fatalf("updated %d, want %d", out.Updated, BatchSize)
				}
			}
			b.ReportMetric(float64(b.N*BatchSize)/b.Elapsed().Seconds(), "results/s")
		})
	}
}
