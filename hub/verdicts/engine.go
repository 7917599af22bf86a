// Package verdicts keeps every host's compliance verdict current: after new
// results, after policy, team, exemption or identity changes, and when time
// alone changes it (a grace deadline passes, an exemption expires, a host
// goes stale). A verdict whose desired Entra state changes is saved together
// with the outbox rows that carry it to each integration, in one
// transaction guarded by a version compare-and-swap, so a transition is
// enqueued exactly once however many hub replicas see it.
package verdicts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/posture-dev/posture/hub/compliance"
	"github.com/posture-dev/posture/hub/store"
)

// Store is what the engine reads and writes.
type Store interface {
	GetHost(ctx context.Context, id string) (store.Host, error)
	ListHosts(ctx context.Context, f store.HostFilter) ([]store.Host, error)
	GetTeam(ctx context.Context, name string) (store.Team, error)
	ListPolicies(ctx context.Context) ([]store.Policy, error)
	PolicySetVersion(ctx context.Context) (string, error)
	LatestResults(ctx context.Context, hostID string) ([]store.Result, error)
	ListExemptions(ctx context.Context, hostID string) ([]store.Exemption, error)
	GetVerdict(ctx context.Context, hostID string) (store.Verdict, error)
	SaveVerdict(ctx context.Context, v store.Verdict, prevVersion int64, rows []store.OutboxRow) error
	DueVerdicts(ctx context.Context, now time.Time, limit int) ([]string, error)
	ListIntegrations(ctx context.Context) ([]store.Integration, error)
	HostsByEntraDeviceID(ctx context.Context, deviceID string) ([]store.Host, error)
	GetHostReporting(ctx context.Context, hostID string) (store.HostReporting, error)
}

// DefaultSettings apply to a team that has none stored: conditional access
// on (blocking is the product's point), nothing allowed, errors not counted.
var DefaultSettings = store.TeamSettings{ConditionalAccess: true, StaleAfter: compliance.DefaultStaleAfter}

// Config wires an Engine.
type Config struct {
	Store  Store
	Logger *slog.Logger
	Now    func() time.Time
	// Enqueued is called after a save that enqueued outbox rows (e.g. to
	// wake the sync worker).
	Enqueued func()
	// Workers evaluating notified hosts (default 4).
	Workers int
	// DuePoll is how often due time-driven transitions are looked for
	// (default 1 s).
	DuePoll time.Duration
	// CacheTTL bounds how stale cached policies and integrations may be
	// when another replica changed them (default 1 s).
	CacheTTL time.Duration
	// RecheckEvery re-evaluates a host whose batches change nothing at
	// most this often (default 1 min), which is what notices a stale host
	// reporting again.
	RecheckEvery time.Duration
	// Metrics, if set, gets the engine's collectors.
	Metrics prometheus.Registerer
	// Changed, if set, is called after a saved verdict changed state (e.g.
	// to tell the host its new verdict).
	Changed func(hostID string, v store.Verdict)
	// Scope, if set, further limits which hosts an integration writes
	// (Entra group scoping); hosts it refuses get no outbox row.
	Scope func(in store.Integration, h store.Host) bool
}

// Engine evaluates and saves verdicts.
type Engine struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	pending  map[string]bool // host id → force
	inflight int
	wake     chan struct{}

	// checked remembers when a host without status changes was last
	// re-evaluated, so a host recovering from staleness is noticed within
	// RecheckEvery without an evaluation per unchanged batch.
	checked map[string]time.Time
	// silent holds hosts last judged silent or unhealthy: their next batch
	// is evaluated at once, so a host that reports again recovers at once.
	silent map[string]bool

	evaluations prometheus.Counter
	changes     *prometheus.CounterVec

	cacheMu      sync.Mutex
	policies     []store.Policy
	policiesVer  string
	integrations []store.Integration
	cachedAt     time.Time
}

