package intune

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Activation states.
const (
	ActivationNone          = "not_activated"
	ActivationActive        = "activated"
	ActivationFailed        = "failed"
	ActivationDeprovisioned = "deprovisioned"
)

// Policy states.
const (
	PolicyCreated       = "created"  // exists in Intune, not assigned (no group chosen)
	PolicyAssigned      = "assigned" // exists and assigned to the chosen group
	PolicyNotRegistered = "platform_not_registered"
	PolicyFailed        = "failed"
)

// Provisioned values of PartnerTenants.
const (
	provisionedOn  = 1
	provisionedOff = 2
)

// platformCodes are the platforms a partner compliance policy can target,
// with the name Intune uses.
var platformCodes = map[string]string{"macos": "macOS", "windows": "windows10", "ios": "iOS", "android": "android"}

// State is what the hub knows of Intune's side; kept in the integration's
// sink state so activation and policy creation happen once, across
// restarts and replicas.
type State struct {
	Activation        string                 `json:"activation,omitempty"`
	ActivationMessage string                 `json:"activation_message,omitempty"`
	ActivatedAt       time.Time              `json:"activated_at,omitzero"`
	ActivatedFor      string                 `json:"activated_for,omitempty"` // the enrollment|remediation URLs sent
	DeprovisionedGen  string                 `json:"deprovisioned_gen,omitempty"`
	LastHeartbeatAt   time.Time              `json:"last_heartbeat_at,omitzero"`
	HeartbeatError    string                 `json:"heartbeat_error,omitempty"`
	GroupRef          string                 `json:"group_ref,omitempty"`
	GroupID           string                 `json:"group_id,omitempty"`
	Policies          map[string]PolicyState `json:"policies,omitempty"`
	TenantSyncURL     string                 `json:"tenant_sync_url,omitempty"`
	DeviceSyncURL     string                 `json:"device_sync_url,omitempty"`
}

