package spool

import (
	"testing"

	"go.uber.org/goleak"
)

// The spool starts no goroutines; keep it that way.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
