package intune

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	hubsync "github.com/posture-dev/posture/hub/sync"
)

// Entity types of a data upload message.
const (
	EntityInventory  = 1
	EntityCompliance = 4
)

// Compliance states Intune takes.
const (
	StateCompliant    = "compliant"
	StateNotCompliant = "notCompliant"
)

// Message is a data upload message (PUT DataUploadMessages(guid'{id}')).
type Message struct {
	ID       string   `json:"Id"`
	Entities []Entity `json:"Entities"`
}

// Entity is one inventory or compliance record, ordered in its message by
// LastUpdateTime.
type Entity struct {
	EntityType     int       `json:"EntityType"`
	DeviceID       string    `json:"DeviceId"`
	LastUpdateTime time.Time `json:"LastUpdateTime"`
	Payload        Payload   `json:"Payload"`
}

// Payload carries the fields of both entity types (unused ones empty).
type Payload struct {
	DeviceName      string     `json:"DeviceName,omitempty"`
	UserID          string     `json:"UserId,omitempty"`
	OperatingSystem string     `json:"OperatingSystem,omitempty"`
	OSVersion       string     `json:"OsVersion,omitempty"`
	ManagementState string     `json:"ManagementState,omitempty"`
	LastCheckIn     *time.Time `json:"LastCheckInTime,omitempty"`
	ComplianceState string     `json:"ComplianceState,omitempty"`
}

// MessageStatus is the answer of GET DataUploadMessages(guid'{id}').
type MessageStatus struct {
	ID     string        `json:"Id"`
	Status string        `json:"Status"` // Pending | Completed | Failed
	Errors []EntityError `json:"Errors,omitempty"`
}

// EntityError is one refused entity of a processed message.
type EntityError struct {
	DeviceID string `json:"DeviceId"`
	Code     string `json:"Code"`
	Message  string `json:"Message"`
}

// Message statuses.
const (
	StatusPending   = "Pending"
	StatusCompleted = "Completed"
	StatusFailed    = "Failed"
)

// Sink is the hub/sync sink of a partner integration.
type Sink struct {
	c   *Client
	gen Generation
	mu  sync.Mutex // one Maintain at a time
}

// New builds a sink (no network). gen names the integration's configuration.
func New(cfg Config, gen Generation) (*Sink, error) {
	if cfg.State == nil {
		return nil, errors.New("intune: a state store is required")
	}
	c, err := NewClient(cfg)
	if err != nil {
		return nil, err
	}
	return &Sink{c: c, gen: gen}, nil
}

// Client returns the sink's client.
func (s *Sink) Client() *Client { return s.c }

// Name implements hubsync.Sink.
func (s *Sink) Name() string { return "intune-partner" }

// MaxBatch: one message carries this many devices (two entities each).
func (s *Sink) MaxBatch() int { return 50 }

// Maintain runs the provisioning steps (see Client.Maintain).
func (s *Sink) Maintain(ctx context.Context) (State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c.Maintain(ctx, s.gen)
}

// Deprovision tells Intune the partner stops in this tenant.
func (s *Sink) Deprovision(ctx context.Context) (State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c.Deprovision(ctx, s.gen)
}

