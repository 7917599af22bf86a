// Package server assembles a hub: store, CA, the gRPC server (agent + admin
// APIs, health, reflection) on one TLS port, and the HTTP server (REST via
// grpc-gateway, health, metrics). It is what `posture-hub serve` runs and
// what end-to-end tests start in-process.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/admin"
	"github.com/posture-dev/posture/hub/agentapi"
	"github.com/posture-dev/posture/hub/ca"
	"github.com/posture-dev/posture/hub/clientip"
	"github.com/posture-dev/posture/hub/integrations"
	"github.com/posture-dev/posture/hub/portal"
	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/postgres"
	"github.com/posture-dev/posture/hub/store/sqlite"
	hubsync "github.com/posture-dev/posture/hub/sync"
	"github.com/posture-dev/posture/hub/verdicts"
)

// Config is everything `posture-hub serve` can set.
type Config struct {
	// DataDir holds the CA (unless CACert/CAKey are given) and the embedded
	// SQLite database (unless DatabaseURL is given).
	DataDir     string
	DatabaseURL string
	CACert      string
	CAKey       string
	// GRPCAddr is the TLS port for agents, the admin gRPC API, health and
	// reflection.
	GRPCAddr string
	// HTTPAddr serves REST, /healthz, /readyz and /metrics.
	HTTPAddr string
	// HTTPCert/HTTPKey serve HTTP over TLS (e.g. a public certificate).
	HTTPCert, HTTPKey string
	// ServerNames go into the hub's TLS certificate (localhost is always added).
	ServerNames    []string
	CertLifetime   time.Duration
	PolicyInterval time.Duration
	// PolicyPoll is how often a replica checks the store for policy changes
	// made through another replica.
	PolicyPoll time.Duration
	Logger     *slog.Logger
	// Version is reported in logs and metrics.
	Version string
	// SecretsKeyFile seals integration credentials (else POSTURE_SECRETS_KEY,
	// else secrets.key in DataDir, created on first start).
	SecretsKeyFile string
	// ReconcileInterval between read-backs of what Entra holds (default 1h).
	ReconcileInterval time.Duration
	// SyncPoll is the sync worker's idle poll (default 1 s); it is also woken
	// at once by verdict changes on this replica.
	SyncPoll time.Duration
	// DuePoll is how often due time-driven verdict changes are looked for
	// (default 1 s).
	DuePoll time.Duration
	// SyncRetention keeps delivered outbox rows this long (default 30 days);
	// dead letters are kept until retried.
	SyncRetention time.Duration
	// HTTPMaxBody caps an admin REST request body (default 1 MiB);
	// HTTPMaxApplyBody caps policy apply's (default 16 MiB), which is also
	// ApplyPolicies' gRPC message cap.
	HTTPMaxBody, HTTPMaxApplyBody int64
	// Portal configures the end-user pages.
	Portal PortalConfig
	// PublicURL is the hub's public https base URL, where users reach
	// /enroll and /remediate (Intune partner integrations send them there).
	PublicURL string
	// PartnerMaintain is how often partner integrations are checked
	// (activation, policies) and their heartbeat sent when due (default 1m);
	// PartnerHeartbeat is the heartbeat interval (default 15m).
	PartnerMaintain, PartnerHeartbeat time.Duration
	// PartnerPoll is the wait between upload status reads (default 1s).
	PartnerPoll time.Duration
	// ScopeRefresh is how often Entra group membership of scoped
	// integrations is read again (default 15m).
	ScopeRefresh time.Duration
	// TrustedProxies are the reverse proxies / load balancers whose
	// X-Forwarded-For (or Forwarded) header names the client; from any
	// other peer the header is ignored. Empty: the peer is the client.
	TrustedProxies []netip.Prefix
}

