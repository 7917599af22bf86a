package main

import (
	"testing"

	"go.uber.org/goleak"
)

// These tests run the built binary, but the osqueryd stand-ins, fake hubs and
// process watchers they start live in this process and must all be stopped.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
