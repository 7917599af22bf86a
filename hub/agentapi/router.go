package agentapi

import (
	"context"
	"encoding/json"
	"log/slog"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
)

// Event is a hub → agent action for a host whose stream may be held by
// another replica. It travels over a Bus (PostgreSQL NOTIFY between replicas).
type Event struct {
	Kind      string   `json:"k"`
	HostID    string   `json:"h"`
	PolicyIDs []string `json:"p,omitempty"`
	// Integration names the integration of an EventSyncResume.
	Integration string `json:"i,omitempty"`
	// From is the sending replica's id (EventSyncResume: the sender has
	// already acted and skips its own event).
	From string `json:"f,omitempty"`
}

// Event kinds.
const (
	// EventRecheck asks the host to run policies now.
	EventRecheck = "recheck"
	// EventStatus says the host's verdict changed: send it a DeviceStatus.
	EventStatus = "status"
	// EventSyncResume says an integration's sync pause was ended (resume,
	// a passing test, an update): every replica's worker ends its own
	// in-memory pause. Not a host event: the hub handles it, not Router.
	EventSyncResume = "sync-resume"
	// EventBusReconnected is never published: a bus hands it to this
	// replica's handler after reconnecting, when events sent meanwhile
	// may have been lost.
	EventBusReconnected = "bus-reconnected"
)

// Bus carries events to every replica (including the sender).
type Bus interface {
	Publish(ctx context.Context, ev Event) error
}

// StatusFunc builds the DeviceStatus a host is told about.
type StatusFunc func(ctx context.Context, hostID string) (*posturev1.DeviceStatus, error)

// Router delivers rechecks and status updates to a host wherever its stream
// is: on this replica directly, else over the Bus (nil on SQLite, where
// there is only one replica). It also stands in for the Registry where the
// admin API needs one, so an admin recheck crosses replicas too.
type Router struct {
	*Registry
	bus    Bus
	status StatusFunc
	log    *slog.Logger
}

// NewRouter wraps a registry. bus may be nil (single replica).
func NewRouter(reg *Registry, bus Bus, status StatusFunc, log *slog.Logger) *Router {
	if log == nil {
		log = slog.Default()
	}
	return &Router{Registry: reg, bus: bus, status: status, log: log}
}

// maxEventIDs bounds the policy ids one event carries (NOTIFY payloads are
// limited to 8000 bytes); more become "all".
const maxEventIDs = 40

// Recheck asks the host to run the given policies (all when empty) now. It
// reports whether the request reached the host's stream here or was
// published for the other replicas.
func (r *Router) Recheck(ctx context.Context, hostID string, policyIDs []string) bool {
	if r.Registry.Send(hostID, recheckMsg(policyIDs)) {
		return true
	}
	if r.bus == nil {
		return false
	}
	if len(policyIDs) > maxEventIDs {
		policyIDs = nil
	}
	if err := r.bus.Publish(ctx, Event{Kind: EventRecheck, HostID: hostID, PolicyIDs: policyIDs}); err != nil {
		r.log.Warn("publish recheck", "host", hostID, "err", err)
		return false
	}
	return true
}

// Send queues a message for the host here; a Recheck for a host connected
// elsewhere goes over the bus (this is what the admin API calls).
func (r *Router) Send(hostID string, m *posturev1.HubMessage) bool {
	if rc := m.GetRecheck(); rc != nil {
		return r.Recheck(context.Background(), hostID, rc.GetPolicyIds())
	}
	return r.Registry.Send(hostID, m)
}

// StatusChanged tells the host its new verdict, here or via the bus.
func (r *Router) StatusChanged(ctx context.Context, hostID string) {
	if r.Registry.Connected(hostID) {
		r.sendStatus(ctx, hostID)
		return
	}
	if r.bus != nil {
		if err := r.bus.Publish(ctx, Event{Kind: EventStatus, HostID: hostID}); err != nil {
			r.log.Warn("publish status", "host", hostID, "err", err)
		}
	}
}

// Handle acts on an event from the bus when this replica holds the stream.
func (r *Router) Handle(ctx context.Context, ev Event) {
	if !r.Registry.Connected(ev.HostID) {
		return
	}
	switch ev.Kind {
	case EventRecheck:
		r.Registry.Send(ev.HostID, recheckMsg(ev.PolicyIDs))
	case EventStatus:
		r.sendStatus(ctx, ev.HostID)
	}
}

func (r *Router) sendStatus(ctx context.Context, hostID string) {
	if r.status == nil {
		return
	}
	st, err := r.status(ctx, hostID)
	if err != nil {
		r.log.Warn("build device status", "host", hostID, "err", err)
		return
	}
	if st != nil {
		r.Registry.Send(hostID, &posturev1.HubMessage{Msg: &posturev1.HubMessage_Status{Status: st}})
	}
}

func recheckMsg(ids []string) *posturev1.HubMessage {
	return &posturev1.HubMessage{Msg: &posturev1.HubMessage_Recheck{Recheck: &posturev1.Recheck{PolicyIds: ids, All: len(ids) == 0}}}
}

// DecodeEvent parses a bus payload.
func DecodeEvent(payload string) (Event, error) {
	var ev Event
	err := json.Unmarshal([]byte(payload), &ev)
	return ev, err
}
