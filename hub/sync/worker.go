package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sort"
	gosync "sync"
	"time"

	"github.com/posture-dev/posture/hub/compliance"
)

// Config configures a Worker. Outbox and Sinks are required; zero values
// elsewhere take the defaults given.
type Config struct {
	Outbox Outbox
	Sinks  SinkResolver
	// Owner names this worker in leases; default hostname/pid/random.
	// Workers must have distinct owners.
	Owner   string
	Clock   compliance.Clock // default compliance.RealClock
	Logger  *slog.Logger     // default slog.Default()
	Metrics Metrics          // default NopMetrics
	// Limiter enforces the write quota; default NewLimiter(3000, 150s).
	// Share one between workers of a process. With several replicas each has
	// its own: give each limit/replicas, or rely on 429 + Retry-After.
	Limiter *Limiter
	// QuotaKey names the quota (and Retry-After pause) a change counts
	// against; default its TenantID (IntegrationID when empty). Keying per
	// tenant is conservative when two apps write to one tenant.
	QuotaKey     func(Change) string
	BatchSize    int            // per Apply unless the sink is a BatchSizer; default 20
	ClaimLimit   int            // devices per round; default 500
	Lease        time.Duration  // default 60s
	ApplyTimeout time.Duration  // per Apply; default 20s, must be < Lease/2
	MaxAttempts  int            // dead-letter after this many failed sends; default 10
	BackoffBase  time.Duration  // first retry delay; default 1s
	BackoffMax   time.Duration  // default 5m
	PollInterval time.Duration  // idle poll of the outbox; default 1s
	Concurrency  int            // quota keys sent to in parallel; default 4
	Rand         func() float64 // jitter source in [0,1); default math/rand/v2
}

// Codes the worker itself puts on rows.
const (
	CodeUnknownIntegration = "unknown_integration"
	CodeSinkUnavailable    = "sink_unavailable"
	CodeNoOutcome          = "sink_no_outcome"
	CodeInvalidDesired     = "invalid_desired"
)

// Worker drains an Outbox into sinks. Several workers (in one process or
// on several replicas) may share one outbox.
type Worker struct {
	cfg    Config
	notify chan struct{}

	mu     gosync.Mutex
	paused map[string]pause
	// settling is read-held by a round from its last look at the pauses
	// until its settlement is stored, and write-held by Resume: a row
	// deferred to a pause's end is corrected before it is stored if the
	// pause ended meanwhile, or is stored before Resume returns, so that
	// Resume's caller then makes it due (ResumeSyncItems).
	settling gosync.RWMutex
}

// heldRow is a Retry row of a round's settlement deferred to the end of
// its quota key's pause.
type heldRow struct {
	retry int // index into Settlement.Retry
	key   string
}

type pause struct {
	until   time.Time
	strikes int
	// code and msg are the throttle's (e.g. 429, AADSTS7000222): rows held
	// back by the pause show them, not an empty error.
	code, msg string
}

// Round reports what one RunOnce did, counted in devices.
type Round struct {
	Claimed  int // devices leased
	Written  int // acknowledged by the sink
	Skipped  int // no-op: the coalesced state was already written
	Retried  int // rescheduled after a failure (attempt counted)
	Deferred int // rescheduled without an attempt: quota, pause, lease
	Dead     int // dead-lettered
}

func (r *Round) add(o Round) {
	r.Written += o.Written
	r.Skipped += o.Skipped
	r.Retried += o.Retried
	r.Deferred += o.Deferred
	r.Dead += o.Dead
}

