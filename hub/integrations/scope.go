package integrations

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/sync/intune"
)

// Scope states of a host in an integration with group scoping.
const (
	ScopeIn      = "in_scope"
	ScopeOut     = "out_of_scope"
	ScopeUnknown = "unknown"
)

// ScopeSettings is the group-scoping part of any kind's settings.
type ScopeSettings struct {
	ScopeGroups []string `json:"scope_groups,omitempty"`
}

// scopeGroups reads an integration's scope groups (lenient: other keys are
// the kind's own).
func scopeGroups(in store.Integration) []string {
	var s ScopeSettings
	if len(in.Settings) > 0 {
		_ = json.Unmarshal(in.Settings, &s) // validated on write
	}
	return s.ScopeGroups
}

// checkScope validates scope groups: object ids, and a kind that can read
// Graph (a webhook has no Microsoft credential).
func checkScope(in store.Integration) error {
	gs := scopeGroups(in)
	if len(gs) == 0 {
		return nil
	}
	if in.Kind == KindWebhook {
		return errors.New("group scoping needs Graph access: a webhook integration cannot be scoped by Entra groups")
	}
	for _, g := range gs {
		if !isObjectID(g) {
			return fmt.Errorf("scope group %q: want the group's object id", g)
		}
	}
	return nil
}

func isObjectID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if r != '-' {
				return false
			}
		} else if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return true
}

// scopeEntry is the membership read for one integration.
type scopeEntry struct {
	groups      string // the scope groups it was read for, joined
	updatedAt   time.Time
	client      *intune.Client
	devices     map[string]bool
	upns        map[string]bool
	refreshedAt time.Time
	err         string
}

type scopes struct {
	mu      sync.Mutex
	entries map[string]*scopeEntry
}

// HostLister lists hosts (the store); scope refreshes use it to find the
// hosts whose scope changed.
type HostLister interface {
	ListHosts(ctx context.Context, f store.HostFilter) ([]store.Host, error)
}

func (r *Registry) scopeState() *scopes {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.scope == nil {
		r.scope = &scopes{entries: map[string]*scopeEntry{}}
	}
	return r.scope
}

// Covers reports whether an integration may write a host: true without
// scope groups; with them, only once membership has been read and the
// host's Entra device or user is a transitive member of one of them.
// Hosts outside the scope are left untouched.
func (r *Registry) Covers(in store.Integration, h store.Host) bool {
	return r.hostScope(in, h) == ScopeIn
}

func (r *Registry) hostScope(in store.Integration, h store.Host) string {
	gs := scopeGroups(in)
	if len(gs) == 0 {
		return ScopeIn
	}
	sc := r.scopeState()
	sc.mu.Lock()
	defer sc.mu.Unlock()
	e := sc.entries[in.ID]
	if e == nil || e.refreshedAt.IsZero() || e.groups != strings.Join(gs, ",") {
		return ScopeUnknown
	}
	if d := strings.ToLower(h.EffectiveEntraDeviceID()); d != "" && e.devices[d] {
		return ScopeIn
	}
	if u := strings.ToLower(h.EffectiveUserPrincipalName()); u != "" && e.upns[u] {
		return ScopeIn
	}
	return ScopeOut
}

// HostScope is one integration's scope decision for a host.
type HostScope struct {
	IntegrationID string
	State         string
	RefreshedAt   time.Time
	Error         string
}

// HostScopes lists the scope of a host in every integration with group
// scoping that covers its team.
func (r *Registry) HostScopes(ctx context.Context, h store.Host) ([]HostScope, error) {
	ins, err := r.st.ListIntegrations(ctx)
	if err != nil {
		return nil, err
	}
	var out []HostScope
	for _, in := range ins {
		if len(scopeGroups(in)) == 0 || (len(in.Teams) > 0 && !slices.Contains(in.Teams, h.Team)) {
			continue
		}
		hs := HostScope{IntegrationID: in.ID, State: r.hostScope(in, h)}
		sc := r.scopeState()
		sc.mu.Lock()
		if e := sc.entries[in.ID]; e != nil {
			hs.RefreshedAt, hs.Error = e.refreshedAt, e.err
		}
		sc.mu.Unlock()
		out = append(out, hs)
	}
	return out, nil
}