// New returns an Engine.
func New(cfg Config) *Engine {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.DuePoll <= 0 {
		cfg.DuePoll = time.Second
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = time.Second
	}
	if cfg.RecheckEvery <= 0 {
		cfg.RecheckEvery = time.Minute
	}
	if cfg.Enqueued == nil {
		cfg.Enqueued = func() {}
	}
	e := &Engine{cfg: cfg, log: cfg.Logger, pending: map[string]bool{}, checked: map[string]time.Time{}, silent: map[string]bool{}, wake: make(chan struct{}, 1)}
	e.evaluations = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "posture_verdict_evaluations_total", Help: "Host verdict evaluations.",
	})
	e.changes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "posture_verdict_changes_total", Help: "Saved verdict state changes, by new state.",
	}, []string{"state"})
	if cfg.Metrics != nil {
		cfg.Metrics.MustRegister(e.evaluations, e.changes, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "posture_verdicts_pending", Help: "Hosts queued for or in evaluation.",
		}, func() float64 { return float64(e.Pending()) }))
	}
	return e
}

// Notify queues a host for evaluation. force re-enqueues its desired state
// even when the verdict did not change (its device id changed, or an
// integration was added).
func (e *Engine) Notify(hostID string, force bool) {
	e.mu.Lock()
	e.pending[hostID] = e.pending[hostID] || force
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// NotifyDevice queues every host naming the Entra device (after a host
// stopped naming it, was revoked or deleted: a conflict may have ended).
func (e *Engine) NotifyDevice(ctx context.Context, deviceID string) error {
	if deviceID == "" {
		return nil
	}
	hs, err := e.cfg.Store.HostsByEntraDeviceID(ctx, deviceID)
	if err != nil {
		return fmt.Errorf("hosts of device %s: %w", deviceID, err)
	}
	for _, h := range hs {
		e.Notify(h.ID, true)
	}
	return nil
}

// Observe is told about every committed result batch of a host.
func (e *Engine) Observe(hostID string, statusChanged bool) {
	now := e.cfg.Now()
	e.mu.Lock()
	due := statusChanged || e.silent[hostID] || now.Sub(e.checked[hostID]) >= e.cfg.RecheckEvery
	if due {
		e.checked[hostID] = now
	}
	e.mu.Unlock()
	if due {
		e.Notify(hostID, false)
	}
}

// Invalidate drops cached policies and integrations (call after changing them).
func (e *Engine) Invalidate() {
	e.cacheMu.Lock()
	e.cachedAt = time.Time{}
	e.cacheMu.Unlock()
}

// NotifyAll queues every host (after a policy, team or integration change).
func (e *Engine) NotifyAll(ctx context.Context, force bool) error {
	e.Invalidate()
	hosts, err := e.cfg.Store.ListHosts(ctx, store.HostFilter{})
	if err != nil {
		return fmt.Errorf("list hosts: %w", err)
	}
	for _, h := range hosts {
		e.Notify(h.ID, force)
	}
	return nil
}

// Run evaluates notified hosts and due transitions until ctx ends. It
// starts with a sweep of every host: verdicts may have gone stale while no
// hub was running.
func (e *Engine) Run(ctx context.Context) error {
	if err := e.NotifyAll(ctx, false); err != nil {
		e.log.Warn("initial verdict sweep", "err", err)
	}
	var wg sync.WaitGroup
	for range e.cfg.Workers {
		wg.Add(1)
		go func() { defer wg.Done(); e.work(ctx) }()
	}
	t := time.NewTicker(e.cfg.DuePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-t.C:
			ids, err := e.cfg.Store.DueVerdicts(ctx, e.cfg.Now(), 1000)
			if err != nil {
				if ctx.Err() == nil {
					e.log.Warn("due verdicts", "err", err)
				}
				continue
			}
			for _, id := range ids {
				e.Notify(id, false)
			}
		}
	}
}

func (e *Engine) next() (string, bool, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for id, force := range e.pending {
		delete(e.pending, id)
		e.inflight++
		return id, force, true
	}
	return "", false, false
}

// Pending is the number of hosts queued or being evaluated.
func (e *Engine) Pending() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.pending) + e.inflight
}

