package compliance

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

func randomInput(r *rand.Rand) Input {
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	dur := func(max time.Duration) time.Duration { return time.Duration(r.Int64N(int64(max))) }
	in := Input{Now: t0}
	in.Host = store.Host{ID: "h1", Team: "default", Platform: pick("darwin", "linux")}
	if r.IntN(8) > 0 {
		in.Host.LastSeenAt = t0.Add(-dur(30 * time.Hour))
	}
	if r.IntN(20) == 0 {
		at := t0.Add(-time.Hour)
		in.Host.RevokedAt = &at
	}
	in.Settings = store.TeamSettings{
		ConditionalAccess:  r.IntN(10) > 0,
		MaxAllowedSeverity: pick("", "", "low", "medium", "high"),
		ErrorsAsFailures:   r.IntN(2) == 0,
		StaleAfter:         []time.Duration{0, time.Hour, 48 * time.Hour}[r.IntN(3)],
	}
	n := r.IntN(5)
	for i := range n {
		p := store.Policy{
			ID:                fmt.Sprintf("p%d", i),
			Severity:          pick("low", "medium", "high", "critical"),
			ConditionalAccess: r.IntN(5) > 0,
			GracePeriod:       []time.Duration{0, time.Hour, 30 * time.Hour}[r.IntN(3)],
			Revision:          1,
		}
		if r.IntN(5) == 0 {
			p.Revision = 2 // results below are of revision 1: missing
		}
		if r.IntN(6) == 0 {
			p.Platforms = []string{"darwin"}
		}
		in.Policies = append(in.Policies, p)
		if r.IntN(6) > 0 {
			in.Results = append(in.Results, store.Result{HostID: "h1", PolicyID: p.ID, Revision: 1,
				Status:      pick(store.StatusPass, store.StatusFail, store.StatusFail, store.StatusError),
				EvaluatedAt: t0.Add(-time.Minute), StatusSince: t0.Add(-dur(40 * time.Hour))})
		}
	}
	for range r.IntN(3) {
		e := Exemption{PolicyID: pick("", "p0", "p1", "p2")}
		if r.IntN(4) > 0 {
			e.ExpiresAt = t0.Add(dur(41*time.Hour) - time.Hour)
		}
		in.Exemptions = append(in.Exemptions, e)
	}
	return in
}

// NextTransition must be exact: nothing changes before it, something
// changes at it, and with no NextTransition nothing changes for years.
func TestNextTransitionIsExact(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	same := func(a, b Verdict) bool {
		return a.State == b.State && a.Cause == b.Cause && reflect.DeepEqual(a.Reasons, b.Reasons)
	}
	at := func(in Input, now time.Time) Verdict {
		in.Now = now
		return Evaluate(in)
	}
	transitions := 0
	for i := range 5000 {
		in := randomInput(r)
		v := Evaluate(in)
		if v.NextTransition.IsZero() {
			if later := at(in, t0.Add(10*365*24*time.Hour)); !same(v, later) {
				t.Fatalf("case %d: no transition announced, but %s/%s became %s/%s", i, v.State, v.Cause, later.State, later.Cause)
			}
			continue
		}
		transitions++
		if !v.NextTransition.After(t0) {
			t.Fatalf("case %d: transition %v not in the future", i, v.NextTransition)
		}
		if before := at(in, v.NextTransition.Add(-time.Nanosecond)); !same(v, before) {
			t.Fatalf("case %d: verdict changed before the announced transition:\n%+v\n%+v", i, v, before)
		}
		if after := at(in, v.NextTransition); same(v, after) {
			t.Fatalf("case %d: nothing changed at the announced transition %v: %+v", i, v.NextTransition, v)
		}
	}
	if transitions < 1000 {
		t.Fatalf("only %d inputs had a transition: generator too narrow", transitions)
	}
}
