// Package sqlrow holds what the SQL backends of hub/store share: row
// structs and their conversions to and from store types, column lists and
// argument builders, and the queries whose SQL is the same on both (written
// with $N placeholders, which lib/pq and modernc sqlite both bind by
// position). A mapping bug is fixed here once for both backends; SQL that
// differs (locking, arrays, upsert forms) stays in each backend.
//
// What differs is carried by a Dialect value: how times are bound (SQLite
// keeps INTEGER microseconds, PostgreSQL timestamptz), PostgreSQL's row
// locks, and what LIMIT means all. Reads scan either time form through Time
// and NullTime.
package sqlrow

import (
	"fmt"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

// Time is a NOT NULL stored time, read as UTC.
type Time time.Time

// Scan accepts INTEGER microseconds (SQLite) or a time (PostgreSQL).
func (t *Time) Scan(src any) error {
	v, ok, err := scanTime(src)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("scan time: NULL in a NOT NULL column")
	}
	*t = Time(v)
	return nil
}

// T returns the time.
func (t Time) T() time.Time { return time.Time(t) }

// NullTime is a nullable stored time, read as UTC.
type NullTime struct {
	Time  time.Time
	Valid bool
}

// Scan accepts NULL, INTEGER microseconds (SQLite) or a time (PostgreSQL).
func (n *NullTime) Scan(src any) error {
	v, ok, err := scanTime(src)
	if err != nil {
		return err
	}
	*n = NullTime{Time: v, Valid: ok}
	return nil
}

// Ptr returns the time, or nil for NULL.
func (n NullTime) Ptr() *time.Time {
	if !n.Valid {
		return nil
	}
	v := n.Time
	return &v
}

func scanTime(src any) (time.Time, bool, error) {
	switch v := src.(type) {
	case nil:
		return time.Time{}, false, nil
	case int64:
		return FromUnixMicro(v), true, nil
	case time.Time:
		return v.UTC(), true, nil
	}
	return time.Time{}, false, fmt.Errorf("scan time: unsupported %T", src)
}

// Dialect is what the shared code needs to know of a backend.
type Dialect struct {
	// Time is the argument that stores t.
	Time func(t time.Time) any
	// RowLock and KeyLock end a SELECT whose rows must not change (RowLock)
	// or be deleted (KeyLock) before the transaction ends. Empty on SQLite,
	// whose one writer transaction at a time already excludes other writers.
	RowLock, KeyLock string
	// NoLimit is the LIMIT argument that means all rows.
	NoLimit any
	// UserKey is the SQL of a hosts row's effective user principal name
	// with ASCII letters lowered (store.FoldUPN), written exactly as the
	// expression index of migration 0014 so the planner uses it.
	UserKey string
}

// Limit is the LIMIT argument of a limit where <= 0 means all.
func (d Dialect) Limit(n int) any {
	if n <= 0 {
		return d.NoLimit
	}
	return n
}

// UnixMicro is t as SQLite stores it: INTEGER microseconds (UTC), in store
// precision.
func UnixMicro(t time.Time) int64 { return store.StoredTime(t).UnixMicro() }

// FromUnixMicro reads a time SQLite stored.
func FromUnixMicro(v int64) time.Time { return time.UnixMicro(v).UTC() }

// effectiveUPN is a hosts row's user principal name: the admin's override
// when set, else the reported one (store.Host.EffectiveUserPrincipalName).
const effectiveUPN = `CASE WHEN user_principal_name_override <> '' THEN user_principal_name_override ELSE user_principal_name END`

// SQLite stores times as INTEGER microseconds. Its lower() folds ASCII only.
var SQLite = Dialect{Time: func(t time.Time) any { return UnixMicro(t) }, NoLimit: -1,
	UserKey: `lower(` + effectiveUPN + `)`}

// Postgres passes times as they are (timestamptz) and locks rows. lower()
// under the "C" collation folds ASCII only, as on SQLite.
var Postgres = Dialect{Time: func(t time.Time) any { return t }, RowLock: " FOR UPDATE", KeyLock: " FOR KEY SHARE",
	NoLimit: nil, UserKey: `lower((` + effectiveUPN + `) COLLATE "C")`}

// TimePtr stores nil as NULL.
func (d Dialect) TimePtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return d.Time(*t)
}

// NullTime stores a zero time as NULL and any other in store precision.
func (d Dialect) NullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return d.Time(store.StoredTime(t))
}
