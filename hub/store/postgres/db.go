// Package postgres is the PostgreSQL backend of hub/store (sqlx + lib/pq):
// the production store, safe for many hub replicas on one database.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/internal/sqlrow"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Migrations holds the embedded migrations (dir "migrations"), for tests
// and tools.
var Migrations fs.FS = migrationFS

// Advisory lock keys (arbitrary constants, unique to posture).
const (
	lockMigrate = 0x706f737475726501 // serialises schema migrations of replicas
	lockApply   = 0x706f737475726502 // serialises policy applies and deletes
)

// Store is the PostgreSQL store.
type Store struct {
	db *sqlx.DB

	pruneChunk int // rows per PruneSyncItems statement; 0 = store.PruneChunk (tests lower it)
}

var _ store.Store = (*Store)(nil)

// Open connects to url (a lib/pq URL or DSN), migrates the schema to the
// latest version and returns the store.
func Open(ctx context.Context, url string) (*Store, error) {
	db, err := sqlx.Open("postgres", url)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect postgres: %w", err)
	}
	s := &Store{db: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// DB exposes the connection pool to packages that extend the store.
func (s *Store) DB() *sqlx.DB { return s.db }

// Ping checks the database is reachable.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("ping postgres: %w", err)
	}
	return nil
}

// Close closes the pool.
func (s *Store) Close() error { return s.db.Close() }

// migrate applies missing migrations in one transaction under an advisory
// lock, so replicas starting together migrate once.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := store.LoadMigrations(migrationFS, "migrations")
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(lockMigrate)); err != nil {
			return fmt.Errorf("migration lock: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    BIGINT PRIMARY KEY,
			name       TEXT NOT NULL,
			applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
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
			// No arguments: lib/pq uses the simple protocol, which runs
			// every statement of the file.
			if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
				return fmt.Errorf("migration %s: %w", m.Name, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
				return fmt.Errorf("record migration %s: %w", m.Name, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('policy_set_version', $1)
			ON CONFLICT (key) DO NOTHING`, uuid.NewString()); err != nil {
			return fmt.Errorf("init policy set version: %w", err)
		}
		return nil
	})
}

// shared runs the queries both backends share.
func (s *Store) shared() sqlrow.DB {
	return sqlrow.DB{R: s.db, W: s.db, Dialect: sqlrow.Postgres, MapErr: mapErr}
}

// inTx runs fn in a READ COMMITTED transaction, retrying a few times when
// PostgreSQL aborts it for a deadlock or serialization failure.
func (s *Store) inTx(ctx context.Context, fn func(*sqlx.Tx) error) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		err = s.tryTx(ctx, fn)
		if !retryable(err) {
			return err
		}
	}
	return err
}

func (s *Store) tryTx(ctx context.Context, fn func(*sqlx.Tx) error) error {
	tx, err := s.db.BeginTxx(ctx, nil)
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

func retryable(err error) bool {
	var pe *pq.Error
	if !errors.As(err, &pe) {
		return false
	}
	return pe.Code == "40001" || pe.Code == "40P01"
}

// mapErr wraps constraint violations in the store's errors.
func mapErr(err error) error {
	var pe *pq.Error
	if err == nil || !errors.As(err, &pe) {
		return err
	}
	switch pe.Code.Class() {
	case "23": // integrity constraint violation
		if pe.Code == "23505" {
			return fmt.Errorf("%w: %w", store.ErrConflict, err)
		}
		return fmt.Errorf("%w: %w", store.ErrInvalid, err)
	case "22": // data exception (bad value)
		return fmt.Errorf("%w: %w", store.ErrInvalid, err)
	}
	return err
}

func notFound(err error, what, id string) error { return sqlrow.NotFound(err, mapErr, what, id) }

// nullTime stores a zero time as NULL.
func nullTime(t time.Time) any { return sqlrow.Postgres.NullTime(t) }
