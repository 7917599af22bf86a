package postgres

import (
	"context"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

// GetHostReporting returns how the host reports (cadence, health, stream).
func (s *Store) GetHostReporting(ctx context.Context, hostID string) (store.HostReporting, error) {
	return s.shared().GetHostReporting(ctx, hostID)
}

// ListHostReporting returns every host's reporting that has a row.
func (s *Store) ListHostReporting(ctx context.Context) (map[string]store.HostReporting, error) {
	return s.shared().ListHostReporting(ctx)
}

// SetHostReportInterval records the policy interval sent to the host.
func (s *Store) SetHostReportInterval(ctx context.Context, hostID string, d time.Duration) error {
	return s.shared().SetHostReportInterval(ctx, hostID, d)
}

// SetHostHealth stores what the agent said about itself.
func (s *Store) SetHostHealth(ctx context.Context, hostID string, h store.HostHealth) error {
	return s.shared().SetHostHealth(ctx, hostID, h)
}

// SetHostStream records the replica holding the host's stream.
func (s *Store) SetHostStream(ctx context.Context, hostID, replica string, at time.Time) error {
	return s.shared().SetHostStream(ctx, hostID, replica, at)
}

// ClearHostStream forgets the stream if it is still the one replica opened
// at since.
func (s *Store) ClearHostStream(ctx context.Context, hostID, replica string, since time.Time) error {
	return s.shared().ClearHostStream(ctx, hostID, replica, since)
}

// HeartbeatStreams refreshes every stream the replica holds.
func (s *Store) HeartbeatStreams(ctx context.Context, replica string, at time.Time) error {
	return s.shared().HeartbeatStreams(ctx, replica, at)
}