// PolicyState is one platform's partner compliance policy.
type PolicyState struct {
	State     string    `json:"state"`
	PolicyID  string    `json:"policy_id,omitempty"`
	GroupID   string    `json:"group_id,omitempty"`
	Message   string    `json:"message,omitempty"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// notRegisteredRetry: a platform Intune did not know is asked again this
// often (an admin may register it meanwhile).
const notRegisteredRetry = time.Hour

func (c *Client) urls() (enroll, remediate string) {
	base := strings.TrimRight(c.cfg.PortalURL, "/")
	return base + "/enroll", base + "/remediate"
}

// Generation names the integration's configuration (its updated-at): a
// deprovisioned integration is activated again only after an update.
type Generation string

// Maintain brings Intune in line with the configuration, doing only what
// the saved state says is missing: discovery, activation, the group,
// one policy per platform, and the heartbeat when due. It returns the
// state and the first error that blocks uploads (activation).
func (c *Client) Maintain(ctx context.Context, gen Generation) (State, error) {
	st, err := c.cfg.State.LoadState(ctx)
	if err != nil {
		return st, err
	}
	before, _ := json.Marshal(st)
	err = c.maintain(ctx, &st, gen)
	if after, _ := json.Marshal(st); string(after) != string(before) {
		if serr := c.cfg.State.SaveState(ctx, st); serr != nil && err == nil {
			err = serr
		}
	}
	return st, err
}

func (c *Client) maintain(ctx context.Context, st *State, gen Generation) error {
	if st.Activation == ActivationDeprovisioned && st.DeprovisionedGen == string(gen) {
		return &Error{Code: "deprovisioned", Message: "the integration was deprovisioned in Intune; update it to activate it again"}
	}
	tenantSync, deviceSync, err := c.Endpoints(ctx)
	if err != nil {
		return err
	}
	st.TenantSyncURL, st.DeviceSyncURL = tenantSync, deviceSync
	enroll, remediate := c.urls()
	if st.Activation != ActivationActive || st.ActivatedFor != enroll+"|"+remediate {
		if c.cfg.PortalURL == "" {
			st.Activation, st.ActivationMessage = ActivationFailed, "no portal URL: set the hub's --public-url or the integration's portal_url"
			return &Error{Code: "no_portal_url", Message: st.ActivationMessage}
		}
		if err := c.setProvisioned(ctx, tenantSync, provisionedOn, enroll, remediate); err != nil {
			st.Activation, st.ActivationMessage = ActivationFailed, err.Error()
			return err
		}
		st.Activation, st.ActivationMessage, st.ActivatedAt, st.ActivatedFor = ActivationActive, "", c.cfg.Now().UTC(), enroll+"|"+remediate
		st.DeprovisionedGen = ""
		st.LastHeartbeatAt = time.Time{} // beat at once after activation
	}
	// The group and the policies do not block uploads: their failures are
	// recorded per platform for the admin.
	if st.GroupRef != c.cfg.Group || (c.cfg.Group != "" && st.GroupID == "") {
		st.GroupRef, st.GroupID = c.cfg.Group, ""
		if c.cfg.Group != "" {
			id, err := c.GroupID(ctx, c.cfg.Group)
			if err != nil {
				c.cfg.Logger.WarnContext(ctx, "intune: partner group", "group", c.cfg.Group, "err", err)
				for _, p := range c.cfg.Platforms {
					c.setPolicy(st, p, PolicyState{State: PolicyFailed, Message: err.Error()})
				}
			}
			st.GroupID = id
		}
	}
	if c.cfg.Group == "" || st.GroupID != "" {
		for _, p := range c.cfg.Platforms {
			c.ensurePolicy(ctx, st, tenantSync, p)
		}
	}
	if c.cfg.Now().Sub(st.LastHeartbeatAt) >= c.cfg.HeartbeatEvery {
		if err := c.heartbeat(ctx, tenantSync); err != nil {
			st.HeartbeatError = err.Error()
			c.cfg.Logger.WarnContext(ctx, "intune: heartbeat", "err", err)
		} else {
			st.LastHeartbeatAt, st.HeartbeatError = c.cfg.Now().UTC(), ""
		}
	}
	return nil
}

func (c *Client) setPolicy(st *State, platform string, ps PolicyState) {
	if st.Policies == nil {
		st.Policies = map[string]PolicyState{}
	}
	ps.UpdatedAt = c.cfg.Now().UTC()
	st.Policies[platform] = ps
}

// ensurePolicy creates and assigns one platform's policy unless the state
// says it is done.
func (c *Client) ensurePolicy(ctx context.Context, st *State, tenantSync, platform string) {
	cur := st.Policies[platform]
	want := PolicyAssigned
	if st.GroupID == "" {
		want = PolicyCreated
	}
	switch {
	case cur.State == want && cur.GroupID == st.GroupID:
		return
	case cur.State == PolicyNotRegistered && c.cfg.Now().Sub(cur.UpdatedAt) < notRegisteredRetry:
		return
	}
	id := c.policyID(platform)
	if cur.State != PolicyCreated && cur.State != PolicyAssigned {
		r, err := c.do(ctx, c.ep.intune, http.MethodPost, tenantSync+"/PartnerCompliancePolicies?api-version="+TenantAPIVersion, map[string]any{
			"Id": id, "Name": "posture (" + platformCodes[platform] + ")", "Platform": platformCodes[platform],
			"Description": "Devices checked by posture (osquery policies); compliance is reported by the partner.",
		})
		var he *Error
		switch {
		case errors.As(err, &he) && he.Status == http.StatusConflict:
			// Exists (created earlier, state lost): go on to assign it.
		case err != nil:
			c.setPolicy(st, platform, PolicyState{State: PolicyFailed, PolicyID: id, Message: err.Error()})
			return
		case r.status == http.StatusNoContent && len(strings.TrimSpace(string(r.body))) == 0:
			c.setPolicy(st, platform, PolicyState{State: PolicyNotRegistered, PolicyID: id, Message: "Intune answered 204 with no body: the " +
				platformCodes[platform] + " platform is not registered for this partner app; ask Microsoft partner onboarding to enable it, or remove the platform"})
			return
		}
	}
	if st.GroupID == "" {
		c.setPolicy(st, platform, PolicyState{State: PolicyCreated, PolicyID: id, Message: "no group chosen: the policy is not assigned"})
		return
	}
	_, err := c.do(ctx, c.ep.intune, http.MethodPost, fmt.Sprintf("%s/PartnerCompliancePolicies(guid'%s')/Assign?api-version=%s", tenantSync, id, TenantAPIVersion),
		map[string]any{"GroupIds": []string{st.GroupID}})
	if err != nil {
		c.setPolicy(st, platform, PolicyState{State: PolicyFailed, PolicyID: id, Message: "assign: " + err.Error()})
		return
	}
	c.setPolicy(st, platform, PolicyState{State: PolicyAssigned, PolicyID: id, GroupID: st.GroupID})
}

// policyID is stable per app, tenant and platform, so a lost state finds
// the policy again (409) instead of creating a second one.
func (c *Client) policyID(platform string) string {
	h := sha256.Sum256([]byte("posture partner policy|" + c.cfg.ClientID + "|" + strings.ToLower(c.cfg.TenantID) + "|" + platform))
	return formatGUID(h[:16])
}

func (c *Client) setProvisioned(ctx context.Context, tenantSync string, provisioned int, enroll, remediate string) error {
	body := map[string]any{"Provisioned": provisioned}
	if provisioned == provisionedOn {
		body["PartnerEnrollmentUrl"], body["PartnerRemediationUrl"] = enroll, remediate
	}
	u := fmt.Sprintf("%s/PartnerTenants(guid'%s')?api-version=%s", tenantSync, c.cfg.TenantID, TenantAPIVersion)
	r, err := c.do(ctx, c.ep.intune, http.MethodPut, u, body)
	if err != nil {
		return err
	}
	// Intune can answer 200 without provisioning: believe the body only.
	var got struct {
		Provisioned *int `json:"Provisioned"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil || got.Provisioned == nil || *got.Provisioned != provisioned {
		return &Error{Status: r.status, Code: "not_provisioned", Message: fmt.Sprintf("Intune answered %d but the tenant is not provisioned=%d: %s",
			r.status, provisioned, strings.TrimSpace(string(r.body)))}
	}
	return nil
}

func (c *Client) heartbeat(ctx context.Context, tenantSync string) error {
	u := fmt.Sprintf("%s/PartnerTenantHeartbeat(guid'%s')?api-version=%s", tenantSync, c.cfg.TenantID, TenantAPIVersion)
	_, err := c.do(ctx, c.ep.intune, http.MethodPut, u, map[string]any{})
	return err
}

// Deprovision sets Provisioned 2; uploads stop until the integration is
// updated (a new generation).
func (c *Client) Deprovision(ctx context.Context, gen Generation) (State, error) {
	st, err := c.cfg.State.LoadState(ctx)
	if err != nil {
		return st, err
	}
	tenantSync, _, err := c.Endpoints(ctx)
	if err != nil {
		return st, err
	}
	if err := c.setProvisioned(ctx, tenantSync, provisionedOff, "", ""); err != nil {
		return st, err
	}
	st.Activation, st.ActivationMessage, st.ActivatedFor, st.DeprovisionedGen = ActivationDeprovisioned, "", "", string(gen)
	return st, c.cfg.State.SaveState(ctx, st)
}

func formatGUID(b []byte) string {
	b = append([]byte(nil), b...)
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func newGUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
