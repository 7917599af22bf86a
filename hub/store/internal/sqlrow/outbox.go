package sqlrow

import (
	"fmt"
	"time"

	"github.com/posture-dev/posture/hub/store"
	hubsync "github.com/posture-dev/posture/hub/sync"
)

// ChangeRow is the outbox row of a change enqueued directly (reconcile).
func ChangeRow(c hubsync.Change) store.OutboxRow {
	return store.OutboxRow{IntegrationID: c.IntegrationID, TenantID: c.TenantID, DeviceID: c.DeviceID,
		HostID: c.HostID, Desired: c.Desired, Verdict: c.Verdict, CreatedAt: c.CreatedAt, Kind: c.Kind, Subject: c.Subject}
}

// OutboxCols are the columns of Outbox.
const OutboxCols = `id, integration_id, tenant_id, device_id, host_id, desired, verdict, created_at,
	force, low_priority, state, attempts, next_at, last_code, last_error, dead_reason, dead_at, kind, subject`

// Outbox is a row of sync_outbox.
type Outbox struct {
	ID            int64    `db:"id"`
	IntegrationID string   `db:"integration_id"`
	TenantID      string   `db:"tenant_id"`
	DeviceID      string   `db:"device_id"`
	HostID        string   `db:"host_id"`
	Desired       string   `db:"desired"`
	Verdict       string   `db:"verdict"`
	CreatedAt     Time     `db:"created_at"`
	Force         bool     `db:"force"`
	LowPriority   bool     `db:"low_priority"`
	State         string   `db:"state"`
	Attempts      int      `db:"attempts"`
	NextAt        Time     `db:"next_at"`
	LastCode      string   `db:"last_code"`
	LastError     string   `db:"last_error"`
	DeadReason    string   `db:"dead_reason"`
	DeadAt        NullTime `db:"dead_at"`
	Kind          string   `db:"kind"`
	Subject       string   `db:"subject"`
}

// Change is the row as work for a sync worker.
func (r Outbox) Change() hubsync.Change {
	return hubsync.Change{OutboxID: r.ID, IntegrationID: r.IntegrationID, TenantID: r.TenantID,
		DeviceID: r.DeviceID, HostID: r.HostID, Desired: r.Desired, Verdict: r.Verdict,
		CreatedAt: r.CreatedAt.T(), Attempts: r.Attempts, Force: r.Force, LowPriority: r.LowPriority,
		Kind: r.Kind, Subject: r.Subject}
}

// Item is the row as the admin API shows it; a dead row shows why it died.
func (r Outbox) Item() store.SyncItem {
	it := store.SyncItem{ID: r.ID, IntegrationID: r.IntegrationID, HostID: r.HostID, DeviceID: r.DeviceID,
		Desired: r.Desired, Verdict: r.Verdict, State: r.State, Attempts: r.Attempts,
		CreatedAt: r.CreatedAt.T(), NextAt: r.NextAt.T(), Code: r.LastCode, Error: r.LastError,
		Kind: r.Kind, Subject: r.Subject}
	if r.State == store.SyncDead && r.DeadReason != "" {
		it.Error = r.DeadReason
	}
	return it
}

// Items converts rows.
func Items(rows []Outbox) []store.SyncItem {
	out := make([]store.SyncItem, len(rows))
	for i, r := range rows {
		out[i] = r.Item()
	}
	return out
}

// Claimed is a device row a Claim leased.
type Claimed struct {
	IntegrationID string `db:"integration_id"`
	DeviceID      string `db:"device_id"`
	Written       string `db:"written"`
	Desired       string `db:"desired"`
	Due           Time   `db:"due"` // earliest due row; only PostgreSQL reads it back (to restore claim order)
}

// Work is the answer of a Claim being assembled: one DeviceWork per claimed
// device, in claim order, and the pending rows filed under their device.
type Work struct {
	Out   []hubsync.DeviceWork
	index map[hubsync.DeviceKey]int
}

// NewWork starts the work of devs, leased until until.
func NewWork(devs []Claimed, until time.Time) *Work {
	w := &Work{Out: make([]hubsync.DeviceWork, len(devs)), index: make(map[hubsync.DeviceKey]int, len(devs))}
	for i, d := range devs {
		k := hubsync.DeviceKey{IntegrationID: d.IntegrationID, DeviceID: d.DeviceID}
		w.index[k] = i
		w.Out[i] = hubsync.DeviceWork{Key: k, LastWritten: d.Written, Desired: d.Desired, LeaseUntil: until}
	}
	return w
}

// Add files pending rows (in the order given) under their devices.
func (w *Work) Add(rows []Outbox) {
	for _, r := range rows {
		i := w.index[hubsync.DeviceKey{IntegrationID: r.IntegrationID, DeviceID: r.DeviceID}]
		w.Out[i].Changes = append(w.Out[i].Changes, r.Change())
	}
}

// SettleHeld settles each settlement whose device lease the caller still
// holds (held asks the backend) and returns the keys of the others.
func SettleHeld(ss []hubsync.Settlement, held func(hubsync.DeviceKey) (bool, error),
	settle func(hubsync.Settlement) error) ([]hubsync.DeviceKey, error) {
	var lost []hubsync.DeviceKey
	for _, st := range ss {
		k := st.Key
		ok, err := held(k)
		if err != nil {
			return nil, fmt.Errorf("outbox settle: %w", err)
		}
		if !ok {
			lost = append(lost, k)
			continue
		}
		if err := settle(st); err != nil {
			return nil, fmt.Errorf("outbox settle %s/%s: %w", k.IntegrationID, k.DeviceID, err)
		}
	}
	return lost, nil
}

// LeaseLost is the error of a Settle that skipped devices: nil when none.
func LeaseLost(lost []hubsync.DeviceKey) error {
	if len(lost) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d device(s), first %s/%s", hubsync.ErrLeaseLost, len(lost), lost[0].IntegrationID, lost[0].DeviceID)
}

// DeviceState is a row of sync_device with whether it has pending rows.
type DeviceState struct {
	IntegrationID string   `db:"integration_id"`
	DeviceID      string   `db:"device_id"`
	TenantID      string   `db:"tenant_id"`
	HostID        string   `db:"host_id"`
	Desired       string   `db:"desired"`
	DesiredAt     NullTime `db:"desired_at"`
	Written       string   `db:"written"`
	Pending       bool     `db:"pending"`
}

// DeviceStates converts rows; a NULL desired-at is the zero time.
func DeviceStates(rows []DeviceState) []hubsync.DeviceState {
	out := make([]hubsync.DeviceState, len(rows))
	for i, r := range rows {
		out[i] = hubsync.DeviceState{Key: hubsync.DeviceKey{IntegrationID: r.IntegrationID, DeviceID: r.DeviceID},
			TenantID: r.TenantID, HostID: r.HostID, Desired: r.Desired, DesiredAt: r.DesiredAt.Time,
			Written: r.Written, Pending: r.Pending}
	}
	return out
}
