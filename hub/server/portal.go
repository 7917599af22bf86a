package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/agentapi"
	"github.com/posture-dev/posture/hub/portal"
	"github.com/posture-dev/posture/hub/store"
)

// PortalConfig configures the end-user pages (/remediate, /enroll).
type PortalConfig struct {
	OrgName    string
	SupportURL string
	LogoFile   string
	// PublicURL is the portal's external base URL (https://…): hosts get
	// signed links to it, and it is the sign-in redirect base.
	PublicURL string
	// KeyFile holds the link/session signing key (else POSTURE_PORTAL_KEY,
	// else portal.key in the data dir; replicas must share it).
	KeyFile string
	// LinkTTL is how long a device link stays valid (default 7 days).
	LinkTTL time.Duration
	// OpenID Connect sign-in (Entra): all three set turns it on.
	OIDCIssuer, OIDCClientID, OIDCClientSecret string
	// OIDCCAFile is an extra CA bundle to trust for the issuer.
	OIDCCAFile string
	// OIDCHTTPClient overrides the client reaching the issuer (tests).
	OIDCHTTPClient *http.Client
	// Recheck limits (zero: the portal's defaults).
	RecheckPerDevice, RecheckPerAddr portal.Limit
}

// setupPortal builds the signer, the cross-replica event bus, the router and
// the PortalService; before the agent API, which sends DeviceStatus.
func (h *Hub) setupPortal(ctx context.Context) error {
	key, err := portal.LoadKey(h.cfg.Portal.KeyFile, h.cfg.DataDir)
	if err != nil {
		return err
	}
	if h.portalSigner, err = portal.NewSigner(key, nil); err != nil {
		return err
	}
	var bus agentapi.Bus
	if h.cfg.DatabaseURL != "" {
		if h.bus, err = agentapi.NewPGBus(ctx, h.cfg.DatabaseURL, h.log.With("component", "events")); err != nil {
			return err
		}
		bus = h.bus
	}
	h.Router = agentapi.NewRouter(h.Registry, bus, func(ctx context.Context, hostID string) (*posturev1.DeviceStatus, error) {
		return h.Portal.DeviceStatus(ctx, hostID)
	}, h.log.With("component", "router"))
	h.Portal = portal.NewService(portal.ServiceConfig{
		Store: h.Store, Signer: h.portalSigner, Router: h.Router, Logger: h.log.With("component", "portal"),
		PublicURL: h.cfg.Portal.PublicURL, LinkTTL: h.cfg.Portal.LinkTTL,
		RecheckPerDevice: h.cfg.Portal.RecheckPerDevice, RecheckPerAddr: h.cfg.Portal.RecheckPerAddr,
		Proxies: h.proxies,
	})
	return nil
}

// verdictChanged tells the host its new verdict, wherever its stream is.
func (h *Hub) verdictChanged(hostID string, _ store.Verdict) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h.Router.StatusChanged(ctx, hostID)
}

// registerPortal puts the JSON API and the pages on the gateway mux; the
// pages reach PortalService over the gateway's own gRPC connection.
func (h *Hub) registerPortal(ctx context.Context, gwMux *runtime.ServeMux, endpoint string, creds credentials.TransportCredentials) error {
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if err := posturev1.RegisterPortalServiceHandlerFromEndpoint(ctx, gwMux, endpoint, opts); err != nil {
		return fmt.Errorf("portal gateway: %w", err)
	}
	conn, err := grpc.NewClient(endpoint, opts...)
	if err != nil {
		return fmt.Errorf("portal client: %w", err)
	}
	h.portalConn = conn
	pc := h.cfg.Portal
	po := portal.Options{OrgName: pc.OrgName, SupportURL: pc.SupportURL, PublicURL: pc.PublicURL, Logger: h.log.With("component", "portal"), Proxies: h.proxies,
		OIDC: portal.OIDCConfig{Issuer: pc.OIDCIssuer, ClientID: pc.OIDCClientID, ClientSecret: pc.OIDCClientSecret, HTTPClient: pc.OIDCHTTPClient}}
	if pc.LogoFile != "" {
		if po.Logo, err = os.ReadFile(pc.LogoFile); err != nil {
			return fmt.Errorf("portal logo: %w", err)
		}
	}
	if pc.OIDCCAFile != "" && po.OIDC.HTTPClient == nil {
		pem, err := os.ReadFile(pc.OIDCCAFile)
		if err != nil {
			return fmt.Errorf("portal OIDC CA: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("portal OIDC CA %s: no certificates", pc.OIDCCAFile)
		}
		po.OIDC.HTTPClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	}
	pages, err := portal.NewPages(posturev1.NewPortalServiceClient(conn), h.portalSigner, po)
	if err != nil {
		return err
	}
	return pages.Register(gwMux)
}