// Apply uploads one message with an inventory and a compliance entity per
// device and waits for Intune to process it.
func (s *Sink) Apply(ctx context.Context, changes []hubsync.Change) []hubsync.Outcome {
	out := make([]hubsync.Outcome, len(changes))
	all := func(o hubsync.Outcome) []hubsync.Outcome {
		for i := range out {
			out[i] = o
		}
		return out
	}
	st, err := s.Maintain(ctx)
	if err != nil {
		// Not activated: nothing of this tenant can be written now.
		return all(outcomeOf(err, hubsync.OutcomeThrottled))
	}
	if s.c.cfg.Devices == nil {
		return all(hubsync.Outcome{Kind: hubsync.OutcomePermanent, Code: "no_devices", Message: "intune: no device source configured"})
	}
	msg := Message{ID: newGUID()}
	idx := map[string][]int{} // device → change indexes
	sent := 0
	for i, ch := range changes {
		dev, err := s.c.cfg.Devices.Device(ctx, ch.HostID)
		if err != nil {
			out[i] = hubsync.Outcome{Kind: hubsync.OutcomeRetry, Code: "host_lookup", Message: err.Error()}
			continue
		}
		userID := ""
		if dev.UPN != "" {
			if userID, err = s.c.UserID(ctx, dev.UPN); err != nil {
				out[i] = outcomeOf(fmt.Errorf("user %s: %w", dev.UPN, err), hubsync.OutcomeRetry)
				var he *Error
				if errors.As(err, &he) && he.Status == http.StatusNotFound {
					out[i].Kind = hubsync.OutcomePermanent
				}
				continue
			}
		}
		at := ch.CreatedAt.UTC().Truncate(time.Millisecond)
		var seen *time.Time
		if !dev.LastSeen.IsZero() {
			t := dev.LastSeen.UTC()
			seen = &t
		}
		state := StateNotCompliant
		if ch.Desired == hubsync.DesiredCompliant {
			state = StateCompliant
		}
		// The inventory entity comes first: the device must exist before
		// its compliance is set.
		msg.Entities = append(msg.Entities,
			Entity{EntityType: EntityInventory, DeviceID: ch.DeviceID, LastUpdateTime: at, Payload: Payload{
				DeviceName: dev.Name, UserID: userID, OperatingSystem: dev.OS, OSVersion: dev.OSVersion,
				ManagementState: "managed", LastCheckIn: seen}},
			Entity{EntityType: EntityCompliance, DeviceID: ch.DeviceID, LastUpdateTime: at.Add(time.Millisecond), Payload: Payload{
				UserID: userID, ComplianceState: state}})
		idx[strings.ToLower(ch.DeviceID)] = append(idx[strings.ToLower(ch.DeviceID)], i)
		sent++
	}
	if sent == 0 {
		return out
	}
	sort.SliceStable(msg.Entities, func(a, b int) bool { return msg.Entities[a].LastUpdateTime.Before(msg.Entities[b].LastUpdateTime) })
	status, err := s.upload(ctx, st.DeviceSyncURL, msg)
	set := func(o hubsync.Outcome) {
		for _, is := range idx {
			for _, i := range is {
				out[i] = o
			}
		}
	}
	switch {
	case err != nil:
		set(outcomeOf(err, hubsync.OutcomeRetry))
	case status.Status == StatusCompleted:
		set(hubsync.Outcome{Kind: hubsync.OutcomeOK})
		for _, e := range status.Errors {
			for _, i := range idx[strings.ToLower(e.DeviceID)] {
				out[i] = hubsync.Outcome{Kind: hubsync.OutcomePermanent, Code: e.Code, Message: "Intune refused the device: " + e.Message}
			}
		}
	case status.Status == StatusFailed:
		m := "Intune failed data upload message " + msg.ID
		if len(status.Errors) > 0 {
			m += ": " + status.Errors[0].Code + " " + status.Errors[0].Message
		}
		s.c.cfg.Logger.WarnContext(ctx, "intune: upload failed", "message", msg.ID, "errors", status.Errors)
		set(hubsync.Outcome{Kind: hubsync.OutcomeRetry, Code: "upload_failed", Message: m})
	default:
		set(hubsync.Outcome{Kind: hubsync.OutcomeRetry, Code: "upload_pending", Message: "message " + msg.ID + " still " + status.Status + " when the wait ended"})
	}
	return out
}

// upload PUTs msg and polls its status until it is processed or the poll
// timeout (bounded by ctx) ends.
func (s *Sink) upload(ctx context.Context, deviceSync string, msg Message) (MessageStatus, error) {
	u := fmt.Sprintf("%s/DataUploadMessages(guid'%s')?api-version=%s", deviceSync, msg.ID, DeviceAPIVersion)
	if _, err := s.c.do(ctx, s.c.ep.intune, http.MethodPut, u, msg); err != nil {
		return MessageStatus{}, err
	}
	deadline := s.c.cfg.Now().Add(s.c.cfg.PollTimeout)
	var st MessageStatus
	for {
		t := time.NewTimer(s.c.cfg.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return st, nil // still pending: reported as a retry
		case <-t.C:
		}
		r, err := s.c.do(ctx, s.c.ep.intune, http.MethodGet, u, nil)
		if err != nil {
			return st, err
		}
		if err := json.Unmarshal(r.body, &st); err != nil {
			return st, fmt.Errorf("intune: message status: %w", err)
		}
		if st.Status != StatusPending || !s.c.cfg.Now().Before(deadline) {
			return st, nil
		}
	}
}

// outcomeOf maps an error: 429 and 503 throttle the tenant, other 5xx and
// network errors retry, 4xx (but 401, retried already) are permanent.
func outcomeOf(err error, def hubsync.OutcomeKind) hubsync.Outcome {
	o := hubsync.Outcome{Kind: def, Code: "error", Message: err.Error()}
	var he *Error
	if !errors.As(err, &he) {
		return o
	}
	o.Code, o.RetryAfter = he.Code, he.RetryAfter
	switch {
	case he.Status == http.StatusTooManyRequests || he.Status == http.StatusServiceUnavailable:
		o.Kind = hubsync.OutcomeThrottled
	case he.Status >= 500 || he.Status == 0:
	case he.Status == http.StatusUnauthorized || he.Status == http.StatusForbidden:
		o.Kind = hubsync.OutcomeThrottled // the credential or consent: integration-wide
	}
	return o
}

// TestConnection checks discovery, activation and the heartbeat.
func (s *Sink) TestConnection(ctx context.Context) error {
	_, err := s.Maintain(ctx)
	return err
}
