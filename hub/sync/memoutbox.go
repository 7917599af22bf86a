package sync

import (
	"context"
	"errors"
	"fmt"
	"sort"
	gosync "sync"
	"time"
)

// Row states in MemOutbox (and the suggested SQL schema).
const (
	RowPending = "pending"
	RowDone    = "done"
	RowDead    = "dead"
)

// Row is an outbox row with its delivery state, as MemOutbox keeps it.
type Row struct {
	Change
	State      string
	NextAt     time.Time
	Code       string // last error code (pending) or dead-letter code
	Error      string
	DeadReason string
	DeadAt     time.Time
}

type memDevice struct {
	key        DeviceKey
	tenantID   string
	hostID     string
	leaseOwner string
	leaseUntil time.Time
	written    string
	writtenAt  time.Time
	desired    string
	desiredAt  time.Time
	pending    []int64
}

// MemOutbox is an in-memory Outbox, Enqueuer and DeviceStates with the
// semantics documented on Outbox. It is safe for concurrent use and is the
// reference the store backends mirror.
type MemOutbox struct {
	mu      gosync.Mutex
	nextID  int64
	rows    map[int64]*Row
	devices map[DeviceKey]*memDevice
}

// NewMemOutbox returns an empty outbox.
func NewMemOutbox() *MemOutbox {
	return &MemOutbox{rows: make(map[int64]*Row), devices: make(map[DeviceKey]*memDevice)}
}

// Enqueue adds a pending row due at once. CreatedAt must be set.
func (m *MemOutbox) Enqueue(ctx context.Context, c Change) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := validateChange(c); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextID++
	c.OutboxID = m.nextID
	c.Attempts = 0
	m.rows[c.OutboxID] = &Row{Change: c, State: RowPending, NextAt: c.CreatedAt}
	d := m.devices[c.Key()]
	if d == nil {
		d = &memDevice{key: c.Key()}
		m.devices[c.Key()] = d
	}
	d.tenantID, d.hostID = c.TenantID, c.HostID
	if !c.Force && c.Kind == KindAttribute && !c.CreatedAt.Before(d.desiredAt) {
		d.desired, d.desiredAt = c.Desired, c.CreatedAt
	}
	d.pending = append(d.pending, c.OutboxID)
	return c.OutboxID, nil
}

func validateChange(c Change) error {
	switch {
	case c.IntegrationID == "":
		return errors.New("outbox: change without integration id")
	case c.DeviceID == "":
		return errors.New("outbox: change without device id")
	case c.Desired != DesiredCompliant && c.Desired != DesiredNoncompliant:
		return fmt.Errorf("outbox: invalid desired state %q", c.Desired)
	case c.CreatedAt.IsZero():
		return errors.New("outbox: change without created-at")
	}
	return nil
}

