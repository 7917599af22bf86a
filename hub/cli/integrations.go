package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
)

func cmdIntegrations(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	verb, rest, ok := subcommand(args, stderr, "list, get, create, update, delete, test, deprovision, consent-url, resume")
	if !ok {
		return 2
	}
	switch verb {
	case "list":
		return apiCommand(ctx, "integrations list", rest, stdout, stderr, nil, 0, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, _ []string) error {
			resp, err := c.ListIntegrations(ctx, &posturev1.ListIntegrationsRequest{})
			if err != nil || cf.json {
				return firstErr(err, func() error { return printJSON(stdout, resp) })
			}
			tw := newTable(stdout)
			fmt.Fprintln(tw, "ID\tNAME\tKIND\tCLOUD\tTENANT\tATTRIBUTE\tCREDENTIAL\tTEAMS\tHEALTH\tWARNINGS")
			for _, in := range resp.GetIntegrations() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", in.GetId(), in.GetName(), orDash(in.GetKind()), in.GetCloud(), orDash(in.GetTenantId()),
					attributeCol(in), orDash(in.GetCredentialKind()), teamsList(in.GetTeams()), orUnchecked(in.GetHealth()), len(in.GetWarnings()))
			}
			return tw.Flush()
		})
	case "get":
		rest, _ = interspersed(rest, nil)
		return apiCommand(ctx, "integrations get", rest, stdout, stderr, nil, 1, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, pos []string) error {
			in, err := c.GetIntegration(ctx, &posturev1.GetIntegrationRequest{Id: pos[0]})
			if err != nil || cf.json {
				return firstErr(err, func() error { return printJSON(stdout, in) })
			}
			return printIntegration(stdout, in)
		})
	case "create":
		return integrationWrite(ctx, rest, stdout, stderr, false)
	case "update":
		return integrationWrite(ctx, rest, stdout, stderr, true)
	case "delete":
		rest, _ = interspersed(rest, nil)
		return apiCommand(ctx, "integrations delete", rest, stdout, stderr, nil, 1, func(ctx context.Context, c posturev1.AdminServiceClient, _ *clientFlags, pos []string) error {
			if _, err := c.DeleteIntegration(ctx, &posturev1.DeleteIntegrationRequest{Id: pos[0]}); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "deleted integration %s\n", pos[0])
			return nil
		})
	case "resume":
		rest, _ = interspersed(rest, nil)
		return apiCommand(ctx, "integrations resume", rest, stdout, stderr, nil, 1, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, pos []string) error {
			r, err := c.ResumeIntegration(ctx, &posturev1.ResumeIntegrationRequest{Id: pos[0]})
			if err != nil || cf.json {
				return firstErr(err, func() error { return printJSON(stdout, r) })
			}
			fmt.Fprintf(stdout, "integration %s resumed: %d held-back writes due now\n", pos[0], r.GetRequeued())
			return nil
		})
	case "test":
		rest, _ = interspersed(rest, nil)
		return apiCommand(ctx, "integrations test", rest, stdout, stderr, nil, 1, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, pos []string) error {
			r, err := c.TestIntegration(ctx, &posturev1.TestIntegrationRequest{Id: pos[0]})
			if err != nil {
				return err
			}
			if cf.json {
				if err := printJSON(stdout, r); err != nil {
					return err
				}
			} else {
				tw := newTable(stdout)
				fmt.Fprintf(tw, "ok\t%v\n", r.GetOk())
				fmt.Fprintf(tw, "token\t%s\n", okFailed(r.GetTokenOk()))
				fmt.Fprintf(tw, "device read\t%s\n", okFailed(r.GetDeviceReadOk()))
				fmt.Fprintf(tw, "health\t%s\n", orUnchecked(r.GetHealth()))
				if r.GetTokenOk() {
					perm := "not granted (needed only by teams with revoke_sessions)"
					if r.GetRevokeSessionsPermitted() {
						perm = "granted"
					}
					fmt.Fprintf(tw, "User.RevokeSessions.All\t%s\n", perm)
				}
				fmt.Fprintf(tw, "message\t%s\n", r.GetMessage())
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			if !r.GetOk() {
				return fmt.Errorf("integration %s: connection test failed (%s)", pos[0], r.GetHealth())
			}
			return nil
		})
	case "deprovision":
		return integrationDeprovision(ctx, rest, stdout, stderr)
	case "consent-url":
		return integrationConsentURL(ctx, rest, stdout, stderr)
	}
	fmt.Fprintf(stderr, "integrations: unknown subcommand %q\n", verb)
	return 2
}

