package sqlite

// SetPruneChunk lowers the rows PruneSyncItems deletes per statement, so the
// conformance suite exercises several chunks with a handful of rows.
func SetPruneChunk(s *Store, n int) { s.pruneChunk = n }
