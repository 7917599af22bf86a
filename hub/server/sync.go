package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/admin"
	"github.com/posture-dev/posture/hub/agentapi"
	"github.com/posture-dev/posture/hub/integrations"
	"github.com/posture-dev/posture/hub/secrets"
	"github.com/posture-dev/posture/hub/store"
	hubsync "github.com/posture-dev/posture/hub/sync"
)

// syncStore is what both backends offer beyond store.Store: the outbox the
// sync worker drains and the device states reconcile reads.
type syncStore interface {
	store.Store
	hubsync.Outbox
	hubsync.Enqueuer
	hubsync.DeviceStates
}

// SecretsKeyFile is the default key file in the data dir.
const SecretsKeyFile = "secrets.key"

// loadKeys finds the key that seals integration credentials: --secrets-key-file,
// else POSTURE_SECRETS_KEY, else a key file in the data dir made on first
// start (fine for one hub; replicas must share one key, given explicitly).
func loadKeys(cfg Config) (*secrets.Keyring, error) {
	if cfg.SecretsKeyFile != "" || os.Getenv(secrets.EnvKey) != "" {
		return secrets.Load(cfg.SecretsKeyFile)
	}
	path := filepath.Join(cfg.DataDir, SecretsKeyFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if err := secrets.GenerateKeyFile(path); err != nil {
			return nil, err
		}
	}
	return secrets.LoadFile(path)
}

// adminIntegrations adapts the registry to the admin API's small interface.
type adminIntegrations struct {
	r         *integrations.Registry
	publicURL string
}

func (a adminIntegrations) Prepare(in *store.Integration, secret string, cert []byte, certPassword string) error {
	return a.r.Prepare(in, integrations.Credential{ClientSecret: secret, Certificate: cert, CertificatePassword: certPassword})
}

func (a adminIntegrations) Test(ctx context.Context, id string) (admin.TestReport, error) {
	rep, err := a.r.Test(ctx, id)
	if err != nil {
		return admin.TestReport{}, err
	}
	msg := "token issued and a device read: the integration works"
	if !rep.OK {
		msg = fmt.Sprint(rep.Problems)
	}
	if rep.TokenOK {
		if rep.RevokeSessions {
			msg += "; User.RevokeSessions.All granted: teams with revoke_sessions can block at once"
		} else {
			msg += "; User.RevokeSessions.All not granted: teams with revoke_sessions get no session revocation (grant it only if you use revoke_sessions)"
		}
	}
	return admin.TestReport{OK: rep.OK, TokenOK: rep.TokenOK, ReadOK: rep.ReadOK, Health: string(rep.Health), Message: msg,
		RevokeSessions: rep.RevokeSessions}, nil
}

func (a adminIntegrations) Warnings(in store.Integration, now time.Time) []string {
	return integrations.Warnings(in, now)
}

func (a adminIntegrations) Deprovision(ctx context.Context, id string) error {
	return a.r.Deprovision(ctx, id)
}

// PartnerStatus shows a partner integration's saved state.
func (a adminIntegrations) PartnerStatus(in store.Integration) *posturev1.PartnerStatus {
	st, err := integrations.DecodePartnerState(in)
	if err != nil {
		return &posturev1.PartnerStatus{Activation: "unknown", ActivationMessage: err.Error()}
	}
	ts := func(t time.Time) *timestamppb.Timestamp {
		if t.IsZero() {
			return nil
		}
		return timestamppb.New(t)
	}
	ps := &posturev1.PartnerStatus{Activation: st.Activation, ActivationMessage: st.ActivationMessage,
		ActivatedAt: ts(st.ActivatedAt), LastHeartbeatAt: ts(st.LastHeartbeatAt), HeartbeatError: st.HeartbeatError,
		GroupId: st.GroupID, TenantSyncUrl: st.TenantSyncURL, DeviceSyncUrl: st.DeviceSyncURL}
	for _, p := range slices.Sorted(maps.Keys(st.Policies)) {
		pol := st.Policies[p]
		ps.Policies = append(ps.Policies, &posturev1.PartnerPolicyStatus{Platform: p, State: pol.State, PolicyId: pol.PolicyID,
			GroupId: pol.GroupID, Message: pol.Message, UpdatedAt: ts(pol.UpdatedAt)})
	}
	return ps
}