// NewWorker validates cfg and applies defaults.
func NewWorker(cfg Config) (*Worker, error) {
	if cfg.Outbox == nil || cfg.Sinks == nil {
		return nil, errors.New("sync: worker needs an outbox and a sink resolver")
	}
	if cfg.Owner == "" {
		host, _ := os.Hostname()
		cfg.Owner = fmt.Sprintf("%s/%d/%08x", host, os.Getpid(), rand.Uint32())
	}
	if cfg.Clock == nil {
		cfg.Clock = compliance.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NopMetrics{}
	}
	if cfg.Limiter == nil {
		cfg.Limiter = NewLimiter(DefaultQuotaLimit, DefaultQuotaWindow)
	}
	if cfg.QuotaKey == nil {
		cfg.QuotaKey = func(c Change) string {
			if c.TenantID != "" {
				return c.TenantID
			}
			return c.IntegrationID
		}
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.BatchSize, 20)
	def(&cfg.ClaimLimit, 500)
	def(&cfg.MaxAttempts, 10)
	def(&cfg.Concurrency, 4)
	defD(&cfg.Lease, time.Minute)
	defD(&cfg.ApplyTimeout, 20*time.Second)
	defD(&cfg.BackoffBase, time.Second)
	defD(&cfg.BackoffMax, 5*time.Minute)
	defD(&cfg.PollInterval, time.Second)
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	if cfg.ApplyTimeout*2 > cfg.Lease {
		return nil, fmt.Errorf("sync: apply timeout %v must be under half the lease %v", cfg.ApplyTimeout, cfg.Lease)
	}
	cfg.Logger = cfg.Logger.With("component", "sync", "owner", cfg.Owner)
	return &Worker{cfg: cfg, notify: make(chan struct{}, 1), paused: make(map[string]pause)}, nil
}

