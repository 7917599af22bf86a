package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/posture-dev/posture/hub/compliance"
)

// ReconcilerConfig configures a Reconciler. Devices, Outbox and Sinks are
// required.
type ReconcilerConfig struct {
	Devices DeviceStates
	Outbox  Enqueuer
	Sinks   SinkResolver
	Clock   compliance.Clock // default compliance.RealClock
	Logger  *slog.Logger     // default slog.Default()
	// Interval between passes; default 1h. A pass reads every synced device
	// once, so with 100k devices and 20 per read it costs 5,000 reads.
	Interval time.Duration
	PageSize int // devices per Read; default 20
	// OnEnqueue is called after a pass enqueued repairs (e.g. Worker.Notify).
	OnEnqueue func()
	// OnDeviceInfo, when set, gets what the sink's directory says about
	// each device read (sinks that are InfoReaders), to check it against
	// the host's facts.
	OnDeviceInfo func(ctx context.Context, d DeviceState, info DeviceInfo)
}

// Reconciler reads back what sinks hold and enqueues repairs for drift (an
// attribute edited or cleared by someone else, a write lost to a dead
// letter). Repairs are Force + LowPriority changes.
type Reconciler struct {
	cfg ReconcilerConfig
}

// ReconcileReport counts one pass, in devices.
type ReconcileReport struct {
	Checked  int // read back from a sink
	Drifted  int // held something else: repair enqueued
	NotFound int // the sink does not know the device
	Skipped  int // pending work, no desired state, or the sink cannot read
	Errors   int // reads or enqueues that failed
}

// NewReconciler validates cfg and applies defaults.
func NewReconciler(cfg ReconcilerConfig) (*Reconciler, error) {
	if cfg.Devices == nil || cfg.Outbox == nil || cfg.Sinks == nil {
		return nil, errors.New("sync: reconciler needs device states, an outbox and a sink resolver")
	}
	if cfg.Clock == nil {
		cfg.Clock = compliance.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Hour
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 20
	}
	cfg.Logger = cfg.Logger.With("component", "sync-reconcile")
	return &Reconciler{cfg: cfg}, nil
}

// Run does a pass every Interval (the first one after one Interval) until
// ctx ends; it returns ctx.Err().
func (r *Reconciler) Run(ctx context.Context) error {
	for {
		t := r.cfg.Clock.NewTimer(r.cfg.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C():
		}
		rep, err := r.RunOnce(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			r.cfg.Logger.ErrorContext(ctx, "reconcile pass incomplete", "err", err)
		}
		r.cfg.Logger.InfoContext(ctx, "reconcile pass", "checked", rep.Checked, "drifted", rep.Drifted,
			"not_found", rep.NotFound, "skipped", rep.Skipped, "errors", rep.Errors)
	}
}

// RunOnce does one pass over every synced device. It keeps going past
// failed reads and returns the first error with the report.
func (r *Reconciler) RunOnce(ctx context.Context) (ReconcileReport, error) {
	var rep ReconcileReport
	var firstErr error
	note := func(err error) {
		rep.Errors++
		if firstErr == nil {
			firstErr = err
		}
	}
	lctx := WithLowPriority(ctx)
	readers := map[string]Reader{}
	var after DeviceKey
	for {
		page, err := r.cfg.Devices.DeviceStates(ctx, after, r.cfg.PageSize)
		if err != nil {
			note(fmt.Errorf("list device states: %w", err))
			break
		}
		if len(page) == 0 {
			break
		}
		after = page[len(page)-1].Key
		// A page may span integrations: read each run separately.
		for start := 0; start < len(page); {
			end := start
			for end < len(page) && page[end].Key.IntegrationID == page[start].Key.IntegrationID {
				end++
			}
			r.reconcile(ctx, lctx, page[start:end], readers, &rep, note)
			start = end
		}
		if len(page) < r.cfg.PageSize {
			break
		}
	}
	if rep.Drifted > 0 && r.cfg.OnEnqueue != nil {
		r.cfg.OnEnqueue()
	}
	return rep, firstErr
}

func (r *Reconciler) reconcile(ctx, lctx context.Context, devs []DeviceState, readers map[string]Reader, rep *ReconcileReport, note func(error)) {
	integ := devs[0].Key.IntegrationID
	rd, ok := readers[integ]
	if !ok {
		sink, err := r.cfg.Sinks(ctx, integ)
		switch {
		case err != nil && !errors.Is(err, ErrUnknownIntegration):
			note(fmt.Errorf("integration %s: %w", integ, err))
		case err == nil && sink != nil:
			rd, _ = sink.(Reader)
		}
		readers[integ] = rd
	}
	var ids []string
	var check []DeviceState
	for _, d := range devs {
		if rd == nil || d.Pending || d.Desired == "" {
			rep.Skipped++
			continue
		}
		ids = append(ids, d.Key.DeviceID)
		check = append(check, d)
	}
	if len(ids) == 0 {
		return
	}
	held, err := rd.Read(lctx, ids)
	if err != nil {
		note(fmt.Errorf("read %d devices of integration %s: %w", len(ids), integ, err))
		return
	}
	ir, _ := rd.(InfoReader)
	for _, d := range check {
		rep.Checked++
		v, found := held[d.Key.DeviceID]
		if found && ir != nil && r.cfg.OnDeviceInfo != nil {
			if info, ok := ir.DeviceInfo(d.Key.DeviceID); ok {
				r.cfg.OnDeviceInfo(ctx, d, info)
			}
		}
		switch {
		case !found:
			rep.NotFound++
			continue
		case v == d.Desired:
			continue
		}
		created := d.DesiredAt
		if created.IsZero() {
			created = r.cfg.Clock.Now()
		}
		// CreatedAt = when the desired state was decided, so a verdict change
		// enqueued meanwhile is newer and wins the coalescing.
		c := Change{IntegrationID: integ, TenantID: d.TenantID, DeviceID: d.Key.DeviceID, HostID: d.HostID,
			Desired: d.Desired, Verdict: "reconcile", CreatedAt: created, Force: true, LowPriority: true}
		if _, err := r.cfg.Outbox.Enqueue(ctx, c); err != nil {
			note(fmt.Errorf("enqueue repair for %s: %w", d.Key.DeviceID, err))
			continue
		}
		rep.Drifted++
		r.cfg.Logger.InfoContext(ctx, "drift repaired", "integration", integ, "device", d.Key.DeviceID,
			"held", v, "desired", d.Desired)
	}
}