func okFailed(b bool) string {
	if b {
		return "ok"
	}
	return "failed"
}

func orUnchecked(h string) string {
	if h == "" {
		return "unchecked"
	}
	return h
}

func teamsList(ts []string) string {
	if len(ts) == 0 {
		return "(all)"
	}
	return strings.Join(ts, ",")
}

// printIntegration shows everything the API returns; credentials are
// write-only, so only their kind and expiry appear.
func printIntegration(w io.Writer, in *posturev1.Integration) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "id\t%s\n", in.GetId())
	fmt.Fprintf(tw, "name\t%s\n", in.GetName())
	fmt.Fprintf(tw, "kind\t%s\n", in.GetKind())
	fmt.Fprintf(tw, "cloud\t%s\n", in.GetCloud())
	if in.GetCloud() == "custom" {
		fmt.Fprintf(tw, "authority host\t%s\n", in.GetAuthorityHost())
		fmt.Fprintf(tw, "graph base url\t%s\n", in.GetGraphBaseUrl())
		res := in.GetGraphResource()
		if res == "" {
			res = "https://graph.microsoft.com (default)"
		}
		fmt.Fprintf(tw, "graph resource\t%s\n", res)
		ca := "none"
		if in.GetExtraCaPem() != "" {
			ca = "yes (PEM)"
		}
		fmt.Fprintf(tw, "extra CA\t%s\n", ca)
	}
	fmt.Fprintf(tw, "tenant id\t%s\n", in.GetTenantId())
	fmt.Fprintf(tw, "client id\t%s\n", in.GetClientId())
	cred := orDash(in.GetCredentialKind())
	switch {
	case in.GetCredentialKind() == "certificate" && in.GetCertificateNotAfter() != nil:
		cred += ", valid until " + fmtTime(in.GetCertificateNotAfter())
	case in.GetSecretExpiresAt() != nil:
		cred += ", expires " + fmtTime(in.GetSecretExpiresAt())
	}
	fmt.Fprintf(tw, "credential\t%s\n", cred)
	if in.GetKind() == "" || in.GetKind() == "graph" {
		fmt.Fprintf(tw, "attribute\textensionAttribute%d = %q / %q\n", in.GetExtensionAttribute(), in.GetCompliantValue(), in.GetNoncompliantValue())
	}
	printKindFields(tw, in)
	fmt.Fprintf(tw, "teams\t%s\n", teamsList(in.GetTeams()))
	health := orUnchecked(in.GetHealth())
	if in.GetHealthCheckedAt() != nil {
		health += " (checked " + fmtTime(in.GetHealthCheckedAt()) + ")"
	}
	fmt.Fprintf(tw, "health\t%s\n", health)
	if m := in.GetHealthMessage(); m != "" {
		fmt.Fprintf(tw, "health message\t%s\n", oneLine(m))
	}
	for _, warn := range in.GetWarnings() {
		fmt.Fprintf(tw, "warning\t%s\n", warn)
	}
	fmt.Fprintf(tw, "created\t%s\n", fmtTime(in.GetCreatedAt()))
	fmt.Fprintf(tw, "updated\t%s\n", fmtTime(in.GetUpdatedAt()))
	return tw.Flush()
}

// Credentials come from files or the environment, never from a flag
// value: a command line is visible to every user in ps and is kept in
// shell history.
const (
	envClientSecret = "POSTURE_CLIENT_SECRET"
	envCertPassword = "POSTURE_CERTIFICATE_PASSWORD"
)

