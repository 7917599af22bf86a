package postgres

import (
	"strings"

	"github.com/posture-dev/posture/hub/store/internal/sqlrow"
)

// SetPruneChunk lowers the rows PruneSyncItems deletes per statement, so the
// conformance suite exercises several chunks with a handful of rows.
func SetPruneChunk(s *Store, n int) { s.pruneChunk = n }

// ExplainHostsOfUser returns PostgreSQL's plan of HostsOfUser with
// sequential scans priced out (an empty table is cheapest to scan, which
// says nothing about a fleet).
func ExplainHostsOfUser(s *Store) (string, error) {
	tx, err := s.db.Beginx()
	if err != nil {
		return "", err
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`SET LOCAL enable_seqscan = off`); err != nil {
		return "", err
	}
	var lines []string
	err = tx.Select(&lines, `EXPLAIN `+sqlrow.HostsOfUserQuery(sqlrow.Postgres), "ada@example.com", nil)
	return strings.Join(lines, "\n"), err
}