// RefreshScopes reads the group membership of integrations with scope
// groups: all of them when full, else only those never read or changed
// since. It returns the ids of hosts whose scope changed (to re-evaluate:
// a host entering a scope gets written).
func (r *Registry) RefreshScopes(ctx context.Context, full bool) ([]string, error) {
	ins, err := r.st.ListIntegrations(ctx)
	if err != nil {
		return nil, err
	}
	sc := r.scopeState()
	var todo []store.Integration
	sc.mu.Lock()
	live := map[string]bool{}
	for _, in := range ins {
		gs := scopeGroups(in)
		if len(gs) == 0 {
			continue
		}
		live[in.ID] = true
		e := sc.entries[in.ID]
		if full || e == nil || e.refreshedAt.IsZero() || e.groups != strings.Join(gs, ",") || !e.updatedAt.Equal(in.UpdatedAt) {
			todo = append(todo, in)
		}
	}
	for id := range sc.entries {
		if !live[id] {
			delete(sc.entries, id)
		}
	}
	sc.mu.Unlock()
	if len(todo) == 0 {
		return nil, nil
	}
	r.mu.Lock()
	hs := r.hosts
	r.mu.Unlock()
	lister, _ := hs.(HostLister)
	var hosts []store.Host
	before := map[string]map[string]string{}
	if lister != nil {
		if hosts, err = lister.ListHosts(ctx, store.HostFilter{}); err != nil {
			return nil, err
		}
		for _, in := range todo {
			m := map[string]string{}
			for _, h := range hosts {
				m[h.ID] = r.hostScope(in, h)
			}
			before[in.ID] = m
		}
	}
	for _, in := range todo {
		r.refreshScope(ctx, in)
	}
	changed := map[string]bool{}
	for _, in := range todo {
		for _, h := range hosts {
			if before[in.ID][h.ID] != r.hostScope(in, h) {
				changed[h.ID] = true
			}
		}
	}
	out := make([]string, 0, len(changed))
	for id := range changed {
		out = append(out, id)
	}
	slices.Sort(out)
	return out, nil
}

func (r *Registry) refreshScope(ctx context.Context, in store.Integration) {
	gs := scopeGroups(in)
	sc := r.scopeState()
	sc.mu.Lock()
	e := sc.entries[in.ID]
	sc.mu.Unlock()
	var client *intune.Client
	if e != nil && e.updatedAt.Equal(in.UpdatedAt) && e.client != nil {
		client = e.client // keeps its token cache
	} else {
		cred, err := r.open(in)
		if err == nil {
			cfg := intune.Config{Cloud: in.Cloud, AuthorityHost: in.AuthorityHost, GraphBaseURL: in.GraphBaseURL, GraphResource: in.GraphResource,
				TenantID: in.TenantID, ClientID: in.ClientID, ClientSecret: cred.ClientSecret, Certificate: cred.Certificate,
				CertificatePassword: cred.CertificatePassword, Logger: r.log.With("integration", in.ID)}
			if strings.TrimSpace(in.ExtraCAPEM) != "" {
				cfg.ExtraCAPEM = []byte(in.ExtraCAPEM)
			}
			client, err = intune.NewClient(cfg)
		}
		if err != nil {
			r.setScope(in, gs, nil, nil, nil, err)
			return
		}
	}
	devices, upns := map[string]bool{}, map[string]bool{}
	for _, g := range gs {
		m, err := client.GroupMembers(ctx, strings.ToLower(g))
		if err != nil {
			// Keep the last good membership: a Graph hiccup must not
			// move devices in or out of scope.
			r.setScope(in, gs, client, nil, nil, err)
			return
		}
		for _, d := range m.DeviceIDs {
			devices[d] = true
		}
		for _, u := range m.UPNs {
			upns[u] = true
		}
	}
	r.setScope(in, gs, client, devices, upns, nil)
}

func (r *Registry) setScope(in store.Integration, gs []string, c *intune.Client, devices, upns map[string]bool, err error) {
	sc := r.scopeState()
	sc.mu.Lock()
	defer sc.mu.Unlock()
	e := sc.entries[in.ID]
	key := strings.Join(gs, ",")
	if e == nil || e.groups != key {
		e = &scopeEntry{groups: key}
		sc.entries[in.ID] = e
	}
	e.updatedAt, e.client = in.UpdatedAt, c
	if err != nil {
		e.err = err.Error()
		r.log.Warn("group scope refresh", "integration", in.ID, "err", err)
		return
	}
	e.devices, e.upns, e.refreshedAt, e.err = devices, upns, r.now(), ""
}

// RunScopes refreshes group scopes until ctx ends: every `every` in full,
// and every few seconds for integrations created or changed meanwhile.
// onChange gets the hosts whose scope changed.
func (r *Registry) RunScopes(ctx context.Context, every time.Duration, onChange func(hostIDs []string)) {
	tick := min(every, 5*time.Second)
	last := time.Time{}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		full := time.Since(last) >= every
		if full {
			last = time.Now()
		}
		ids, err := r.RefreshScopes(ctx, full)
		if err != nil && ctx.Err() == nil {
			r.log.Warn("group scopes", "err", err)
		}
		if len(ids) > 0 && onChange != nil {
			onChange(ids)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
