package compliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

// InputLoader loads everything Evaluate needs about one host (Now is set by
// the engine). It returns an error wrapping store.ErrNotFound for a host
// that no longer exists.
type InputLoader interface {
	LoadInput(ctx context.Context, hostID string) (Input, error)
}

// VerdictSaver persists a verdict. The store compares it with the stored
// one under a row lock and, in the same transaction, enqueues one outbox
// row per integration of the host's team when Desired(v) is not "" and
// differs from the stored verdict's. Saving an unchanged verdict changes
// nothing, so replicas that evaluate the same host at once are harmless.
type VerdictSaver interface {
	SaveVerdict(ctx context.Context, hostID string, v Verdict) error
}

// Engine re-evaluates hosts when something changes and at their
// NextTransition, so a grace deadline or staleness flips a verdict with no
// new result.
type Engine struct {
	load  InputLoader
	save  VerdictSaver
	clock Clock
	log   *slog.Logger
	sched *Scheduler
	// RetryAfter is how soon a failed evaluation is tried again.
	retryAfter time.Duration
}

// NewEngine returns an engine; clock and logger may be nil for defaults.
func NewEngine(load InputLoader, save VerdictSaver, clock Clock, log *slog.Logger) *Engine {
	if clock == nil {
		clock = RealClock{}
	}
	if log == nil {
		log = slog.Default()
	}
	return &Engine{load: load, save: save, clock: clock, log: log.With("component", "compliance"),
		sched: NewScheduler(), retryAfter: 30 * time.Second}
}

// Scheduler exposes the engine's schedule (for metrics and tests).
func (e *Engine) Scheduler() *Scheduler { return e.sched }

// Reevaluate evaluates one host now, saves the verdict and schedules its
// next transition. Call it after RecordResults changed a status, after a
// host's identity, revocation, exemptions or team settings change, and on
// start for every host (ReevaluateAll). A deleted host is unscheduled.
func (e *Engine) Reevaluate(ctx context.Context, hostID string) (Verdict, error) {
	in, err := e.load.LoadInput(ctx, hostID)
	if errors.Is(err, store.ErrNotFound) {
		e.sched.Remove(hostID)
		return Verdict{}, err
	}
	if err != nil {
		return Verdict{}, fmt.Errorf("load host %s: %w", hostID, err)
	}
	in.Now = e.clock.Now()
	v := Evaluate(in)
	if err := e.save.SaveVerdict(ctx, hostID, v); err != nil {
		return v, fmt.Errorf("save verdict of host %s: %w", hostID, err)
	}
	e.sched.Set(hostID, v.NextTransition)
	return v, nil
}

// ReevaluateAll re-evaluates the given hosts (e.g. all hosts at start, or
// a team's hosts after its settings changed). It continues past failures
// and returns them joined; failed hosts are retried by Run.
func (e *Engine) ReevaluateAll(ctx context.Context, hostIDs []string) error {
	var errs []error
	for _, id := range hostIDs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := e.Reevaluate(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
			errs = append(errs, err)
			e.sched.Set(id, e.clock.Now().Add(e.retryAfter))
		}
	}
	return errors.Join(errs...)
}

// Run re-evaluates hosts at their next transition until ctx ends; a failed
// evaluation is retried after 30 s. It returns ctx.Err().
func (e *Engine) Run(ctx context.Context) error {
	return e.sched.Run(ctx, e.clock, func(hostID string) {
		_, err := e.Reevaluate(ctx, hostID)
		if err == nil || errors.Is(err, store.ErrNotFound) || ctx.Err() != nil {
			return
		}
		e.log.ErrorContext(ctx, "scheduled re-evaluation failed", "host", hostID, "err", err)
		e.sched.Set(hostID, e.clock.Now().Add(e.retryAfter))
	})
}
