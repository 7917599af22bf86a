package sqlite

import "github.com/posture-dev/posture/hub/store/internal/sqlrow"

// SetPruneChunk lowers the rows PruneSyncItems deletes per statement, so the
// conformance suite exercises several chunks with a handful of rows.
func SetPruneChunk(s *Store, n int) { s.pruneChunk = n }

// ExplainHostsOfUser returns SQLite's query plan of HostsOfUser.
func ExplainHostsOfUser(s *Store) (string, error) {
	var rows []struct {
		ID, Parent, NotUsed int
		Detail              string
	}
	err := s.r.Select(&rows, `EXPLAIN QUERY PLAN `+sqlrow.HostsOfUserQuery(sqlrow.SQLite), "ada@example.com", -1)
	var plan string
	for _, r := range rows {
		plan += r.Detail + "\n"
	}
	return plan, err
}
