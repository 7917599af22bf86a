package sqlrow

import (
	"database/sql"
	"errors"
	"fmt"

	"github.com/posture-dev/posture/hub/store"
)

// NotFound names what failed: no row is store.ErrNotFound, any other error
// goes through the backend's mapErr (constraint violations to store errors).
func NotFound(err error, mapErr func(error) error, what, id string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s %q: %w", what, id, store.ErrNotFound)
	}
	return fmt.Errorf("%s %q: %w", what, id, mapErr(err))
}

// Affected checks a write by key touched a row: none is store.ErrNotFound.
func Affected(res sql.Result, err error, mapErr func(error) error, what, id string) error {
	if err != nil {
		return fmt.Errorf("%s %q: %w", what, id, mapErr(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s %q: %w", what, id, err)
	}
	if n == 0 {
		return fmt.Errorf("%s %q: %w", what, id, store.ErrNotFound)
	}
	return nil
}