// Hub is a running (or ready to run) hub.
type Hub struct {
	cfg      Config
	log      *slog.Logger
	Store    store.Store
	CA       *ca.CA
	Registry *agentapi.Registry
	Agent    *agentapi.Server
	Admin    *admin.Server
	Engine   *verdicts.Engine
	Worker   *hubsync.Worker
	// Integrations builds the sinks verdicts are pushed to.
	Integrations *integrations.Registry
	reconciler   *hubsync.Reconciler
	// Router reaches a host's stream on whichever replica holds it.
	Router *agentapi.Router
	// Portal serves PortalService (the end-user pages' data).
	Portal       *portal.Service
	portalSigner *portal.Signer
	portalConn   *grpc.ClientConn
	bus          *agentapi.PGBus
	// proxies resolves client addresses (portal limits, audit source).
	proxies *clientip.Resolver

	grpcLn, httpLn, gwLn net.Listener
	gwDir                string
	grpcSrv              *grpc.Server
	httpSrv              *http.Server
	health               *health.Server
	metrics              *prometheus.Registry

	// lock is the data dir's lock, held for the hub's life on SQLite.
	lock *dirLock
	// integrityErr is set when the store failed its start-up integrity
	// check: the hub runs, but /readyz says why it is not ready.
	integrityErr error
}

// StreamHeartbeat is how often a replica refreshes its stream heartbeat in
// the store; admin.DefaultStreamTTL is three of these.
const StreamHeartbeat = 15 * time.Second

