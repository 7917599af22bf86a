// Package scheduler runs the hub's policies against osquery on the policy
// set's interval, with splay, and at once on a recheck.
//
// A policy passes when its query returns at least one row, fails when it
// returns none, and errors when osquery refuses it or it times out. Before a
// new revision first runs, osquery is asked to parse it (getQueryColumns);
// a revision osquery cannot parse is reported ERROR once and then left alone
// until its revision changes or the hub asks for a recheck.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/extension/clock"
	"github.com/posture-dev/posture/extension/osq"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Querier is the osquery client as the scheduler uses it. Errors that are a
// *osq.QueryError are osquery's verdict on the query; errors wrapping
// osq.ErrUnavailable mean osquery could not be asked.
type Querier interface {
	Query(ctx context.Context, sql string) ([]map[string]string, error)
	QueryColumns(ctx context.Context, sql string) ([]string, error)
}

// Sink receives what the scheduler produces. Calls come from Run's goroutine.
type Sink interface {
	Results(ctx context.Context, results []*posturev1.PolicyResult)
	Facts(ctx context.Context, values map[string]string)
}

// Options tune a Scheduler; zero values get sensible defaults.
type Options struct {
	Clock clock.Clock
	Rand  *rand.Rand
	// QueryTimeout bounds one policy query (default 30 s).
	QueryTimeout time.Duration
	// DefaultInterval applies when a PolicySet carries none (default 15 min).
	DefaultInterval time.Duration
	// FirstRunSplay spreads the first runs of new policies (default 5 s).
	FirstRunSplay time.Duration
	// Splay is the fraction of the interval each later run is moved by at
	// random, so that policies drift apart instead of running in lockstep
	// (default 0.1).
	Splay float64
	// RetryUnavailable is how soon a run is retried when osquery could not
	// be reached (default 15 s).
	RetryUnavailable time.Duration
	// HoldFacts keeps fact queries from running until ReleaseFacts: the
	// identity facts read the extension's own tables, and a query that ran
	// before they were registered would report the identity as missing.
	HoldFacts bool
	Logger    *slog.Logger
}

// Scheduler is safe for concurrent use; Run must be called exactly once.
type Scheduler struct {
	q    Querier
	sink Sink
	opts Options
	clk  clock.Clock
	log  *slog.Logger

	mu        sync.Mutex
	rnd       *rand.Rand
	version   string
	interval  time.Duration
	policies  map[string]*policyState
	facts     []*posturev1.FactQuery
	factsNext time.Time // zero: no facts scheduled
	factsHeld bool
	kick      chan struct{}
}

type policyState struct {
	p         *posturev1.AgentPolicy
	next      time.Time
	validated bool // osquery parsed this revision
	parked    bool // refused by getQueryColumns and reported: do not run again
}

// New returns a Scheduler with no policies.
func New(q Querier, sink Sink, opts Options) *Scheduler {
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Rand == nil {
		opts.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = 30 * time.Second
	}
	if opts.DefaultInterval <= 0 {
		opts.DefaultInterval = 15 * time.Minute
	}
	if opts.FirstRunSplay <= 0 {
		opts.FirstRunSplay = 5 * time.Second
	}
	if opts.Splay <= 0 || opts.Splay >= 1 {
		opts.Splay = 0.1
	}
	if opts.RetryUnavailable <= 0 {
		opts.RetryUnavailable = 15 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Scheduler{
		q: q, sink: sink, opts: opts, clk: opts.Clock, log: opts.Logger, rnd: opts.Rand,
		interval:  opts.DefaultInterval,
		policies:  map[string]*policyState{},
		factsHeld: opts.HoldFacts,
		kick:      make(chan struct{}, 1),
	}
}

// ReleaseFacts lets fact queries run (see Options.HoldFacts).
func (s *Scheduler) ReleaseFacts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.factsHeld {
		s.factsHeld = false
		s.log.Debug("fact queries released")
		s.wake()
	}
}

// Version is the version of the PolicySet last applied ("" if none).
func (s *Scheduler) Version() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

// Apply replaces the policy list. Policies whose id and revision are
// unchanged keep their schedule and validation state; new or changed ones
// run soon (within FirstRunSplay). Facts are evaluated at once.
func (s *Scheduler) Apply(ps *posturev1.PolicySet) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clk.Now()
	same := s.version == ps.GetVersion()
	s.version = ps.GetVersion()
	s.interval = s.opts.DefaultInterval
	if d := ps.GetInterval().AsDuration(); ps.GetInterval() != nil && d > 0 {
		s.interval = d
	}
	next := make(map[string]*policyState, len(ps.GetPolicies()))
	for _, p := range ps.GetPolicies() {
		if old, ok := s.policies[p.GetId()]; ok && old.p.GetRevision() == p.GetRevision() && old.p.GetQuery() == p.GetQuery() {
			next[p.GetId()] = old
			continue
		}
		next[p.GetId()] = &policyState{p: p, next: now.Add(s.randDur(s.opts.FirstRunSplay))}
	}
	s.policies = next
	s.facts = ps.GetFacts()
	s.factsNext = time.Time{}
	if len(s.facts) > 0 {
		s.factsNext = now
	}
	lvl := slog.LevelInfo
	if same {
		lvl = slog.LevelDebug // the hub answers every Hello with the set
	}
	s.log.Log(context.Background(), lvl, "policy set applied", "version", s.version, "policies", len(next), "facts", len(s.facts), "interval", s.interval)
	s.wake()
}