// HostScopes shows a host's Entra group scope per scoped integration.
func (a adminIntegrations) HostScopes(ctx context.Context, h store.Host) ([]*posturev1.HostScope, error) {
	ss, err := a.r.HostScopes(ctx, h)
	if err != nil {
		return nil, err
	}
	var out []*posturev1.HostScope
	for _, s := range ss {
		hs := &posturev1.HostScope{IntegrationId: s.IntegrationID, State: s.State, Error: s.Error}
		if !s.RefreshedAt.IsZero() {
			hs.RefreshedAt = timestamppb.New(s.RefreshedAt)
		}
		out = append(out, hs)
	}
	return out, nil
}

// adminConsent adds the hub's public URL to the registry's consent links.
func (a adminIntegrations) ConsentURL(ctx context.Context, id string) (string, string, time.Time, error) {
	return a.r.ConsentURL(ctx, id, a.publicURL)
}

// resumeHere ends an integration's pause on this replica's worker and makes
// its held-back rows due now in the shared outbox. The pause ends first:
// Resume returns once no deferral to the pause's end can still be stored
// (by a round that was running, perhaps after another replica's update), so
// the update finds every held row.
func (h *Hub) resumeHere(ctx context.Context, id string) (int, error) {
	h.Worker.Resume(id)
	n, err := h.Store.ResumeSyncItems(ctx, id, time.Now())
	h.Worker.Notify()
	return n, err
}

// resumeIntegration resumes an integration here and, with PostgreSQL,
// tells the other replicas to end their pauses too (each keeps its own in
// memory, from the throttles its own sends met).
func (h *Hub) resumeIntegration(ctx context.Context, id string) (int, error) {
	n, err := h.resumeHere(ctx, id)
	if h.bus != nil {
		if perr := h.bus.Publish(ctx, agentapi.Event{Kind: agentapi.EventSyncResume, Integration: id, From: h.Agent.ReplicaID()}); perr != nil {
			h.log.Warn("publish sync resume: other replicas keep their pause until it ends", "integration", id, "err", perr)
		}
	}
	return n, err
}

// handleEvent acts on an event from another replica (or this one).
func (h *Hub) handleEvent(ctx context.Context, ev agentapi.Event) {
	switch ev.Kind {
	case agentapi.EventSyncResume:
		if ev.From == h.Agent.ReplicaID() || ev.Integration == "" {
			return
		}
		n, err := h.resumeHere(ctx, ev.Integration)
		if err != nil {
			h.log.Warn("sync resume from another replica", "integration", ev.Integration, "err", err)
		}
		h.log.Info("integration resumed by another replica", "integration", ev.Integration, "from", ev.From, "requeued", n)
	case agentapi.EventBusReconnected:
		// A resume sent meanwhile was lost. A pause kept by mistake holds
		// a verdict back from Entra for up to the whole Retry-After; one
		// ended by mistake costs a request Graph throttles again.
		for _, id := range h.Worker.PausedKeys() {
			n, err := h.resumeHere(ctx, id)
			if err != nil {
				h.log.Warn("sync resume after event bus reconnect", "integration", id, "err", err)
			}
			h.log.Info("sync pause ended after event bus reconnect: a resume may have been missed", "integration", id, "requeued", n)
		}
	default:
		h.Router.Handle(ctx, ev)
	}
}

// checkDevice records what Graph said about a host's device, and what of it
// disagrees with the host's facts, where `hosts get` shows it.
func (h *Hub) checkDevice(ctx context.Context, d hubsync.DeviceState, info hubsync.DeviceInfo) {
	host, err := h.Store.GetHost(ctx, d.HostID)
	if err != nil {
		return // deleted meanwhile
	}
	mismatch := integrations.DeviceMismatch(host, info)
	if mismatch != "" {
		h.log.Warn("Entra device disagrees with its host", "host", host.ID, "device", d.Key.DeviceID, "mismatch", mismatch)
	}
	if err := h.Store.SaveDeviceCheck(ctx, store.DeviceCheck{HostID: host.ID, IntegrationID: d.Key.IntegrationID,
		DeviceID: d.Key.DeviceID, DisplayName: info.DisplayName, OperatingSystem: info.OperatingSystem,
		Mismatch: mismatch, CheckedAt: time.Now()}); err != nil {
		h.log.Warn("save device check", "host", host.ID, "err", err)
	}
}