// Notify wakes Run at once (call it after enqueuing on this replica).
func (w *Worker) Notify() {
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// PausedUntil returns when a quota key's Retry-After pause ends (zero if
// not paused).
func (w *Worker) PausedUntil(key string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.paused[key].until
}

// PausedKeys lists the quota keys with a pause that has not ended yet.
func (w *Worker) PausedKeys() []string {
	now := w.cfg.Clock.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	var keys []string
	for k, p := range w.paused {
		if p.until.After(now) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// Resume ends a quota key's pause at once (after the credential or
// configuration that caused it was fixed) and wakes Run. Rows the pause
// deferred wait in the outbox until their next_at: make them due after
// Resume returns (store ResumeSyncItems, then Notify) or they keep
// waiting. Resume waits for a settlement in flight, so no deferral to the
// ended pause is stored after it returns.
func (w *Worker) Resume(key string) {
	w.settling.Lock()
	w.mu.Lock()
	delete(w.paused, key)
	w.mu.Unlock()
	w.settling.Unlock()
	w.Notify()
}

// Run drains the outbox until ctx ends: at once after a round that found
// work or a Notify, else every PollInterval. It returns ctx.Err().
func (w *Worker) Run(ctx context.Context) error {
	for {
		r, err := w.RunOnce(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			w.cfg.Logger.ErrorContext(ctx, "sync round failed", "err", err)
		}
		if err == nil && r.Claimed > 0 {
			continue
		}
		t := w.cfg.Clock.NewTimer(w.cfg.PollInterval)
		select {
		case <-ctx.Done():
		case <-w.notify:
		case <-t.C():
		}
		t.Stop()
	}
}

// item is one device's coalesced change on its way to a sink.
type item struct {
	idx int // index into the round's works/settlements
	c   Change
}

type group struct {
	integration string
	low         bool
	kind        string
	items       []item
}

// RunOnce claims due devices, sends them, and settles them.
func (w *Worker) RunOnce(ctx context.Context) (Round, error) {
	cfg := w.cfg
	works, err := cfg.Outbox.Claim(ctx, cfg.Owner, cfg.Clock.Now(), cfg.ClaimLimit, cfg.Lease)
	if err != nil {
		return Round{}, fmt.Errorf("claim: %w", err)
	}
	round := Round{Claimed: len(works)}
	if len(works) == 0 {
		return round, nil
	}
	settles := make([]Settlement, len(works))
	held := make([][]heldRow, len(works)) // per device, like settles

	// Coalesce: per device and kind the newest row wins; older ones are
	// superseded. An attribute row never supersedes a session revocation
	// (or the reverse): they are different actions.
	byKey := map[string]map[groupID]*group{}
	add := func(i int, win Change) {
		qk := cfg.QuotaKey(win)
		gid := groupID{win.IntegrationID, win.LowPriority, win.Kind}
		if byKey[qk] == nil {
			byKey[qk] = map[groupID]*group{}
		}
		g := byKey[qk][gid]
		if g == nil {
			g = &group{integration: win.IntegrationID, low: win.LowPriority, kind: win.Kind}
			byKey[qk][gid] = g
		}
		g.items = append(g.items, item{idx: i, c: win})
	}
	for i, wk := range works {
		s := &settles[i]
		s.Key = wk.Key
		var attrs, revokes []Change
		for _, c := range wk.Changes {
			if c.Kind == KindRevokeSessions {
				revokes = append(revokes, c)
			} else {
				attrs = append(attrs, c)
			}
		}
		if len(revokes) > 0 {
			// Several pending revocations of one device (transitions while
			// the first waited) are one revocation: each transition still
			// gets at most one.
			win := revokes[len(revokes)-1]
			for _, c := range revokes[:len(revokes)-1] {
				s.Done = append(s.Done, c.OutboxID)
			}
			add(i, win)
		}
		if len(attrs) == 0 {
			continue
		}
		win := attrs[len(attrs)-1]
		force := false
		for _, c := range attrs[:len(attrs)-1] {
			s.Done = append(s.Done, c.OutboxID)
			force = force || c.Force
		}
		force = force || win.Force
		win.Force = force
		if n := len(attrs) - 1; n > 0 {
			cfg.Metrics.Skipped(wk.Key.IntegrationID, n)
		}
		if win.Desired != DesiredCompliant && win.Desired != DesiredNoncompliant {
			w.dead(s, win, CodeInvalidDesired, fmt.Sprintf("invalid desired state %q", win.Desired), &round)
			continue
		}
		// A reconcile repair read the desired state before a newer verdict
		// replaced it (and that verdict's row may be written already):
		// sending it would set the device back to the old state.
		if win.Force && wk.Desired != "" && win.Desired != wk.Desired {
			s.Done = append(s.Done, win.OutboxID)
			cfg.Metrics.Skipped(wk.Key.IntegrationID, 1)
			round.Skipped++
			cfg.Logger.InfoContext(ctx, "stale repair dropped", "integration", wk.Key.IntegrationID, "device", wk.Key.DeviceID,
				"repair", win.Desired, "desired", wk.Desired)
			continue
		}
		if !force && win.Desired == wk.LastWritten {
			s.Done = append(s.Done, win.OutboxID)
			cfg.Metrics.Skipped(wk.Key.IntegrationID, 1)
			round.Skipped++
			continue
		}
		add(i, win)
	}

	// Resolve sinks once per integration per round.
	sinks := map[string]Sink{}
	sinkErrs := map[string]error{}
	for _, gs := range byKey {
		for gid := range gs {
			if _, ok := sinks[gid.integration]; ok {
				continue
			}
			if _, ok := sinkErrs[gid.integration]; ok {
				continue
			}
			s, err := cfg.Sinks(ctx, gid.integration)
			if err == nil && s == nil {
				err = fmt.Errorf("%w: %s", ErrUnknownIntegration, gid.integration)
			}
			if err != nil {
				sinkErrs[gid.integration] = err
			} else {
				sinks[gid.integration] = s
			}
		}
	}

	// One goroutine per quota key (bounded): batches of a key go in order,
	// so a 429 stops that key's later batches in this round.
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	sem := make(chan struct{}, cfg.Concurrency)
	var wg gosync.WaitGroup
	var rmu gosync.Mutex
	for _, k := range keys {
		groups := make([]*group, 0, len(byKey[k]))
		for _, g := range byKey[k] {
			groups = append(groups, g)
		}
		// Normal traffic before low priority, then by integration; a
		// device's attribute before its session revocation, so a user who
		// signs in again meets the block.
		sort.Slice(groups, func(i, j int) bool {
			if groups[i].low != groups[j].low {
				return !groups[i].low
			}
			if groups[i].integration != groups[j].integration {
				return groups[i].integration < groups[j].integration
			}
			return groups[i].kind < groups[j].kind
		})
		wg.Add(1)
		sem <- struct{}{}
		go func(key string, groups []*group) {
			defer func() { <-sem; wg.Done() }()
			var r Round
			for _, g := range groups {
				w.sendGroup(ctx, key, g, works, settles, held, sinks[g.integration], sinkErrs[g.integration], &r)
			}
			rmu.Lock()
			round.add(r)
			rmu.Unlock()
		}(k, groups)
	}
	wg.Wait()

	// Record what was sent even when shutting down: an unsettled device is
	// re-sent once its lease lapses.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	w.settling.RLock()
	defer w.settling.RUnlock()
	// A pause resumed while this round ran no longer holds its rows back.
	now := cfg.Clock.Now()
	for i, hs := range held {
		for _, h := range hs {
			if w.PausedUntil(h.key).IsZero() {
				settles[i].Retry[h.retry].NextAt = now
			}
		}
	}
	if err := cfg.Outbox.Settle(sctx, cfg.Owner, settles); err != nil {
		return round, fmt.Errorf("settle: %w", err)
	}
	return round, nil
}

type groupID struct {
	integration string
	low         bool
	kind        string
}

func (w *Worker) sendGroup(ctx context.Context, key string, g *group, works []DeviceWork, settles []Settlement, held [][]heldRow, sink Sink, sinkErr error, r *Round) {
	cfg := w.cfg
	if sinkErr != nil {
		now := cfg.Clock.Now()
		for _, it := range g.items {
			if errors.Is(sinkErr, ErrUnknownIntegration) {
				w.dead(&settles[it.idx], it.c, CodeUnknownIntegration, sinkErr.Error(), r)
			} else {
				w.retry(&settles[it.idx], it.c, now, Outcome{Kind: OutcomeRetry, Code: CodeSinkUnavailable, Message: sinkErr.Error()}, r)
			}
		}
		return
	}
	size := cfg.BatchSize
	if bs, ok := sink.(BatchSizer); ok && bs.MaxBatch() > 0 {
		size = bs.MaxBatch()
	}
	items := g.items
	for len(items) > 0 {
		now := cfg.Clock.Now()
		if ctx.Err() != nil { // shutting down: leave the rest for the next owner
			for _, it := range items {
				w.deferTo(&settles[it.idx], it.c, now, r)
			}
			return
		}
		w.mu.Lock()
		p := w.paused[key]
		w.mu.Unlock()
		if p.until.After(now) {
			for _, it := range items {
				held[it.idx] = append(held[it.idx], heldRow{retry: len(settles[it.idx].Retry), key: key})
				settles[it.idx].Retry = append(settles[it.idx].Retry, RetryRow{ID: it.c.OutboxID, Attempts: it.c.Attempts,
					NextAt: p.until, Code: p.code, Error: p.msg})
				r.Deferred++
			}
			return
		}
		n := min(size, len(items))
		batch := items[:n]
		items = items[n:]

		// Never start a send that could outlive the lease: another worker
		// may claim the device once it lapses.
		var live []item
		for _, it := range batch {
			if works[it.idx].LeaseUntil.Before(now.Add(cfg.ApplyTimeout)) {
				w.deferTo(&settles[it.idx], it.c, now, r)
				continue
			}
			live = append(live, it)
		}
		granted, retryAt := cfg.Limiter.Take(key, now, len(live))
		for _, it := range live[granted:] {
			w.deferTo(&settles[it.idx], it.c, retryAt, r)
		}
		live = live[:granted]
		if len(live) == 0 {
			continue
		}
		w.apply(ctx, key, g.low, sink, live, settles, held, r)
	}
}

func (w *Worker) apply(ctx context.Context, key string, low bool, sink Sink, batch []item, settles []Settlement, held [][]heldRow, r *Round) {
	cfg := w.cfg
	changes := make([]Change, len(batch))
	for i, it := range batch {
		changes[i] = it.c
	}
	actx, cancel := context.WithTimeout(ctx, cfg.ApplyTimeout)
	if low {
		actx = WithLowPriority(actx)
	}
	outs := sink.Apply(actx, changes)
	cancel()
	now := cfg.Clock.Now()

	throttled := false
	var pauseFor time.Duration
	var pauseCode, pauseMsg string
	for i, it := range batch {
		s := &settles[it.idx]
		o := Outcome{Kind: OutcomeRetry, Code: CodeNoOutcome, Message: fmt.Sprintf("sink %s returned %d outcomes for %d changes", sink.Name(), len(outs), len(batch))}
		if i < len(outs) {
			o = outs[i]
		}
		switch o.Kind {
		case OutcomeOK:
			s.Done = append(s.Done, it.c.OutboxID)
			r.Written++
			if it.c.Kind != KindAttribute {
				break // done; the device's written state is the attribute's
			}
			s.Written, s.WrittenAt = it.c.Desired, now
			cfg.Metrics.Written(it.c.IntegrationID, 1)
			if !it.c.Force {
				cfg.Metrics.Latency(it.c.IntegrationID, now.Sub(it.c.CreatedAt))
			}
		case OutcomeThrottled:
			throttled = true
			pauseFor = max(pauseFor, o.RetryAfter)
			if pauseCode == "" {
				pauseCode, pauseMsg = o.Code, o.Message
			}
		case OutcomePermanent:
			w.dead(s, it.c, o.Code, o.Message, r)
		default:
			w.retry(s, it.c, now, o, r)
		}
	}
	if !throttled {
		w.mu.Lock()
		delete(w.paused, key)
		w.mu.Unlock()
		return
	}
	// Pause the key, then defer the throttled changes to the pause's end.
	w.mu.Lock()
	p := w.paused[key]
	p.strikes++
	if pauseFor <= 0 {
		pauseFor = w.backoff(p.strikes)
	}
	if until := now.Add(pauseFor); until.After(p.until) {
		p.until = until
	}
	p.code, p.msg = pauseCode, pauseMsg
	w.paused[key] = p
	until := p.until
	w.mu.Unlock()
	cfg.Metrics.Throttled(batch[0].c.IntegrationID, pauseCode)
	cfg.Logger.WarnContext(ctx, "sync tenant throttled", "quota_key", key, "until", until, "code", pauseCode)
	for i, it := range batch {
		if i < len(outs) && outs[i].Kind == OutcomeThrottled {
			held[it.idx] = append(held[it.idx], heldRow{retry: len(settles[it.idx].Retry), key: key})
			settles[it.idx].Retry = append(settles[it.idx].Retry, RetryRow{ID: it.c.OutboxID, Attempts: it.c.Attempts,
				NextAt: until, Code: outs[i].Code, Error: outs[i].Message})
			r.Deferred++
		}
	}
}

// retry counts a failed attempt and reschedules or dead-letters.
func (w *Worker) retry(s *Settlement, c Change, now time.Time, o Outcome, r *Round) {
	attempts := c.Attempts + 1
	if attempts >= w.cfg.MaxAttempts {
		c.Attempts = attempts - 1 // dead() adds the final attempt
		w.dead(s, c, o.Code, fmt.Sprintf("gave up after %d attempts: %s", attempts, o.Message), r)
		return
	}
	d := o.RetryAfter
	if d <= 0 {
		d = w.backoff(attempts)
	}
	s.Retry = append(s.Retry, RetryRow{ID: c.OutboxID, Attempts: attempts, NextAt: now.Add(d), Code: o.Code, Error: o.Message})
	r.Retried++
	w.cfg.Metrics.Retried(c.IntegrationID, o.Code)
}

func (w *Worker) dead(s *Settlement, c Change, code, reason string, r *Round) {
	s.Dead = append(s.Dead, DeadRow{ID: c.OutboxID, Attempts: c.Attempts + 1, Code: code, Reason: reason, At: w.cfg.Clock.Now()})
	r.Dead++
	w.cfg.Metrics.DeadLettered(c.IntegrationID, code)
	w.cfg.Logger.Warn("sync change dead-lettered", "integration", c.IntegrationID, "device", c.DeviceID,
		"host", c.HostID, "desired", c.Desired, "code", code, "reason", reason)
}

// deferTo reschedules without counting an attempt or touching the last error.
func (w *Worker) deferTo(s *Settlement, c Change, at time.Time, r *Round) {
	s.Retry = append(s.Retry, RetryRow{ID: c.OutboxID, Attempts: c.Attempts, NextAt: at})
	r.Deferred++
}

// backoff is exponential from BackoffBase, capped at BackoffMax, with
// "equal jitter": uniformly in [d/2, d], so retries of a burst spread out
// but never come sooner than half the nominal delay.
func (w *Worker) backoff(attempt int) time.Duration {
	d := w.cfg.BackoffBase
	for i := 1; i < attempt && d < w.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, w.cfg.BackoffMax)
	return d/2 + time.Duration(w.cfg.Rand()*float64(d/2))
}
