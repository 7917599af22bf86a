package sqlite

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// ErrCorrupt: the database file failed its integrity check.
var ErrCorrupt = errors.New("sqlite database is corrupt")

// QuickCheck runs PRAGMA quick_check (every page and index structure, not
// index contents against tables) and returns ErrCorrupt with what SQLite
// found. A hub runs it at start: a corrupt file can open and migrate
// cleanly yet fail on the first read of a damaged page.
func (s *Store) QuickCheck(ctx context.Context) error {
	var rows []string
	if err := s.w.SelectContext(ctx, &rows, `PRAGMA quick_check(20)`); err != nil {
		return fmt.Errorf("%w: quick_check: %v", ErrCorrupt, err)
	}
	if len(rows) == 1 && rows[0] == "ok" {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrCorrupt, strings.Join(rows, "; "))
}
