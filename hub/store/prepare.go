package store

import (
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"
)

// PrepareEnroll fills what EnrollHost defaults: a new uuid when ID is empty,
// the default team, enrolled-at = now, last-seen no earlier than enrolled-at,
// and times in stored form.
func PrepareEnroll(h Host, now time.Time) Host {
	if h.ID == "" {
		h.ID = uuid.NewString()
	}
	if h.Team == "" {
		h.Team = DefaultTeam
	}
	if h.EnrolledAt.IsZero() {
		h.EnrolledAt = now
	}
	h.EnrolledAt = StoredTime(h.EnrolledAt)
	h.LastSeenAt = StoredTime(h.LastSeenAt)
	if h.LastSeenAt.Before(h.EnrolledAt) {
		h.LastSeenAt = h.EnrolledAt
	}
	h.CertNotAfter = StoredTime(h.CertNotAfter)
	h.RevokedAt = nil
	return h
}

// CountDeltas accumulates per-policy count changes.
type CountDeltas map[string]*PolicyCounts

// NewCountDeltas returns an empty accumulator.
func NewCountDeltas() CountDeltas { return CountDeltas{} }

// Add moves n hosts into (n > 0) or out of (n < 0) status for policyID.
func (d CountDeltas) Add(policyID, status string, n int) {
	c := d[policyID]
	if c == nil {
		c = &PolicyCounts{PolicyID: policyID}
		d[policyID] = c
	}
	switch status {
	case StatusPass:
		c.Passing += n
	case StatusFail:
		c.Failing += n
	case StatusError:
		c.Errors += n
	}
}

// Sorted returns the non-zero deltas sorted by policy id; backends update
// count rows in this order so concurrent transactions cannot deadlock.
func (d CountDeltas) Sorted() []PolicyCounts {
	var out []PolicyCounts
	for _, c := range d {
		if c.Passing != 0 || c.Failing != 0 || c.Errors != 0 {
			out = append(out, *c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PolicyID < out[j].PolicyID })
	return out
}

// HashLen is the length of stored secret and token hashes (SHA-256).
const HashLen = 32

// PrepareEnrollSecret checks a new secret and fills defaults: the default
// team and created-at = now.
func PrepareEnrollSecret(s EnrollSecret, now time.Time) (EnrollSecret, error) {
	if s.ID == "" {
		return s, fmt.Errorf("enroll secret: empty id: %w", ErrInvalid)
	}
	if len(s.Hash) != HashLen {
		return s, fmt.Errorf("enroll secret %q: hash is %d bytes, want %d (SHA-256): %w", s.ID, len(s.Hash), HashLen, ErrInvalid)
	}
	if s.Team == "" {
		s.Team = DefaultTeam
	}
	if s.CreatedAt.IsZero() {
		s.CreatedAt = now
	}
	s.CreatedAt = StoredTime(s.CreatedAt)
	s.ExpiresAt = StoredTimePtr(s.ExpiresAt)
	s.RevokedAt = StoredTimePtr(s.RevokedAt)
	s.LastUsedAt = StoredTimePtr(s.LastUsedAt)
	return s, nil
}

// PrepareAPIToken checks a new token and fills created-at = now.
func PrepareAPIToken(t APIToken, now time.Time) (APIToken, error) {
	if t.ID == "" {
		return t, fmt.Errorf("api token: empty id: %w", ErrInvalid)
	}
	if len(t.Hash) != HashLen {
		return t, fmt.Errorf("api token %q: hash is %d bytes, want %d (SHA-256): %w", t.ID, len(t.Hash), HashLen, ErrInvalid)
	}
	if !ValidRole(t.Role) {
		return t, fmt.Errorf("api token %q: role %q not observer, maintainer or admin: %w", t.ID, t.Role, ErrInvalid)
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = now
	}
	t.CreatedAt = StoredTime(t.CreatedAt)
	t.ExpiresAt = StoredTimePtr(t.ExpiresAt)
	t.RevokedAt = StoredTimePtr(t.RevokedAt)
	t.LastUsedAt = StoredTimePtr(t.LastUsedAt)
	return t, nil
}
