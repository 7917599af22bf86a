package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/posture-dev/posture/hub/clientip"
	"github.com/posture-dev/posture/hub/server"
)

func defaultDataDir() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" { // systemd StateDirectory=
		return d
	}
	return "/var/lib/posture-hub"
}

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg server.Config
	var names, logLevel, logFormat string
	fs.StringVar(&cfg.DataDir, "data-dir", defaultDataDir(), "directory for the CA and the embedded SQLite store")
	fs.StringVar(&cfg.DatabaseURL, "database-url", "", "PostgreSQL URL (postgres://…); empty uses embedded SQLite in --data-dir")
	fs.StringVar(&cfg.CACert, "ca-cert", "", "CA certificate PEM (default: created in --data-dir)")
	fs.StringVar(&cfg.CAKey, "ca-key", "", "CA private key PEM")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", ":8443", "TLS address for agents, admin gRPC, health and reflection")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:8080", "address for REST (/api/v1), /healthz, /readyz, /metrics")
	fs.StringVar(&cfg.HTTPCert, "http-tls-cert", "", "serve HTTP over TLS with this certificate")
	fs.StringVar(&cfg.HTTPKey, "http-tls-key", "", "key for --http-tls-cert")
	fs.StringVar(&names, "server-names", "", "comma-separated DNS names/IPs agents use to reach the hub (for its TLS certificate)")
	fs.DurationVar(&cfg.CertLifetime, "cert-lifetime", 30*24*time.Hour, "lifetime of host client certificates")
	fs.DurationVar(&cfg.PolicyInterval, "policy-interval", time.Minute, "how often agents run policies")
	fs.DurationVar(&cfg.PolicyPoll, "policy-poll", 2*time.Second, "how often to check the store for policy changes from other replicas")
	fs.StringVar(&cfg.SecretsKeyFile, "secrets-key-file", "", "key file sealing integration credentials (default: POSTURE_SECRETS_KEY, else secrets.key in --data-dir, made on first start; replicas must share one key)")
	fs.DurationVar(&cfg.ReconcileInterval, "reconcile-interval", time.Hour, "how often to read back what Entra holds and repair drift")
	fs.DurationVar(&cfg.SyncRetention, "sync-retention", 30*24*time.Hour, "how long delivered outbox rows are kept (dead letters stay until retried)")
	fs.Int64Var(&cfg.HTTPMaxBody, "http-max-body", server.DefaultHTTPMaxBody, "largest admin REST request body in bytes (larger: 413)")
	fs.Int64Var(&cfg.HTTPMaxApplyBody, "http-max-apply-body", server.DefaultHTTPMaxApplyBody, "largest policy apply body in bytes (REST and gRPC)")
	fs.StringVar(&cfg.Portal.OrgName, "portal-org-name", "", "organisation name shown on the end-user pages")
	fs.StringVar(&cfg.Portal.SupportURL, "portal-support-url", "", "help link on the end-user pages (https: or mailto:)")
	fs.StringVar(&cfg.Portal.LogoFile, "portal-logo-file", "", "logo image shown on the end-user pages")
	fs.StringVar(&cfg.Portal.KeyFile, "portal-key-file", "", "key signing portal links and sessions (default: POSTURE_PORTAL_KEY, else portal.key in --data-dir; replicas must share one key)")
	fs.DurationVar(&cfg.Portal.LinkTTL, "portal-link-lifetime", 7*24*time.Hour, "how long a signed device link stays valid")
	fs.StringVar(&cfg.Portal.OIDCIssuer, "portal-oidc-issuer", "", "OpenID Connect issuer for portal sign-in (https://login.microsoftonline.com/<tenant>/v2.0)")
	fs.StringVar(&cfg.Portal.OIDCClientID, "portal-oidc-client-id", "", "client id of the Entra app users sign in to the portal with")
	fs.StringVar(&cfg.Portal.OIDCClientSecret, "portal-oidc-client-secret", "", "its client secret (prefer POSTURE_PORTAL_OIDC_CLIENT_SECRET)")
	fs.StringVar(&cfg.Portal.OIDCCAFile, "portal-oidc-ca-file", "", "extra CA bundle trusted for the OIDC issuer (private clouds, stand-ins)")
	fs.StringVar(&cfg.PublicURL, "public-url", "", "the hub's public https base URL (users reach /enroll and /remediate there; Intune partner integrations send them to it)")
	fs.DurationVar(&cfg.ScopeRefresh, "scope-refresh", 15*time.Minute, "how often Entra group membership of group-scoped integrations is read again")
	fs.DurationVar(&cfg.PartnerHeartbeat, "partner-heartbeat", 15*time.Minute, "how often Intune partner integrations send their tenant heartbeat")
	fs.Func("trusted-proxies", "comma-separated CIDRs/IPs of reverse proxies or load balancers whose X-Forwarded-For (or Forwarded) names the client; from any other peer the header is ignored (default: none, the peer is the client)", func(v string) error {
		p, err := clientip.ParseList(v)
		cfg.TrustedProxies = p
		return err
	})
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", "text", "text or json")
	if err := parseFlags(fs, args); err != nil {
		return 2
	}
	log, err := newLogger(stderr, logLevel, logFormat)
	if err != nil {
		fmt.Fprintln(stderr, "posture-hub:", err)
		return 2
	}
	for _, n := range strings.Split(names, ",") {
		if n = strings.TrimSpace(n); n != "" {
			cfg.ServerNames = append(cfg.ServerNames, n)
		}
	}
	if h, err := os.Hostname(); err == nil {
		cfg.ServerNames = append(cfg.ServerNames, h)
	}
	cfg.Logger = log
	cfg.Version = Version
	hub, err := server.New(ctx, cfg)
	if err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	if err := hub.Run(ctx); err != nil {
		log.Error("hub failed", "err", err)
		return 1
	}
	return 0
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
