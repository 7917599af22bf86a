package statedir

import (
	"testing"

	"go.uber.org/goleak"
)

// No test may leave a goroutine behind: on a host the extension runs for
// months, and a goroutine leaked per reconnect, run or query adds up.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
