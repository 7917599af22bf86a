package postgres

import (
	"context"

	"github.com/posture-dev/posture/hub/store"
)

// RecordAuditEvent appends e to the audit log.
func (s *Store) RecordAuditEvent(ctx context.Context, e store.AuditEvent) error {
	return s.shared().RecordAuditEvent(ctx, e)
}

// ListAuditEvents returns matching audit events, newest first.
func (s *Store) ListAuditEvents(ctx context.Context, f store.AuditFilter) ([]store.AuditEvent, error) {
	return s.shared().ListAuditEvents(ctx, f)
}