func (e *Engine) work(ctx context.Context) {
	for {
		id, force, ok := e.next()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-e.wake:
				continue
			}
		}
		if _, err := e.Evaluate(ctx, id, force); err != nil && ctx.Err() == nil {
			e.log.Error("evaluate verdict", "host", id, "err", err)
		}
		e.mu.Lock()
		e.inflight--
		e.mu.Unlock()
		// Keep waking siblings while work remains.
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
}

func (e *Engine) cached(ctx context.Context) ([]store.Policy, []store.Integration, error) {
	e.cacheMu.Lock()
	defer e.cacheMu.Unlock()
	now := time.Now()
	if now.Sub(e.cachedAt) < e.cfg.CacheTTL {
		return e.policies, e.integrations, nil
	}
	ver, err := e.cfg.Store.PolicySetVersion(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("policy set version: %w", err)
	}
	if ver != e.policiesVer || e.policies == nil {
		ps, err := e.cfg.Store.ListPolicies(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("list policies: %w", err)
		}
		e.policies, e.policiesVer = ps, ver
	}
	ins, err := e.cfg.Store.ListIntegrations(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("list integrations: %w", err)
	}
	e.integrations, e.cachedAt = ins, now
	return e.policies, e.integrations, nil
}

// Inputs loads everything a host's verdict depends on.
func (e *Engine) Inputs(ctx context.Context, h store.Host) (compliance.Input, error) {
	policies, _, err := e.cached(ctx)
	if err != nil {
		return compliance.Input{}, err
	}
	settings := DefaultSettings
	team, err := e.cfg.Store.GetTeam(ctx, h.Team)
	switch {
	case err == nil:
		settings = team.Settings
	case !errors.Is(err, store.ErrNotFound):
		return compliance.Input{}, fmt.Errorf("team %s: %w", h.Team, err)
	}
	results, err := e.cfg.Store.LatestResults(ctx, h.ID)
	if err != nil {
		return compliance.Input{}, fmt.Errorf("results: %w", err)
	}
	exs, err := e.cfg.Store.ListExemptions(ctx, h.ID)
	if err != nil {
		return compliance.Input{}, fmt.Errorf("exemptions: %w", err)
	}
	claimants, err := e.cfg.Store.HostsByEntraDeviceID(ctx, h.EffectiveEntraDeviceID())
	if err != nil {
		return compliance.Input{}, fmt.Errorf("device claimants: %w", err)
	}
	rep, err := e.cfg.Store.GetHostReporting(ctx, h.ID)
	if err != nil {
		return compliance.Input{}, fmt.Errorf("reporting: %w", err)
	}
	in := compliance.Input{Host: h, Settings: settings, Policies: policies, Results: results, Reporting: rep, Now: e.cfg.Now(),
		Device: compliance.ResolveDevice(h, claimants)}
	for _, x := range exs {
		in.Exemptions = append(in.Exemptions, compliance.Exemption{PolicyID: x.PolicyID, ExpiresAt: x.ExpiresAt, Reason: x.Reason})
	}
	return in, nil
}

// maxRaces bounds retries when replicas race on one host's verdict.
const maxRaces = 5

// Evaluate recomputes one host's verdict and saves it if anything changed.
// It returns the saved (or unchanged) verdict.
func (e *Engine) Evaluate(ctx context.Context, hostID string, force bool) (store.Verdict, error) {
	for range maxRaces {
		v, err := e.evaluateOnce(ctx, hostID, force)
		if errors.Is(err, store.ErrConflict) {
			continue // another replica saved first: recompute from its verdict
		}
		return v, err
	}
	return store.Verdict{}, fmt.Errorf("host %s: verdict kept changing under %d attempts", hostID, maxRaces)
}

