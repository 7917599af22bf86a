package agentapi

import (
	"sync"
	"sync/atomic"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
)

// Registry tracks the open agent streams on this replica, so the admin API
// can push rechecks and disables and policy changes reach every host.
type Registry struct {
	mu       sync.Mutex
	sessions map[string]*session
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{sessions: map[string]*session{}} }

type session struct {
	hostID string
	// enrollment is the host's ReenrollCount when the stream opened.
	enrollment int
	// out carries acks, rechecks and disables in order. Never dropped.
	out chan *posturev1.HubMessage
	// dirty asks the sender to build and send a fresh PolicySet; coalesced.
	dirty  chan struct{}
	done   chan struct{}
	cancel func()
	// policies holds the ids of the last PolicySet sent (nil before the
	// first): results for other ids are dropped.
	policies atomic.Pointer[map[string]bool]
}

func (s *session) setPolicies(ps *posturev1.PolicySet) {
	ids := make(map[string]bool, len(ps.GetPolicies()))
	for _, p := range ps.GetPolicies() {
		ids[p.GetId()] = true
	}
	s.policies.Store(&ids)
}

func (s *session) markDirty() {
	select {
	case s.dirty <- struct{}{}:
	default: // one pending rebuild is enough
	}
}

// add registers a session, ending an older stream of the same host (a host
// has one stream; a second means the first is dead or duplicated).
func (r *Registry) add(s *session) {
	r.mu.Lock()
	old := r.sessions[s.hostID]
	r.sessions[s.hostID] = s
	r.mu.Unlock()
	if old != nil {
		old.cancel()
	}
}

func (r *Registry) remove(s *session) {
	r.mu.Lock()
	if r.sessions[s.hostID] == s {
		delete(r.sessions, s.hostID)
	}
	r.mu.Unlock()
}

// kick ends the host's stream on this replica (its certificate was retired).
func (r *Registry) kick(hostID string) {
	r.mu.Lock()
	s := r.sessions[hostID]
	r.mu.Unlock()
	if s != nil {
		s.cancel()
	}
}

// Connected reports whether the host has a stream open to this replica.
func (r *Registry) Connected(hostID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.sessions[hostID]
	return ok
}

// Count is the number of open streams.
func (r *Registry) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
}

// Send queues a message for the host; false if it has no stream here or the
// stream ended before the message could be queued.
func (r *Registry) Send(hostID string, m *posturev1.HubMessage) bool {
	r.mu.Lock()
	s := r.sessions[hostID]
	r.mu.Unlock()
	if s == nil {
		return false
	}
	select {
	case s.out <- m:
		return true
	case <-s.done:
		return false
	}
}

// Disable tells the host to stop; the stream ends once it is sent.
func (r *Registry) Disable(hostID, reason string) bool {
	return r.Send(hostID, &posturev1.HubMessage{Msg: &posturev1.HubMessage_Disable{Disable: &posturev1.Disable{Reason: reason}}})
}

// PoliciesChanged makes every open stream send its host a fresh PolicySet.
func (r *Registry) PoliciesChanged() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.sessions {
		s.markDirty()
	}
}