// Recheck runs the named policies (or all) at once, re-validating them.
func (s *Scheduler) Recheck(ids []string, all bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clk.Now()
	mark := func(st *policyState) {
		st.next = now
		st.validated = false
		st.parked = false
	}
	if all {
		for _, st := range s.policies {
			mark(st)
		}
		if len(s.facts) > 0 {
			s.factsNext = now
		}
	}
	for _, id := range ids {
		if st, ok := s.policies[id]; ok {
			mark(st)
		} else {
			s.log.Warn("recheck for unknown policy ignored", "policy", id)
		}
	}
	s.wake()
}

// Clear drops every policy and fact query (the host was disabled).
func (s *Scheduler) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.policies = map[string]*policyState{}
	s.facts = nil
	s.factsNext = time.Time{}
	s.version = ""
	s.wake()
}

func (s *Scheduler) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// randDur returns a uniform duration in [0, d).
func (s *Scheduler) randDur(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(s.rnd.Int64N(int64(d)))
}

// nextAfterRun is the next due time: one interval on, moved by up to
// ±Splay of the interval.
func (s *Scheduler) nextAfterRun(now time.Time) time.Time {
	j := time.Duration(float64(s.interval) * s.opts.Splay)
	return now.Add(s.interval - j + s.randDur(2*j+1))
}

type job struct {
	p         *posturev1.AgentPolicy
	validated bool
}

// Run evaluates due policies until ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	for {
		jobs, runFacts, wait := s.due()
		if len(jobs) > 0 {
			s.runPolicies(ctx, jobs)
		}
		if runFacts {
			s.runFacts(ctx)
		}
		if len(jobs) > 0 || runFacts {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			continue
		}
		var timer <-chan time.Time
		if wait >= 0 {
			timer = s.clk.After(wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.kick:
		case <-timer:
		}
	}
}

// due returns the policies to run now, whether facts are due, and how long
// to wait otherwise (-1: nothing scheduled).
func (s *Scheduler) due() ([]job, bool, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clk.Now()
	var jobs []job
	var earliest time.Time
	for _, st := range s.policies {
		if st.parked {
			continue
		}
		if !st.next.After(now) {
			jobs = append(jobs, job{p: st.p, validated: st.validated})
			continue
		}
		if earliest.IsZero() || st.next.Before(earliest) {
			earliest = st.next
		}
	}
	sort.Slice(jobs, func(i, j int) bool { return jobs[i].p.GetId() < jobs[j].p.GetId() })
	runFacts := !s.factsHeld && !s.factsNext.IsZero() && !s.factsNext.After(now)
	if !s.factsHeld && !s.factsNext.IsZero() && s.factsNext.After(now) && (earliest.IsZero() || s.factsNext.Before(earliest)) {
		earliest = s.factsNext
	}
	if earliest.IsZero() {
		return jobs, runFacts, -1
	}
	return jobs, runFacts, earliest.Sub(now)
}

// outcome of one policy run, applied to the state under the lock.
type outcome struct {
	result      *posturev1.PolicyResult // nil: nothing to report
	validated   bool
	parked      bool
	unavailable bool
}

func (s *Scheduler) runPolicies(ctx context.Context, jobs []job) {
	var results []*posturev1.PolicyResult
	for _, j := range jobs {
		if ctx.Err() != nil {
			return
		}
		o := s.evaluate(ctx, j)
		s.mu.Lock()
		now := s.clk.Now()
		st, ok := s.policies[j.p.GetId()]
		if ok && st.p.GetRevision() == j.p.GetRevision() && st.p.GetQuery() == j.p.GetQuery() {
			st.validated = o.validated
			st.parked = o.parked
			if o.unavailable {
				st.next = now.Add(s.opts.RetryUnavailable)
			} else {
				st.next = s.nextAfterRun(now)
			}
		} else {
			o.result = nil // replaced while running: the new revision runs on its own
		}
		s.mu.Unlock()
		if o.result != nil {
			results = append(results, o.result)
		}
	}
	if len(results) > 0 {
		s.sink.Results(ctx, results)
	}
}

