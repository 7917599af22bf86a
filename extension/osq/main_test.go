package osq_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test must leave no goroutine behind: a reconnecting client that
// leaks one per transport error would grow without bound on a host.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
