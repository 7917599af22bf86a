package hublink

import (
	"math/rand/v2"
	"time"
)

// Backoff is exponential backoff with full jitter: the n-th wait is uniform
// in [0, min(Max, Base·2^n)], so a fleet that lost its hub at once does not
// come back at once.
type Backoff struct {
	Base time.Duration
	Max  time.Duration
	Rand *rand.Rand
	n    int
}

// Next returns the next wait and advances the exponent.
func (b *Backoff) Next() time.Duration {
	ceil := b.Max
	if b.n < 62 && b.Base<<b.n > 0 && b.Base<<b.n < b.Max {
		ceil = b.Base << b.n
	}
	b.n++
	r := b.Rand
	if r == nil {
		return time.Duration(rand.Int64N(int64(ceil) + 1))
	}
	return time.Duration(r.Int64N(int64(ceil) + 1))
}

// Reset starts over after a healthy connection.
func (b *Backoff) Reset() { b.n = 0 }
