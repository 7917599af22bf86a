// Package sqlite is the embedded SQLite backend of hub/store
// (modernc.org/sqlite, pure Go): the default when no database URL is given.
// It is for one hub process: all writes go through one connection (SQLite
// serialises writers anyway; queueing them in-process avoids SQLITE_BUSY),
// reads use a pool of read-only connections (WAL lets them run beside the
// writer).
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/internal/sqlrow"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Migrations holds the embedded migrations (dir "migrations"), for tests
// and tools.
var Migrations fs.FS = migrationFS

// Store is the SQLite store.
type Store struct {
	w *sqlx.DB // the one writer connection
	r *sqlx.DB // read-only pool

	pruneChunk int // rows per PruneSyncItems statement; 0 = store.PruneChunk (tests lower it)
}

var _ store.Store = (*Store)(nil)

// busyTimeout bounds how long a connection waits for a lock held by another
// process (e.g. a backup tool) before failing with SQLITE_BUSY.
const busyTimeout = 10 * time.Second

// Open opens (creating if needed, mode 0600) the database file at path,
// migrates it and returns the store.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") || path == ":memory:" {
		return nil, fmt.Errorf("open sqlite: %q is not a plain file path", path)
	}
	// The file holds credential hashes (and later encrypted secrets):
	// owner-only. SQLite gives its -wal and -shm files the same mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	f.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	params := url.Values{"_pragma": {
		fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()),
		"journal_mode(WAL)",
		"foreign_keys(1)",
		"synchronous(FULL)", // an acked batch must survive power loss
	}}
	wp := url.Values{"_pragma": params["_pragma"], "_txlock": {"immediate"}}
	w, err := sqlx.Open("sqlite", path+"?"+wp.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	s := &Store{w: w}
	if err := s.migrate(ctx); err != nil {
		w.Close()
		return nil, err
	}
	rp := url.Values{"_pragma": append(params["_pragma"], "query_only(1)")}
	r, err := sqlx.Open("sqlite", path+"?"+rp.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	s.r = r
	if err := r.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return s, nil
}

// Writer exposes the writer connection to packages that extend the store;
// every write must go through it.
func (s *Store) Writer() *sqlx.DB { return s.w }

// Reader exposes the read-only pool.
func (s *Store) Reader() *sqlx.DB { return s.r }

// Ping checks both pools.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.w.PingContext(ctx); err != nil {
		return fmt.Errorf("ping sqlite: %w", err)
	}
	if err := s.r.PingContext(ctx); err != nil {
		return fmt.Errorf("ping sqlite: %w", err)
	}
	return nil
}

// Close closes both pools.
func (s *Store) Close() error {
	var errR error
	if s.r != nil {
		errR = s.r.Close()
	}
	return errors.Join(errR, s.w.Close())
}

func (s *Store) migrate(ctx context.Context) error {
	ms, err := store.LoadMigrations(migrationFS, "migrations")
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER PRIMARY KEY,
			name       TEXT NOT NULL,
			applied_at INTEGER NOT NULL) STRICT`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		var done []int64
		if err := tx.SelectContext(ctx, &done, `SELECT version FROM schema_migrations`); err != nil {
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		applied := map[int64]bool{}
		for _, v := range done {
			applied[v] = true
		}
		for _, m := range ms {
			if applied[m.Version] {
				continue
			}
			if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
				return fmt.Errorf("migration %s: %w", m.Name, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at)
				VALUES (?, ?, ?)`, m.Version, m.Name, ts(time.Now())); err != nil {
				return fmt.Errorf("record migration %s: %w", m.Name, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('policy_set_version', ?)
			ON CONFLICT (key) DO NOTHING`, uuid.NewString()); err != nil {
			return fmt.Errorf("init policy set version: %w", err)
		}
		return nil
	})
}

// shared runs the queries both backends share.
func (s *Store) shared() sqlrow.DB {
	return sqlrow.DB{R: s.r, W: s.w, Dialect: sqlrow.SQLite, MapErr: mapErr}
}

// inTx runs fn in an immediate transaction on the writer.
func (s *Store) inTx(ctx context.Context, fn func(*sqlx.Tx) error) error {
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// mapErr wraps constraint violations in the store's errors.
func mapErr(err error) error {
	var se *sqlite.Error
	if err == nil || !errors.As(err, &se) {
		return err
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return fmt.Errorf("%w: %w", store.ErrConflict, err)
	}
	if se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT {
		return fmt.Errorf("%w: %w", store.ErrInvalid, err)
	}
	return err
}

func notFound(err error, what, id string) error { return sqlrow.NotFound(err, mapErr, what, id) }

func affected(res sql.Result, err error, what, id string) error {
	return sqlrow.Affected(res, err, mapErr, what, id)
}

// Times are stored as INTEGER microseconds (UTC); sqlrow holds the rule.

func ts(t time.Time) int64 { return sqlrow.UnixMicro(t) }

// nts stores a zero time as NULL.
func nts(t time.Time) any { return sqlrow.SQLite.NullTime(t) }
