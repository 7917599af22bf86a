package agentapi

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/lib/pq"
)

// PGChannel is the PostgreSQL NOTIFY channel replicas share.
const PGChannel = "posture_agent_events"

// PGBus carries events between replicas over PostgreSQL LISTEN/NOTIFY: one
// NOTIFY per event, every replica listening; the one holding the stream acts.
type PGBus struct {
	db       *sql.DB
	listener *pq.Listener
	log      *slog.Logger
}

// NewPGBus connects to the database at url and starts listening.
func NewPGBus(ctx context.Context, url string, log *slog.Logger) (*PGBus, error) {
	if log == nil {
		log = slog.Default()
	}
	db, err := sql.Open("postgres", url)
	if err != nil {
		return nil, fmt.Errorf("event bus: %w", err)
	}
	db.SetMaxOpenConns(2)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("event bus: %w", err)
	}
	l := pq.NewListener(url, 100*time.Millisecond, 10*time.Second, func(ev pq.ListenerEventType, err error) {
		if err != nil {
			log.Warn("event bus listener", "event", ev, "err", err)
		}
	})
	if err := l.Listen(PGChannel); err != nil {
		l.Close()
		db.Close()
		return nil, fmt.Errorf("event bus: listen: %w", err)
	}
	return &PGBus{db: db, listener: l, log: log}, nil
}

// Publish sends an event to every replica.
func (b *PGBus) Publish(ctx context.Context, ev Event) error {
	p, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	if _, err := b.db.ExecContext(ctx, `SELECT pg_notify($1, $2)`, PGChannel, string(p)); err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	return nil
}

// Run hands every event to handle until ctx ends. A reconnect may lose
// events sent meanwhile, so after one it hands handle an
// EventBusReconnected: a lost recheck is pressed again, a lost status is
// resent with the next Hello or verdict change, a lost sync resume is the
// handler's to make up for.
func (b *PGBus) Run(ctx context.Context, handle func(context.Context, Event)) {
	ping := time.NewTicker(30 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-b.listener.Notify:
			if n == nil {
				b.log.Info("event bus listener reconnected; events sent meanwhile may be lost")
				handle(ctx, Event{Kind: EventBusReconnected})
				continue
			}
			ev, err := DecodeEvent(n.Extra)
			if err != nil {
				b.log.Warn("event bus: bad payload", "err", err)
				continue
			}
			handle(ctx, ev)
		case <-ping.C:
			go func() { _ = b.listener.Ping() }()
		}
	}
}

// Close stops listening.
func (b *PGBus) Close() {
	b.listener.Close()
	b.db.Close()
}
