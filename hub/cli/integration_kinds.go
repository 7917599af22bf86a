package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
)

// kindFlags are the flags of sink kinds other than graph, and group scoping.
type kindFlags struct {
	kind, webhookURL, portalURL, platforms, partnerGroup, scopeGroups string
}

func (k *kindFlags) register(f *flag.FlagSet) {
	f.StringVar(&k.kind, "kind", "graph", "sink: graph (device extension attribute), intune-partner (Intune compliance partner) or webhook (signed JSON); fixed once created")
	f.StringVar(&k.webhookURL, "webhook-url", "", "webhook: the https URL events are POSTed to; the signing secret comes from --client-secret-file or "+envClientSecret)
	f.StringVar(&k.portalURL, "portal-url", "", "intune-partner: the hub's public https base URL for /enroll and /remediate (default: the hub's --public-url)")
	f.StringVar(&k.platforms, "platforms", "", "intune-partner: comma-separated platforms that get a partner compliance policy: macos, windows, ios, android (default macos,windows)")
	f.StringVar(&k.partnerGroup, "partner-group", "", "intune-partner: the Entra group (object id or display name) the partner compliance policies are assigned to")
	f.StringVar(&k.scopeGroups, "scope-groups", "", "graph, intune-partner: comma-separated Entra group object ids; only devices whose device or user is a transitive member are written (empty: no group limit)")
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func (k *kindFlags) apply(in *posturev1.Integration, set map[string]bool) error {
	if set["kind"] && in.GetId() != "" && k.kind != in.GetKind() {
		return fmt.Errorf("--kind: integration %s is a %s integration; the kind cannot change", in.GetId(), in.GetKind())
	}
	if set["webhook-url"] {
		in.WebhookUrl = strings.TrimSpace(k.webhookURL)
	}
	if set["portal-url"] {
		in.PortalUrl = strings.TrimSpace(k.portalURL)
	}
	if set["platforms"] {
		in.PartnerPlatforms = splitList(k.platforms)
	}
	if set["partner-group"] {
		in.PartnerGroup = strings.TrimSpace(k.partnerGroup)
	}
	if set["scope-groups"] {
		in.ScopeGroups = splitList(k.scopeGroups)
	}
	return nil
}

func attributeCol(in *posturev1.Integration) string {
	if in.GetKind() != "" && in.GetKind() != "graph" {
		return "-"
	}
	return fmt.Sprintf("%d", in.GetExtensionAttribute())
}

// printKindFields shows the webhook, partner and scoping settings and the
// partner's activation and per-platform policy state.
func printKindFields(tw *tabwriter.Writer, in *posturev1.Integration) {
	if u := in.GetWebhookUrl(); u != "" {
		fmt.Fprintf(tw, "webhook url\t%s\n", u)
	}
	if len(in.GetScopeGroups()) > 0 {
		fmt.Fprintf(tw, "scope groups\t%s\n", strings.Join(in.GetScopeGroups(), ","))
	}
	if in.GetKind() != "intune-partner" {
		return
	}
	fmt.Fprintf(tw, "portal url\t%s\n", orDash(in.GetPortalUrl()))
	fmt.Fprintf(tw, "platforms\t%s\n", orDash(strings.Join(in.GetPartnerPlatforms(), ",")))
	fmt.Fprintf(tw, "partner group\t%s\n", orDash(in.GetPartnerGroup()))
	ps := in.GetPartnerStatus()
	act := orDash(ps.GetActivation())
	if ps.GetActivatedAt() != nil {
		act += " (" + fmtTime(ps.GetActivatedAt()) + ")"
	}
	fmt.Fprintf(tw, "activation\t%s\n", act)
	if m := ps.GetActivationMessage(); m != "" {
		fmt.Fprintf(tw, "activation message\t%s\n", oneLine(m))
	}
	hb := "never"
	if ps.GetLastHeartbeatAt() != nil {
		hb = fmtTime(ps.GetLastHeartbeatAt())
	}
	if e := ps.GetHeartbeatError(); e != "" {
		hb += "; last attempt failed: " + oneLine(e)
	}
	fmt.Fprintf(tw, "last heartbeat\t%s\n", hb)
	if g := ps.GetGroupId(); g != "" {
		fmt.Fprintf(tw, "partner group id\t%s\n", g)
	}
	for _, p := range ps.GetPolicies() {
		line := p.GetState()
		if p.GetPolicyId() != "" {
			line += " (policy " + p.GetPolicyId() + ")"
		}
		if p.GetMessage() != "" {
			line += ": " + oneLine(p.GetMessage())
		}
		fmt.Fprintf(tw, "policy %s\t%s\n", p.GetPlatform(), line)
	}
}

func integrationDeprovision(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	args, _ = interspersed(args, nil)
	return apiCommand(ctx, "integrations deprovision", args, stdout, stderr, nil, 1, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, pos []string) error {
		in, err := c.DeprovisionIntegration(ctx, &posturev1.DeprovisionIntegrationRequest{Id: pos[0]})
		if err != nil || cf.json {
			return firstErr(err, func() error { return printJSON(stdout, in) })
		}
		fmt.Fprintf(stderr, "deprovisioned integration %s in Intune (Provisioned: 2); update it to activate it again\n", pos[0])
		return printIntegration(stdout, in)
	})
}

func integrationConsentURL(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	args, _ = interspersed(args, nil)
	return apiCommand(ctx, "integrations consent-url", args, stdout, stderr, nil, 1, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, pos []string) error {
		u, err := c.GetAdminConsentUrl(ctx, &posturev1.GetAdminConsentUrlRequest{Id: pos[0]})
		if err != nil || cf.json {
			return firstErr(err, func() error { return printJSON(stdout, u) })
		}
		fmt.Fprintf(stderr, "open this link as an administrator of the tenant (valid until %s); redirect URI to register on the app: %s\n",
			fmtTime(u.GetExpiresAt()), u.GetRedirectUri())
		fmt.Fprintln(stdout, u.GetUrl())
		return nil
	})
}

// printHostScopes is the Entra group scope part of `hosts get`.
func printHostScopes(w io.Writer, h *posturev1.Host) {
	for _, sc := range h.GetScopes() {
		line := fmt.Sprintf("group scope of integration %s: %s", sc.GetIntegrationId(), sc.GetState())
		if sc.GetRefreshedAt() != nil {
			line += " (membership read " + fmtTime(sc.GetRefreshedAt()) + ")"
		}
		if sc.GetError() != "" {
			line += "; last read failed: " + oneLine(sc.GetError())
		}
		fmt.Fprintln(w, line)
	}
}