// Claim implements Outbox.
func (m *MemOutbox) Claim(ctx context.Context, owner string, now time.Time, maxDevices int, lease time.Duration) ([]DeviceWork, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if owner == "" || maxDevices <= 0 || lease <= 0 {
		return nil, errors.New("outbox: claim needs an owner, a positive limit and a lease")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	type cand struct {
		d   *memDevice
		due time.Time
	}
	var cands []cand
	for _, d := range m.devices {
		if len(d.pending) == 0 || (d.leaseOwner != "" && d.leaseUntil.After(now)) {
			continue
		}
		var due time.Time
		for _, id := range d.pending {
			r := m.rows[id]
			if !r.NextAt.After(now) && (due.IsZero() || r.NextAt.Before(due)) {
				due = r.NextAt
			}
		}
		if !due.IsZero() {
			cands = append(cands, cand{d, due})
		}
	}
	sort.Slice(cands, func(i, j int) bool {
		if !cands[i].due.Equal(cands[j].due) {
			return cands[i].due.Before(cands[j].due)
		}
		a, b := cands[i].d.key, cands[j].d.key
		return a.IntegrationID < b.IntegrationID || (a.IntegrationID == b.IntegrationID && a.DeviceID < b.DeviceID)
	})
	if len(cands) > maxDevices {
		cands = cands[:maxDevices]
	}
	out := make([]DeviceWork, 0, len(cands))
	for _, c := range cands {
		d := c.d
		d.leaseOwner, d.leaseUntil = owner, now.Add(lease)
		w := DeviceWork{Key: d.key, LastWritten: d.written, Desired: d.desired, LeaseUntil: d.leaseUntil}
		for _, id := range d.pending {
			w.Changes = append(w.Changes, m.rows[id].Change)
		}
		sortChanges(w.Changes)
		out = append(out, w)
	}
	return out, nil
}

func sortChanges(cs []Change) {
	sort.Slice(cs, func(i, j int) bool {
		if !cs[i].CreatedAt.Equal(cs[j].CreatedAt) {
			return cs[i].CreatedAt.Before(cs[j].CreatedAt)
		}
		return cs[i].OutboxID < cs[j].OutboxID
	})
}

// Settle implements Outbox.
func (m *MemOutbox) Settle(ctx context.Context, owner string, ss []Settlement) error {
	if err := ctx.Err(); err != nil {
		return err // like a database, a cancelled context changes nothing
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var lost []DeviceKey
	for _, s := range ss {
		d := m.devices[s.Key]
		if d == nil || d.leaseOwner != owner {
			lost = append(lost, s.Key)
			continue
		}
		for _, id := range s.Done {
			if r := m.ownRow(d, id); r != nil {
				r.State = RowDone
			}
		}
		for _, rr := range s.Retry {
			if r := m.ownRow(d, rr.ID); r != nil {
				r.Attempts, r.NextAt = rr.Attempts, rr.NextAt
				if rr.Code != "" || rr.Error != "" {
					r.Code, r.Error = rr.Code, rr.Error
				}
			}
		}
		for _, dr := range s.Dead {
			if r := m.ownRow(d, dr.ID); r != nil {
				r.State, r.Attempts, r.Code, r.DeadReason, r.DeadAt = RowDead, dr.Attempts, dr.Code, dr.Reason, dr.At
			}
		}
		if s.Written != "" {
			d.written, d.writtenAt = s.Written, s.WrittenAt
		}
		kept := d.pending[:0]
		for _, id := range d.pending {
			if m.rows[id].State == RowPending {
				kept = append(kept, id)
			}
		}
		d.pending = kept
		d.leaseOwner, d.leaseUntil = "", time.Time{}
	}
	if len(lost) > 0 {
		return fmt.Errorf("%w: %d device(s), first %s/%s", ErrLeaseLost, len(lost), lost[0].IntegrationID, lost[0].DeviceID)
	}
	return nil
}

// ownRow returns the pending row id of device d, or nil.
func (m *MemOutbox) ownRow(d *memDevice, id int64) *Row {
	r := m.rows[id]
	if r == nil || r.State != RowPending || r.Key() != d.key {
		return nil
	}
	return r
}

// DeviceStates implements DeviceStates.
func (m *MemOutbox) DeviceStates(_ context.Context, after DeviceKey, limit int) ([]DeviceState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []DeviceState
	for k, d := range m.devices {
		if k.IntegrationID < after.IntegrationID || (k.IntegrationID == after.IntegrationID && k.DeviceID <= after.DeviceID) {
			continue
		}
		out = append(out, DeviceState{Key: k, TenantID: d.tenantID, HostID: d.hostID, Desired: d.desired,
			DesiredAt: d.desiredAt, Written: d.written, Pending: len(d.pending) > 0})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Key, out[j].Key
		return a.IntegrationID < b.IntegrationID || (a.IntegrationID == b.IntegrationID && a.DeviceID < b.DeviceID)
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Rows returns copies of all rows in the given state ("" = all), by id.
func (m *MemOutbox) Rows(state string) []Row {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Row
	for _, r := range m.rows {
		if state == "" || r.State == state {
			out = append(out, *r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].OutboxID < out[j].OutboxID })
	return out
}

// Written returns the device's last written state.
func (m *MemOutbox) Written(k DeviceKey) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d := m.devices[k]; d != nil {
		return d.written
	}
	return ""
}

// PendingCount returns the number of pending rows.
func (m *MemOutbox) PendingCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, d := range m.devices {
		n += len(d.pending)
	}
	return n
}

// NextDue returns the earliest next-at of a pending row, or zero.
func (m *MemOutbox) NextDue() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	var t time.Time
	for _, d := range m.devices {
		for _, id := range d.pending {
			if r := m.rows[id]; t.IsZero() || r.NextAt.Before(t) {
				t = r.NextAt
			}
		}
	}
	return t
}
