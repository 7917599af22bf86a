package sync_test

import (
	"testing"

	hubsync "github.com/posture-dev/posture/hub/sync"
	"github.com/posture-dev/posture/hub/sync/outboxtest"
)

func TestMemOutboxConformance(t *testing.T) {
	outboxtest.Run(t, func(*testing.T) outboxtest.Backend { return hubsync.NewMemOutbox() })
}
