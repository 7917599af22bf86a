package osquerytest

import (
	"testing"

	"go.uber.org/goleak"
)

// The stand-in serves every extension test: a goroutine it leaks per
// connection or per restart would show up as a leak in every one of them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
