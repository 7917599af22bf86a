package hublink

import (
	"math/rand/v2"
	"time"

	"github.com/posture-dev/posture/extension/clock"
)

// Backoff is exponential backoff with full jitter: the n-th wait is uniform
// in [0, min(Max, Base·2^n)], so a fleet that lost its hub at once does not
// come back at once.
//
// With a Clock and an OutageFraction, the ceiling is also held to that
// fraction of how long the link has been down (never below Base): after a
// 10 s outage the next attempt is at most 2.5 s away (fraction 0.25), while
// a hub that is down for hours is still asked only every Max.
type Backoff struct {
	Base time.Duration
	Max  time.Duration
	Rand *rand.Rand
	// Clock and OutageFraction bound waits by the outage length (optional).
	Clock          clock.Clock
	OutageFraction float64
	n              int
	downSince      time.Time
}

// Next returns the next wait and advances the exponent.
func (b *Backoff) Next() time.Duration {
	ceil := b.Max
	if b.n < 62 && b.Base<<b.n > 0 && b.Base<<b.n < b.Max {
		ceil = b.Base << b.n
	}
	if b.Clock != nil && b.OutageFraction > 0 {
		now := b.Clock.Now()
		if b.n == 0 || b.downSince.IsZero() {
			b.downSince = now
		}
		bound := max(b.Base, time.Duration(b.OutageFraction*float64(now.Sub(b.downSince))))
		ceil = min(ceil, bound)
	}
	b.n++
	r := b.Rand
	if r == nil {
		return time.Duration(rand.Int64N(int64(ceil) + 1))
	}
	return time.Duration(r.Int64N(int64(ceil) + 1))
}

// Reset starts over after a healthy connection.
func (b *Backoff) Reset() { b.n = 0; b.downSince = time.Time{} }