func (e *Engine) evaluateOnce(ctx context.Context, hostID string, force bool) (store.Verdict, error) {
	e.evaluations.Inc()
	// The verdict (and its version) is read before every input: a verdict
	// another replica saves from newer inputs after this point fails this
	// save's version check. Read after the inputs, it would let a verdict
	// from stale results overwrite the newer one.
	prev, err := e.cfg.Store.GetVerdict(ctx, hostID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.Verdict{}, fmt.Errorf("verdict: %w", err)
	}
	h, err := e.cfg.Store.GetHost(ctx, hostID)
	if errors.Is(err, store.ErrNotFound) {
		return store.Verdict{}, nil // deleted meanwhile
	}
	if err != nil {
		return store.Verdict{}, fmt.Errorf("host: %w", err)
	}
	in, err := e.Inputs(ctx, h)
	if err != nil {
		return store.Verdict{}, err
	}
	cv := compliance.Evaluate(in)
	e.mu.Lock()
	if cv.Cause == compliance.CauseSilent || cv.Cause == compliance.CauseUnhealthy {
		e.silent[hostID] = true
	} else {
		delete(e.silent, hostID)
	}
	e.mu.Unlock()
	reasons, err := json.Marshal(cv.Reasons)
	if err != nil {
		return store.Verdict{}, fmt.Errorf("encode reasons: %w", err)
	}
	nv := store.Verdict{
		HostID: hostID, State: string(cv.State), Cause: cv.Cause, Desired: compliance.Desired(cv),
		Reasons: reasons, UpdatedAt: store.StoredTime(in.Now), Version: prev.Version,
	}
	if !cv.NextTransition.IsZero() {
		// Rounded up to the store's precision, so the comparison below sees
		// what the store will hold, and a wake-up is never early.
		t := store.StoredTime(cv.NextTransition)
		if t.Before(cv.NextTransition) {
			t = t.Add(store.TimePrecision)
		}
		nv.NextTransition = &t
	}
	same := prev.Version > 0 && prev.State == nv.State && prev.Cause == nv.Cause && prev.Desired == nv.Desired &&
		bytes.Equal(prev.Reasons, nv.Reasons) && (sameTime(prev.NextTransition, nv.NextTransition) ||
		earlierWake(prev.NextTransition, nv.NextTransition, in.Now))
	if same && !force {
		return prev, nil
	}
	// The other hosts naming this device may change with this one (a
	// conflict starts or ends); they re-check. Only on a change or a forced
	// evaluation, so two claimants settle instead of waking each other
	// forever.
	for _, other := range in.Device.Others {
		e.Notify(other, false)
	}
	var rows []store.OutboxRow
	if nv.Desired != "" && (nv.Desired != prev.Desired || force) && in.Device.Writes() {
		rows, err = e.rowsFor(ctx, h, nv, in.Now)
		if err != nil {
			return store.Verdict{}, err
		}
	}
	if prev.State != string(compliance.Noncompliant) && nv.State == string(compliance.Noncompliant) {
		// Saved with the verdict under its version check, so one
		// transition enqueues one revocation however many replicas see it.
		rr, err := e.revokeRowsFor(ctx, h, in.Settings, cv, in.Now)
		if err != nil {
			return store.Verdict{}, err
		}
		rows = append(rows, rr...)
	}
	if err := e.cfg.Store.SaveVerdict(ctx, nv, prev.Version, rows); err != nil {
		return store.Verdict{}, fmt.Errorf("save verdict: %w", err)
	}
	nv.Version = prev.Version + 1
	if prev.State != nv.State {
		e.changes.WithLabelValues(nv.State).Inc()
		e.log.Info("verdict changed", "host", hostID, "hostname", h.Hostname, "from", prev.State, "to", nv.State,
			"cause", nv.Cause, "desired", nv.Desired, "writes", len(rows))
		if e.cfg.Changed != nil {
			e.cfg.Changed(hostID, nv)
		}
	}
	if len(rows) > 0 {
		e.cfg.Enqueued()
	}
	return nv, nil
}

