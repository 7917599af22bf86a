package agentapi

import (
	"testing"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/store"
)

// An agent's drop counters are held to what the store keeps, and results
// (which include the transitions) are never fewer than transitions.
func TestSpoolDropsBounded(t *testing.T) {
	for _, tc := range []struct {
		inR, inT, wantR, wantT uint64
	}{
		{0, 0, 0, 0},
		{4100, 12, 4100, 12},
		{3, 7, 7, 7},
		{1<<64 - 1, 1, store.MaxSpoolDropped, 1},
		{1, 1<<64 - 1, store.MaxSpoolDropped, store.MaxSpoolDropped},
	} {
		r, tr := spoolDrops(&posturev1.AgentHealth{SpoolDroppedResults: tc.inR, SpoolDroppedTransitions: tc.inT})
		if r != tc.wantR || tr != tc.wantT {
			t.Errorf("spoolDrops(%d, %d) = %d, %d; want %d, %d", tc.inR, tc.inT, r, tr, tc.wantR, tc.wantT)
		}
	}
}