// OpenStore opens PostgreSQL when url is set, else SQLite in dataDir.
func OpenStore(ctx context.Context, dataDir, url string) (store.Store, error) {
	if url != "" {
		return postgres.Open(ctx, url)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	return sqlite.Open(ctx, filepath.Join(dataDir, "posture.db"))
}

// New opens the store and CA and binds the listeners (so ports are known
// before Run). Close releases everything if Run is never called.
func New(ctx context.Context, cfg Config) (*Hub, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PolicyPoll == 0 {
		cfg.PolicyPoll = 2 * time.Second
	}
	if cfg.DataDir == "" {
		return nil, errors.New("data dir is required")
	}
	// One public URL serves the portal's signed links and the partner
	// integrations' enrollment and remediation URLs.
	if cfg.Portal.PublicURL == "" {
		cfg.Portal.PublicURL = cfg.PublicURL
	}
	if cfg.PublicURL == "" {
		cfg.PublicURL = cfg.Portal.PublicURL
	}
	if cfg.HTTPMaxBody <= 0 {
		cfg.HTTPMaxBody = DefaultHTTPMaxBody
	}
	if cfg.HTTPMaxApplyBody <= 0 {
		cfg.HTTPMaxApplyBody = DefaultHTTPMaxApplyBody
	}
	if cfg.HTTPMaxApplyBody < cfg.HTTPMaxBody {
		cfg.HTTPMaxApplyBody = cfg.HTTPMaxBody
	}
	h := &Hub{cfg: cfg, log: cfg.Logger, metrics: prometheus.NewRegistry(), proxies: clientip.New(cfg.TrustedProxies)}
	for _, p := range cfg.TrustedProxies {
		if p.Bits() == 0 {
			h.log.Warn("TRUSTED PROXIES INCLUDE EVERY ADDRESS (" + p.String() + "): any client can name its own address " +
				"in X-Forwarded-For and dodge the portal's limits or fake its audit source; list only your proxies")
		}
	}
	if len(cfg.TrustedProxies) > 0 {
		h.log.Info("client addresses taken from X-Forwarded-For/Forwarded when the peer is a trusted proxy", "trusted_proxies", cfg.TrustedProxies)
	}
	ok := false
	defer func() {
		if !ok {
			h.Close()
		}
	}()
	// One process initialises a data dir at a time: two hubs started
	// together must not each create a CA. On SQLite the lock is held for
	// life (the database belongs to one hub); PostgreSQL replicas sharing
	// the dir hold it only while creating or loading the CA and key.
	var err error
	lockWait := 30 * time.Second
	if cfg.DatabaseURL == "" {
		lockWait = 5 * time.Second
	}
	if h.lock, err = lockDataDir(cfg.DataDir, lockWait); err != nil {
		return nil, err
	}
	if cfg.CACert != "" || cfg.CAKey != "" {
		h.CA, err = ca.LoadFiles(cfg.CACert, cfg.CAKey)
	} else {
		h.CA, err = ca.LoadOrCreate(cfg.DataDir)
	}
	if err != nil {
		return nil, err
	}
	keys, err := loadKeys(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.DatabaseURL != "" {
		h.lock.unlock()
		h.lock = nil
	}
	h.Store, err = OpenStore(ctx, cfg.DataDir, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if c, ok := h.Store.(interface{ QuickCheck(context.Context) error }); ok {
		if err := c.QuickCheck(ctx); err != nil {
			h.integrityErr = err
			h.log.Error("STORE INTEGRITY CHECK FAILED: the hub will not report ready; restore the database from a backup",
				"data_dir", cfg.DataDir, "err", err)
		}
	}
	h.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	st, ok := h.Store.(syncStore)
	if !ok {
		return nil, fmt.Errorf("store %T has no sync outbox", h.Store)
	}
	h.Integrations = integrations.New(st, keys, h.log)
	h.Integrations.SetHosts(st) // webhook events name the host and its failing policies
	h.Integrations.SetPartnerDefaults(integrations.PartnerDefaults{PortalURL: cfg.PublicURL,
		HeartbeatEvery: cfg.PartnerHeartbeat, PollInterval: cfg.PartnerPoll})
	syncMetrics, err := hubsync.NewPromMetrics(h.metrics)
	if err != nil {
		return nil, err
	}
	if h.Worker, err = hubsync.NewWorker(hubsync.Config{
		Outbox: st, Sinks: h.Integrations.Sink, Logger: h.log.With("component", "sync"),
		Metrics: syncMetrics, PollInterval: cfg.SyncPoll,
		// Graph's device-write quota is per app per tenant, which is what
		// an integration is; keying by integration also keeps one broken
		// credential from pausing a working integration of the same tenant.
		QuotaKey: func(c hubsync.Change) string { return c.IntegrationID },
	}); err != nil {
		return nil, err
	}
	// The worker's quota key is the integration id: a rebuilt sink (new
	// credential or settings, possibly on another replica) ends its pause.
	h.Integrations.OnRebuild(h.Worker.Resume)
	if h.reconciler, err = hubsync.NewReconciler(hubsync.ReconcilerConfig{
		Devices: st, Outbox: st, Sinks: h.Integrations.Sink, Logger: h.log.With("component", "reconcile"),
		Interval: cfg.ReconcileInterval, OnEnqueue: h.Worker.Notify, OnDeviceInfo: h.checkDevice,
	}); err != nil {
		return nil, err
	}
	h.Engine = verdicts.New(verdicts.Config{
		Store: st, Logger: h.log.With("component", "verdicts"), Enqueued: h.Worker.Notify, DuePoll: cfg.DuePoll,
		Metrics: h.metrics, Changed: h.verdictChanged, Scope: h.Integrations.Covers,
	})
	h.Registry = agentapi.NewRegistry()
	if err := h.setupPortal(ctx); err != nil {
		return nil, err
	}
	h.Agent = agentapi.New(agentapi.Config{
		Store: h.Store, CA: h.CA, Registry: h.Registry, Logger: h.log,
		CertLifetime: cfg.CertLifetime, PolicyInterval: cfg.PolicyInterval, Metrics: h.metrics,
		Observer: func(_ context.Context, hostID string, out store.RecordOutcome) {
			h.Engine.Observe(hostID, len(out.Changed) > 0)
		},
		IdentityChanged: func(hostID string) { h.Engine.Notify(hostID, true) },
		DeviceReleased: func(ctx context.Context, deviceID string) {
			if err := h.Engine.NotifyDevice(ctx, deviceID); err != nil {
				h.log.Warn("re-evaluate device claimants", "device", deviceID, "err", err)
			}
		},
		HealthChanged: func(hostID string) { h.Engine.Notify(hostID, false) },
		Status:        h.Portal.DeviceStatus,
	})
	h.Admin = admin.New(admin.Config{
		Store: h.Store, Streams: h.Router, Logger: h.log, Verdicts: h.Engine,
		Integrations: adminIntegrations{r: h.Integrations, publicURL: cfg.PublicURL}, SyncNotify: h.Worker.Notify,
		SyncResume: h.resumeIntegration,
	})

	serverCert, err := h.CA.ServerCert(append([]string{"localhost", "127.0.0.1", "::1"}, cfg.ServerNames...), 365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	tlsCfg := &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		// Enroll is server-TLS only; Renew and Connect check the verified
		// chain themselves, and the admin API uses bearer tokens.
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  h.CA.Pool(),
		MinVersion: tls.VersionTLS12,
	}
	auth := &admin.Authenticator{Tokens: h.Store, Now: time.Now}
	// The auditor wraps the authenticator so that calls refused for their
	// role are in the audit log too.
	auditor := &admin.Auditor{Log: h.Store, Logger: h.log.With("component", "audit"), Proxies: h.proxies}
	rpcm := newRPCMetrics(h.metrics)
	caps := msgCaps{apply: int(cfg.HTTPMaxApplyBody)}
	h.grpcSrv = grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsCfg)),
		// The largest per-method cap; msgCaps holds each method to its own.
		grpc.MaxRecvMsgSize(max(caps.apply, grpcAgentMaxMsg)),
		// Only the gateway's socket may name the client address.
		grpc.ChainUnaryInterceptor(clientip.StripUnary, recoverUnary(h.log), rpcm.unary, caps.unary, auditor.Unary, auth.Unary),
		grpc.ChainStreamInterceptor(clientip.StripStream, recoverStream(h.log), rpcm.stream, caps.stream, auth.Stream),
		// Find dead hosts within ~1.5 min; let agents ping every 20 s.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 15 * time.Second, PermitWithoutStream: true}),
	)
	posturev1.RegisterAgentServiceServer(h.grpcSrv, h.Agent)
	posturev1.RegisterAdminServiceServer(h.grpcSrv, h.Admin)
	posturev1.RegisterPortalServiceServer(h.grpcSrv, h.Portal)
	h.health = health.NewServer()
	healthpb.RegisterHealthServer(h.grpcSrv, h.health)
	reflection.Register(h.grpcSrv)

	if h.grpcLn, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return nil, fmt.Errorf("listen grpc: %w", err)
	}
	if h.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("listen http: %w", err)
	}
	// The gateway reaches the same gRPC server (same TLS, same interceptors)
	// over a private unix socket, whatever address the TLS port binds.
	if h.gwDir, err = os.MkdirTemp("", "posture-gw-"); err != nil {
		return nil, fmt.Errorf("gateway socket dir: %w", err)
	}
	sock := filepath.Join(h.gwDir, "grpc.sock")
	if h.gwLn, err = net.Listen("unix", sock); err != nil {
		return nil, fmt.Errorf("listen gateway socket: %w", err)
	}
	gwMux := runtime.NewServeMux(gatewayOptions(h.proxies)...)
	gwCreds := credentials.NewTLS(&tls.Config{RootCAs: h.CA.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS12})
	if err := posturev1.RegisterAdminServiceHandlerFromEndpoint(ctx, gwMux, "unix://"+sock,
		[]grpc.DialOption{grpc.WithTransportCredentials(gwCreds), grpc.WithDefaultCallOptions(
			grpc.MaxCallSendMsgSize(caps.apply), grpc.MaxCallRecvMsgSize(gatewayMaxRecv))}); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if err := h.registerPortal(ctx, gwMux, "unix://"+sock, gwCreds); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	guard := &apiGuard{next: gwMux, tokens: h.Store, maxBody: cfg.HTTPMaxBody, maxApp: cfg.HTTPMaxApplyBody, log: h.log}
	mux.Handle("/api/", guard)
	for _, p := range []string{"/remediate", "/remediate/", "/enroll", "/portal/"} {
		mux.Handle(p, guard)
	}
	mux.Handle("GET /healthz", withWriteDeadline(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})))
	mux.Handle("GET /readyz", withWriteDeadline(http.HandlerFunc(h.readyz)))
	mux.Handle("GET "+integrations.ConsentCallbackPath, withWriteDeadline(h.Integrations.ConsentHandler()))
	mux.Handle("GET /metrics", withWriteDeadline(promhttp.HandlerFor(h.metrics, promhttp.HandlerOpts{})))
	h.httpSrv = NewHTTPServer(mux, h.log)
	if cfg.HTTPCert == "" && plainHTTPBeyondLoopback(h.httpLn.Addr().String()) {
		h.log.Warn("PLAIN HTTP BEYOND LOOPBACK: the REST API listens on "+h.httpLn.Addr().String()+
			" without TLS, so API tokens and request bodies cross the network in clear text; "+
			"set --http-tls-cert/--http-tls-key, or bind --http-addr to 127.0.0.1 behind a TLS proxy",
			"http", h.httpLn.Addr().String())
	}
	ok = true
	return h, nil
}