// rowsFor is one outbox row per integration that covers the host's team;
// none for a host without an Entra device id (it is listed as unmapped) or
// whose device an admin gave to another host (the caller checks that).
func (e *Engine) rowsFor(ctx context.Context, h store.Host, v store.Verdict, now time.Time) ([]store.OutboxRow, error) {
	device := h.EffectiveEntraDeviceID()
	if device == "" {
		return nil, nil
	}
	_, ins, err := e.cached(ctx)
	if err != nil {
		return nil, err
	}
	var rows []store.OutboxRow
	for _, in := range ins {
		if !covers(in, h.Team) || (e.cfg.Scope != nil && !e.cfg.Scope(in, h)) {
			continue
		}
		rows = append(rows, store.OutboxRow{
			IntegrationID: in.ID, TenantID: in.TenantID, DeviceID: device, HostID: h.ID,
			Desired: v.Desired, Verdict: v.State, CreatedAt: now,
		})
	}
	return rows, nil
}

// severityRank orders policy severities; an unknown one counts as critical,
// as the compliance engine does.
var severityRank = map[string]int{"low": 1, "medium": 2, "high": 3, "critical": 4}

func rank(sev string) int {
	if r, ok := severityRank[sev]; ok {
		return r
	}
	return severityRank["critical"]
}

// DefaultRevokeMinSeverity applies when a team enables revoke_sessions
// without a minimum severity.
const DefaultRevokeMinSeverity = "high"

// revokeRowsFor is one session revocation per integration covering the
// host, when its team opted in and a blocking policy at or above the
// team's minimum severity caused the transition to NONCOMPLIANT. The user
// is the host's effective UPN (admin override, else the fact); a host without one (or without a device id, which
// the outbox keys on) gets none.
func (e *Engine) revokeRowsFor(ctx context.Context, h store.Host, set store.TeamSettings, cv compliance.Verdict, now time.Time) ([]store.OutboxRow, error) {
	device, upn := h.EffectiveEntraDeviceID(), strings.TrimSpace(h.EffectiveUserPrincipalName())
	if !set.RevokeSessions || device == "" || upn == "" {
		return nil, nil
	}
	min := set.RevokeSessionsMinSeverity
	if min == "" {
		min = DefaultRevokeMinSeverity
	}
	qualifies := false
	for _, r := range cv.Blocking() {
		if rank(r.Severity) >= rank(min) {
			qualifies = true
			break
		}
	}
	if !qualifies {
		return nil, nil
	}
	_, ins, err := e.cached(ctx)
	if err != nil {
		return nil, err
	}
	var rows []store.OutboxRow
	for _, in := range ins {
		if !covers(in, h.Team) {
			continue
		}
		rows = append(rows, store.OutboxRow{
			IntegrationID: in.ID, TenantID: in.TenantID, DeviceID: device, HostID: h.ID,
			Desired: compliance.DesiredNoncompliant, Verdict: string(compliance.Noncompliant), CreatedAt: now,
			Kind: store.OutboxRevokeSessions, Subject: upn,
		})
	}
	if len(rows) > 0 {
		e.log.Info("revoking sign-in sessions", "host", h.ID, "user", upn, "integrations", len(rows))
	}
	return rows, nil
}

func covers(in store.Integration, team string) bool {
	if len(in.Teams) == 0 {
		return true
	}
	for _, t := range in.Teams {
		if t == team {
			return true
		}
	}
	return false
}

// earlierWake: the stored wake-up is still ahead and no later than the new
// one. Waking early only re-evaluates, so the verdict need not be saved each
// time a report pushes the silence deadline on (every batch would write).
func earlierWake(stored, computed *time.Time, now time.Time) bool {
	return stored != nil && computed != nil && stored.After(now) && !stored.After(*computed)
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

// DecodeReasons reads a stored verdict's reasons.
func DecodeReasons(v store.Verdict) ([]compliance.Reason, error) {
	if len(v.Reasons) == 0 {
		return nil, nil
	}
	var rs []compliance.Reason
	if err := json.Unmarshal(v.Reasons, &rs); err != nil {
		return nil, fmt.Errorf("decode verdict reasons: %w", err)
	}
	return rs, nil
}
