package compliance

import (
	"fmt"
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

// BenchmarkEvaluate: one host with 50 conditional-access policies, a few
// failing, in grace or exempt.
func BenchmarkEvaluate(b *testing.B) {
	in := baseInput()
	for i := range 50 {
		p := pol(fmt.Sprintf("p%02d", i), []string{"low", "medium", "high", "critical"}[i%4], grace(time.Duration(i%3)*time.Hour))
		in.Policies = append(in.Policies, p)
		status := store.StatusPass
		if i%7 == 0 {
			status = store.StatusFail
		}
		in.Results = append(in.Results, res(p.ID, status, t0.Add(-time.Duration(i)*time.Minute)))
	}
	in.Exemptions = []Exemption{{PolicyID: "p07", ExpiresAt: t0.Add(time.Hour)}}
	in.Settings.MaxAllowedSeverity = "low"
	b.ReportAllocs()
	for b.Loop() {
		_ = Evaluate(in)
	}
}