// NewHTTPServer is how every hub HTTP server is configured: header, read and
// idle timeouts and a header size cap. There is no server-wide
// WriteTimeout, because streaming routes (server-sent events) must outlive
// it; other routes set a write deadline per request (withWriteDeadline).
func NewHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

func (h *Hub) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if h.integrityErr != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "store integrity: %v\n", h.integrityErr)
		return
	}
	if err := h.Store.Ping(ctx); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "store: %v\n", err)
		return
	}
	fmt.Fprintln(w, "ready")
}

// ReconcileNow reads back what every integration holds and enqueues
// repairs for drift, without waiting for the next scheduled pass.
func (h *Hub) ReconcileNow(ctx context.Context) (hubsync.ReconcileReport, error) {
	return h.reconciler.RunOnce(ctx)
}

// GRPCAddr is the bound TLS address.
func (h *Hub) GRPCAddr() string { return h.grpcLn.Addr().String() }

// HTTPAddr is the bound HTTP address.
func (h *Hub) HTTPAddr() string { return h.httpLn.Addr().String() }

// Run serves until ctx ends, then shuts down.
func (h *Hub) Run(ctx context.Context) error {
	defer h.Close()
	errc := make(chan error, 3)
	var wg sync.WaitGroup
	serve := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, grpc.ErrServerStopped) {
				errc <- err
			}
		}()
	}
	serve(func() error { return h.grpcSrv.Serve(h.grpcLn) })
	serve(func() error { return h.grpcSrv.Serve(h.gwLn) })
	serve(func() error {
		if h.cfg.HTTPCert != "" {
			return h.httpSrv.ServeTLS(h.httpLn, h.cfg.HTTPCert, h.cfg.HTTPKey)
		}
		return h.httpSrv.Serve(h.httpLn)
	})
	bgCtx, stopBG := context.WithCancel(ctx)
	var bg sync.WaitGroup
	background := func(name string, f func(context.Context) error) {
		bg.Add(1)
		go func() {
			defer bg.Done()
			if err := f(bgCtx); err != nil && bgCtx.Err() == nil {
				h.log.Error("background task failed", "task", name, "err", err)
			}
		}()
	}
	background("policy watch", func(ctx context.Context) error { h.watchPolicies(ctx); return nil })
	background("verdicts", h.Engine.Run)
	background("sync", h.Worker.Run)
	background("reconcile", h.reconciler.Run)
	background("integration health", func(ctx context.Context) error { h.Integrations.Run(ctx, 15*time.Second); return nil })
	background("stream heartbeat", func(ctx context.Context) error { h.Agent.HeartbeatStreams(ctx, StreamHeartbeat); return nil })
	background("outbox retention", func(ctx context.Context) error { h.pruneOutbox(ctx, time.Hour); return nil })
	if h.bus != nil {
		background("event bus", func(ctx context.Context) error { h.bus.Run(ctx, h.handleEvent); return nil })
	}
	background("intune partners", func(ctx context.Context) error {
		every := h.cfg.PartnerMaintain
		if every <= 0 {
			every = time.Minute
		}
		h.Integrations.RunPartners(ctx, every)
		return nil
	})
	background("group scopes", func(ctx context.Context) error {
		every := h.cfg.ScopeRefresh
		if every <= 0 {
			every = 15 * time.Minute
		}
		h.Integrations.RunScopes(ctx, every, func(ids []string) {
			for _, id := range ids {
				h.Engine.Notify(id, true) // entering a scope: write it
			}
		})
		return nil
	})
	defer func() { stopBG(); bg.Wait() }()
	h.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	h.health.SetServingStatus(posturev1.AgentService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	h.health.SetServingStatus(posturev1.AdminService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	h.health.SetServingStatus(posturev1.PortalService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	if h.integrityErr != nil {
		h.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	}
	h.log.Info("hub serving", "grpc", h.GRPCAddr(), "http", h.HTTPAddr(), "version", h.cfg.Version,
		"store", map[bool]string{true: "postgres", false: "sqlite"}[h.cfg.DatabaseURL != ""])

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	h.health.Shutdown()
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = h.httpSrv.Shutdown(shutCtx)
	// Agent streams never end by themselves: give unary calls a moment, then
	// cut the streams (agents reconnect to another replica or after restart).
	stopped := make(chan struct{})
	go func() { h.grpcSrv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		h.grpcSrv.Stop()
	}
	wg.Wait()
	h.log.Info("hub stopped")
	return err
}

// Close releases the store and listeners.
func (h *Hub) Close() {
	for _, ln := range []net.Listener{h.grpcLn, h.httpLn, h.gwLn} {
		if ln != nil {
			ln.Close()
		}
	}
	if h.portalConn != nil {
		h.portalConn.Close()
		h.portalConn = nil
	}
	if h.bus != nil {
		h.bus.Close()
		h.bus = nil
	}
	if h.gwDir != "" {
		os.RemoveAll(h.gwDir)
		h.gwDir = ""
	}
	if h.Store != nil {
		h.Store.Close()
		h.Store = nil
	}
	h.lock.unlock()
	h.lock = nil
}

// pruneOutbox deletes delivered outbox rows past the retention, hourly.
func (h *Hub) pruneOutbox(ctx context.Context, every time.Duration) {
	retention := h.cfg.SyncRetention
	if retention <= 0 {
		retention = 30 * 24 * time.Hour
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := h.Store.PruneSyncItems(ctx, time.Now().Add(-retention))
		switch {
		case err != nil && ctx.Err() == nil:
			h.log.Warn("prune outbox", "err", err)
		case n > 0:
			h.log.Info("pruned delivered outbox rows", "rows", n, "older_than", retention)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// watchPolicies pushes fresh policy sets when another replica (or the CLI
// against another replica) changed policies.
func (h *Hub) watchPolicies(ctx context.Context) {
	last, _ := h.Store.PolicySetVersion(ctx)
	t := time.NewTicker(h.cfg.PolicyPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			v, err := h.Store.PolicySetVersion(ctx)
			if err != nil {
				h.log.Warn("poll policy version", "err", err)
				continue
			}
			if v != last {
				last = v
				h.Registry.PoliciesChanged()
			}
		}
	}
}

func recoverUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("panic in handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error")
			}
		}()
		return handler(ctx, req)
	}
}

func recoverStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("panic in stream", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error")
			}
		}()
		return handler(srv, ss)
	}
}