// integrationWrite is `integrations create` and `integrations update ID`.
// Update replaces the whole integration on the hub, so it starts from the
// current settings and changes only the flags given; an absent credential
// keeps the stored one.
func integrationWrite(ctx context.Context, args []string, stdout, stderr io.Writer, update bool) int {
	name := "integrations create"
	nargs := 0
	if update {
		name, nargs = "integrations update", 1
	}
	var fs *flag.FlagSet
	var (
		intName, cloud, authority, graphURL, graphResource, caFile, tenant, client string
		secretFile, certFile, certPwFile, secretExpires                            string
		compliantValue, noncompliantValue, teams                                   string
		attribute                                                                  int
		kf                                                                         kindFlags
	)
	extra := func(f *flag.FlagSet) {
		fs = f
		if update {
			withUsage(f, "integrations update ID [flags]\n\nChanges only the settings given; without a new credential the stored one is kept.")
		} else {
			withUsage(f, "integrations create --name N --tenant-id T --client-id C --attribute 1..15 (--client-secret-file F | --certificate-file F) [flags]\n\n"+
				"The client secret is read from a file or "+envClientSecret+", never from the command line, where ps and shell history would show it.")
		}
		f.StringVar(&intName, "name", "", "a name for the integration")
		f.StringVar(&cloud, "cloud", "public", "Microsoft cloud: public, usgov (GCC High), usgov-dod, china (21Vianet) or custom")
		f.StringVar(&authority, "authority-host", "", "custom cloud: Entra authority host (https://…)")
		f.StringVar(&graphURL, "graph-base-url", "", "custom cloud: Graph base URL (https://…), e.g. an egress proxy or private endpoint")
		f.StringVar(&graphResource, "graph-resource", "", "custom cloud: the Graph resource tokens are requested for (default https://graph.microsoft.com); "+
			"change it only when the Graph behind the base URL is a national cloud's (https://graph.microsoft.us, https://dod-graph.microsoft.us, "+
			"https://microsoftgraph.chinacloudapi.cn) or an air-gapped cloud's, never to the proxy's URL")
		f.StringVar(&caFile, "extra-ca-file", "", "custom cloud: PEM file of a CA to trust for the authority and Graph")
		f.StringVar(&tenant, "tenant-id", "", "Entra tenant id")
		f.StringVar(&client, "client-id", "", "application (client) id of the app registration")
		f.StringVar(&secretFile, "client-secret-file", "",
			"file holding the client secret (or set "+envClientSecret+"); there is no flag for the secret itself, because a command line shows in ps and shell history")
		f.StringVar(&certFile, "certificate-file", "", "certificate with its private key, PEM or PFX (instead of a client secret)")
		f.StringVar(&certPwFile, "certificate-password-file", "", "file holding the PFX password (or set "+envCertPassword+")")
		f.StringVar(&secretExpires, "secret-expires", "", "when the client secret expires, RFC 3339 date (2027-01-31) or time; enables expiry warnings")
		f.IntVar(&attribute, "attribute", 0, "device extension attribute to write, 1..15")
		f.StringVar(&compliantValue, "compliant-value", "", `value written for compliant devices (default "Compliant")`)
		f.StringVar(&noncompliantValue, "noncompliant-value", "", `value written for non-compliant devices (default "Non-compliant")`)
		f.StringVar(&teams, "teams", "", `comma-separated teams whose hosts it syncs (empty: every team)`)
		kf.register(f)
	}
	args, _ = interspersed(args, extra)
	return apiCommand(ctx, name, args, stdout, stderr, extra, nargs, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, pos []string) error {
		set := given(fs)
		in := &posturev1.Integration{}
		if update {
			cur, err := c.GetIntegration(ctx, &posturev1.GetIntegrationRequest{Id: pos[0]})
			if err != nil {
				return err
			}
			in = &posturev1.Integration{
				Id: cur.GetId(), Name: cur.GetName(), Kind: cur.GetKind(), Cloud: cur.GetCloud(), AuthorityHost: cur.GetAuthorityHost(),
				GraphBaseUrl: cur.GetGraphBaseUrl(), GraphResource: cur.GetGraphResource(), ExtraCaPem: cur.GetExtraCaPem(), TenantId: cur.GetTenantId(), ClientId: cur.GetClientId(),
				SecretExpiresAt: cur.GetSecretExpiresAt(), ExtensionAttribute: cur.GetExtensionAttribute(),
				CompliantValue: cur.GetCompliantValue(), NoncompliantValue: cur.GetNoncompliantValue(), Teams: cur.GetTeams(),
				WebhookUrl: cur.GetWebhookUrl(), PortalUrl: cur.GetPortalUrl(), PartnerPlatforms: cur.GetPartnerPlatforms(),
				PartnerGroup: cur.GetPartnerGroup(), ScopeGroups: cur.GetScopeGroups(),
			}
		} else {
			set["cloud"] = true // the default applies
			in.Kind = kf.kind
			if strings.TrimSpace(intName) == "" {
				return errors.New("--name is required")
			}
			switch kf.kind {
			case "webhook":
				if kf.webhookURL == "" {
					return errors.New("--webhook-url is required for a webhook")
				}
			case "graph", "intune-partner":
				if tenant == "" || client == "" {
					return errors.New("--tenant-id and --client-id are required")
				}
				if attribute == 0 && kf.kind == "graph" {
					return errors.New("--attribute (1..15) is required: the device extension attribute Conditional Access filters on")
				}
			default:
				return fmt.Errorf("--kind %q: want graph, intune-partner or webhook", kf.kind)
			}
		}
		if err := kf.apply(in, set); err != nil {
			return err
		}
		str := map[string]*string{
			"name": &in.Name, "cloud": &in.Cloud, "authority-host": &in.AuthorityHost, "graph-base-url": &in.GraphBaseUrl, "graph-resource": &in.GraphResource,
			"tenant-id": &in.TenantId, "client-id": &in.ClientId, "compliant-value": &in.CompliantValue, "noncompliant-value": &in.NoncompliantValue,
		}
		val := map[string]string{
			"name": intName, "cloud": cloud, "authority-host": authority, "graph-base-url": graphURL, "graph-resource": graphResource,
			"tenant-id": tenant, "client-id": client, "compliant-value": compliantValue, "noncompliant-value": noncompliantValue,
		}
		for k, p := range str {
			if set[k] {
				*p = strings.TrimSpace(val[k])
			}
		}
		switch in.GetCloud() {
		case "public", "usgov", "usgov-dod", "china", "custom":
		default:
			return fmt.Errorf("--cloud %q: want public, usgov, usgov-dod, china or custom", in.GetCloud())
		}
		if set["attribute"] {
			if attribute < 1 || attribute > 15 {
				return fmt.Errorf("--attribute %d: want 1..15 (extensionAttribute1..15)", attribute)
			}
			in.ExtensionAttribute = int32(attribute)
		}
		if set["teams"] {
			in.Teams = nil
			for _, t := range strings.Split(teams, ",") {
				if t = strings.TrimSpace(t); t != "" {
					in.Teams = append(in.Teams, t)
				}
			}
		}
		if set["extra-ca-file"] {
			in.ExtraCaPem = ""
			if caFile != "" {
				b, err := os.ReadFile(caFile)
				if err != nil {
					return fmt.Errorf("--extra-ca-file: %w", err)
				}
				if !strings.Contains(string(b), "-----BEGIN CERTIFICATE-----") {
					return fmt.Errorf("--extra-ca-file %s: no PEM certificate", caFile)
				}
				in.ExtraCaPem = string(b)
			}
		}
		// The credential.
		secret, err := readSecret(secretFile, "--client-secret-file", envClientSecret)
		if err != nil {
			return err
		}
		in.ClientSecret = secret
		if certFile != "" {
			if in.Certificate, err = os.ReadFile(certFile); err != nil {
				return fmt.Errorf("--certificate-file: %w", err)
			}
			if in.CertificatePassword, err = readSecret(certPwFile, "--certificate-password-file", envCertPassword); err != nil {
				return err
			}
		} else if certPwFile != "" {
			return errors.New("--certificate-password-file needs --certificate-file")
		}
		switch {
		case in.ClientSecret != "" && len(in.Certificate) > 0:
			return fmt.Errorf("give a client secret (--client-secret-file or %s) or --certificate-file, not both", envClientSecret)
		case !update && in.ClientSecret == "" && len(in.Certificate) == 0:
			return fmt.Errorf("a credential is required: --client-secret-file (or %s), or --certificate-file", envClientSecret)
		}
		if in.ClientSecret != "" || len(in.Certificate) > 0 {
			in.SecretExpiresAt = nil // the old expiry belonged to the old credential
		}
		if secretExpires != "" {
			t, err := parseDateOrTime(secretExpires)
			if err != nil {
				return fmt.Errorf("--secret-expires: %w", err)
			}
			in.SecretExpiresAt = timestamppb.New(t)
		}
		var out *posturev1.Integration
		if update {
			out, err = c.UpdateIntegration(ctx, &posturev1.UpdateIntegrationRequest{Integration: in})
		} else {
			out, err = c.CreateIntegration(ctx, &posturev1.CreateIntegrationRequest{Integration: in})
		}
		if err != nil || cf.json {
			return firstErr(err, func() error { return printJSON(stdout, out) })
		}
		verb := "created"
		if update {
			verb = "updated"
		}
		fmt.Fprintf(stderr, "%s integration %s; check it with `posture-hub integrations test %s`\n", verb, out.GetId(), out.GetId())
		return printIntegration(stdout, out)
	})
}

// readSecret reads a credential from file (trailing newline dropped), else
// from the environment variable env; "" when neither is given.
func readSecret(file, flagName, env string) (string, error) {
	if file == "" {
		return os.Getenv(env), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flagName, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s %s: the file is empty", flagName, file)
	}
	return s, nil
}

func parseDateOrTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q: want an RFC 3339 date (2027-01-31) or time (2027-01-31T00:00:00Z)", s)
}
