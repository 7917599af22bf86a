package store

import (
	"errors"
	"time"
)

// ErrInvalid: the input breaks a rule of the store (an empty id, an unknown
// status or severity, a duplicate in one request). Nothing was written.
var ErrInvalid = errors.New("invalid input")

// TimePrecision is what both backends keep of a time.Time: PostgreSQL
// timestamps hold microseconds, so SQLite is held to the same to behave alike.
const TimePrecision = time.Microsecond

// StoredTime is t as a backend stores it: UTC, truncated to TimePrecision.
// Comparisons between incoming and stored times must use it on both sides.
func StoredTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(TimePrecision)
}

// StoredTimePtr is StoredTime for optional times.
func StoredTimePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := StoredTime(*t)
	return &v
}

// ValidStatus reports whether s is a result status the store accepts.
func ValidStatus(s string) bool {
	return s == StatusPass || s == StatusFail || s == StatusError
}

// ValidSeverity reports whether s is a policy severity the store accepts.
func ValidSeverity(s string) bool {
	switch s {
	case "low", "medium", "high", "critical":
		return true
	}
	return false
}

// ValidRole reports whether r is an API token role.
func ValidRole(r string) bool {
	return r == RoleObserver || r == RoleMaintainer || r == RoleAdmin
}