func (s *Scheduler) evaluate(ctx context.Context, j job) outcome {
	p := j.p
	log := s.log.With("policy", p.GetId(), "revision", p.GetRevision())
	start := s.clk.Now()
	result := func(st posturev1.ResultStatus, msg string) *posturev1.PolicyResult {
		return &posturev1.PolicyResult{
			PolicyId:    p.GetId(),
			Revision:    p.GetRevision(),
			Status:      st,
			Error:       msg,
			EvaluatedAt: timestamppb.New(start),
			Duration:    durationpb.New(s.clk.Now().Sub(start)),
		}
	}
	qctx, cancel := context.WithTimeout(ctx, s.opts.QueryTimeout)
	defer cancel()
	if !j.validated {
		_, err := s.q.QueryColumns(qctx, p.GetQuery())
		var qe *osq.QueryError
		switch {
		case err == nil:
		case errors.As(err, &qe):
			log.Warn("policy cannot run on this host; reported once", "err", qe.Message)
			return outcome{result: result(posturev1.ResultStatus_RESULT_STATUS_ERROR, qe.Message), validated: true, parked: true}
		case ctx.Err() != nil:
			return outcome{unavailable: true}
		case errors.Is(err, context.DeadlineExceeded):
			return outcome{result: result(posturev1.ResultStatus_RESULT_STATUS_ERROR, fmt.Sprintf("query validation timed out after %s", s.opts.QueryTimeout))}
		default:
			// Logged at debug: the outage itself is reported once by main.
			log.Debug("osquery unavailable; will retry", "err", err)
			return outcome{unavailable: true}
		}
	}
	rows, err := s.q.Query(qctx, p.GetQuery())
	var qe *osq.QueryError
	switch {
	case err == nil && len(rows) > 0:
		log.Debug("policy passed", "rows", len(rows))
		return outcome{result: result(posturev1.ResultStatus_RESULT_STATUS_PASS, ""), validated: true}
	case err == nil:
		log.Debug("policy failed")
		return outcome{result: result(posturev1.ResultStatus_RESULT_STATUS_FAIL, ""), validated: true}
	case errors.As(err, &qe):
		log.Warn("policy query error", "err", qe.Message)
		return outcome{result: result(posturev1.ResultStatus_RESULT_STATUS_ERROR, qe.Message), validated: true}
	case ctx.Err() != nil:
		return outcome{unavailable: true, validated: true}
	case errors.Is(err, context.DeadlineExceeded):
		log.Warn("policy query timed out", "timeout", s.opts.QueryTimeout)
		return outcome{result: result(posturev1.ResultStatus_RESULT_STATUS_ERROR, fmt.Sprintf("query timed out after %s", s.opts.QueryTimeout)), validated: true}
	default:
		log.Debug("osquery unavailable; will retry", "err", err)
		return outcome{unavailable: true, validated: true}
	}
}

func (s *Scheduler) runFacts(ctx context.Context) {
	s.mu.Lock()
	facts := s.facts
	s.mu.Unlock()
	values := map[string]string{}
	unavailable := false
	for _, f := range facts {
		v, err := s.fact(ctx, f.GetQuery())
		var qe *osq.QueryError
		switch {
		case err == nil:
			values[f.GetName()] = v
		case errors.As(err, &qe):
			// A fact osquery cannot answer here (e.g. a Windows table on
			// macOS, or a table not registered yet) says nothing about the
			// value: it is left out, never reported as empty.
			s.log.Debug("fact query refused", "fact", f.GetName(), "err", qe.Message)
		default:
			s.log.Debug("fact query failed; will retry", "fact", f.GetName(), "err", err)
			unavailable = true
		}
	}
	s.mu.Lock()
	now := s.clk.Now()
	if len(s.facts) > 0 {
		if unavailable {
			s.factsNext = now.Add(s.opts.RetryUnavailable)
		} else {
			s.factsNext = s.nextAfterRun(now)
		}
	}
	s.mu.Unlock()
	if !unavailable && ctx.Err() == nil && len(values) > 0 {
		s.sink.Facts(ctx, values)
	}
}

// fact returns the first column of the first row ("" for no row). Rows come
// back as maps, so the column order is taken from getQueryColumns.
func (s *Scheduler) fact(ctx context.Context, sql string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.QueryTimeout)
	defer cancel()
	cols, err := s.q.QueryColumns(ctx, sql)
	if err != nil {
		return "", err
	}
	rows, err := s.q.Query(ctx, sql)
	if err != nil {
		return "", err
	}
	if len(rows) == 0 {
		return "", nil
	}
	if len(cols) > 0 {
		if v, ok := rows[0][cols[0]]; ok {
			return v, nil
		}
	}
	if len(rows[0]) == 1 {
		for _, v := range rows[0] {
			return v, nil
		}
	}
	return "", fmt.Errorf("fact query: cannot tell the first column of %d columns", len(rows[0]))
}
