package main

import (
	"testing"

	"go.uber.org/goleak"
)

// Run must stop everything it started when its context ends.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
