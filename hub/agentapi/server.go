// Package agentapi serves AgentService: enrollment, certificate renewal and
// the one long-lived stream per host that carries results up and policy
// sets, acks and rechecks down.
package agentapi

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/ca"
	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/tokens"
)

// Config wires a Server.
type Config struct {
	Store    store.Store
	CA       *ca.CA
	Registry *Registry
	Logger   *slog.Logger
	// CertLifetime of host certificates (default 30 days).
	CertLifetime time.Duration
	// PolicyInterval sent to agents (default 60 s).
	PolicyInterval time.Duration
	// HelloTimeout bounds the wait for the first message (default 30 s).
	HelloTimeout time.Duration
	// Observer, if set, is told about every committed batch (verdicts hook).
	Observer func(ctx context.Context, hostID string, out store.RecordOutcome)
	// IdentityChanged, if set, is told when a host reports a different
	// Entra device id or UPN.
	IdentityChanged func(hostID string)
	// DeviceReleased, if set, is told the Entra device id a host stopped
	// reporting (the hosts still naming it may leave a conflict).
	DeviceReleased func(ctx context.Context, deviceID string)
	Now            func() time.Time
	Metrics        prometheus.Registerer
	// HealthChanged, if set, is told when a host reports its health.
	HealthChanged func(hostID string)
	// ReplicaID names this hub process in the store's stream table, so
	// every replica can tell which hosts are connected (default: random).
	ReplicaID string
	// MaxBatchResults caps the results of one batch (default 10,000); a
	// larger batch is acked as refused, never recorded or resent.
	MaxBatchResults int
	// Status, if set, builds the DeviceStatus sent after every Hello.
	Status StatusFunc
}

// Server implements posturev1.AgentServiceServer.
type Server struct {
	posturev1.UnimplementedAgentServiceServer
	cfg     Config
	limiter *failureLimiter
	m       metrics

	snapMu sync.Mutex
	snap   *policySnapshot
}

type metrics struct {
	enrolls  *prometheus.CounterVec
	batches  prometheus.Counter
	results  *prometheus.CounterVec
	recordDB prometheus.Histogram
}

// Result outcomes counted by posture_agent_results_total.
const (
	outcomeUpdated = "updated"
	outcomeChanged = "changed"
	outcomeStale   = "stale"
	outcomeUnknown = "unknown_policy"
	outcomeInvalid = "invalid"
	outcomeRefused = "refused"
)

// New builds a Server with defaults filled in.
func New(cfg Config) *Server {
	if cfg.CertLifetime == 0 {
		cfg.CertLifetime = 30 * 24 * time.Hour
	}
	if cfg.PolicyInterval == 0 {
		cfg.PolicyInterval = time.Minute
	}
	if cfg.HelloTimeout == 0 {
		cfg.HelloTimeout = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = NewRegistry()
	}
	if cfg.ReplicaID == "" {
		cfg.ReplicaID = NewReplicaID()
	}
	if cfg.MaxBatchResults <= 0 {
		cfg.MaxBatchResults = DefaultMaxBatchResults
	}
	s := &Server{cfg: cfg, limiter: newFailureLimiter(10, time.Minute, cfg.Now)}
	s.m = metrics{
		enrolls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "posture_agent_enrollments_total", Help: "Enroll attempts by result.",
		}, []string{"result"}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "posture_agent_batches_total", Help: "Result batches committed and acked.",
		}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "posture_agent_results_total", Help: "Results received, by what the store did with them.",
		}, []string{"outcome"}),
		recordDB: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "posture_agent_record_seconds", Help: "Time to commit one result batch.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	if cfg.Metrics != nil {
		cfg.Metrics.MustRegister(s.m.enrolls, s.m.batches, s.m.results, s.m.recordDB,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "posture_agent_connected_hosts", Help: "Open agent streams on this replica.",
			}, func() float64 { return float64(cfg.Registry.Count()) }))
	}
	return s
}

// Registry is the server's stream registry.
func (s *Server) Registry() *Registry { return s.cfg.Registry }

// Enroll exchanges an enroll secret, facts and a CSR for a certificate.
func (s *Server) Enroll(ctx context.Context, req *posturev1.EnrollRequest) (*posturev1.EnrollResponse, error) {
	src := sourceAddr(ctx)
	if blocked, until := s.limiter.Blocked(src); blocked {
		s.m.enrolls.WithLabelValues("rate_limited").Inc()
		return nil, status.Errorf(codes.ResourceExhausted, "too many failed enroll attempts; retry after %s", until.UTC().Format(time.RFC3339))
	}
	now := s.cfg.Now()
	secret, err := s.cfg.Store.FindEnrollSecret(ctx, tokens.Hash(req.GetEnrollSecret()))
	if err != nil || !secret.Usable(now) {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, status.Errorf(codes.Unavailable, "look up enroll secret: %v", err)
		}
		s.limiter.Fail(src)
		s.m.enrolls.WithLabelValues("bad_secret").Inc()
		s.cfg.Logger.Warn("enroll refused: bad secret", "source", src)
		// One message for unknown, revoked and expired: no oracle for guessers.
		return nil, status.Error(codes.Unauthenticated, "enroll secret is not valid")
	}
	facts, err := checkFacts(req.GetFacts())
	if err != nil {
		s.m.enrolls.WithLabelValues("bad_request").Inc()
		return nil, status.Errorf(codes.InvalidArgument, "facts: %v", err)
	}
	if _, err := x509.ParseCertificateRequest(req.GetCsrDer()); err != nil {
		s.m.enrolls.WithLabelValues("bad_request").Inc()
		return nil, status.Errorf(codes.InvalidArgument, "csr: %v", err)
	}
	h := hostFromFacts(facts)
	if h.HardwareUUID == "" {
		// The hardware UUID is what a re-enroll is matched by; without it
		// every enroll would be a new host and revocation would not hold.
		s.m.enrolls.WithLabelValues("bad_request").Inc()
		return nil, status.Error(codes.InvalidArgument, "facts: hardware_uuid is empty (osquery's system_info.uuid)")
	}
	h.Team = secret.Team
	h.EnrolledAt, h.LastSeenAt = now, now
	h, err = s.cfg.Store.EnrollHost(ctx, h)
	if errors.Is(err, store.ErrRevoked) {
		s.m.enrolls.WithLabelValues("revoked").Inc()
		return nil, status.Error(codes.PermissionDenied, "this host was revoked; an admin must delete it before it can enroll again")
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "store host: %v", err)
	}
	iss, err := s.cfg.CA.SignHost(req.GetCsrDer(), h.ID, s.cfg.CertLifetime)
	if err != nil {
		s.m.enrolls.WithLabelValues("bad_request").Inc()
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	if err := s.cfg.Store.SetHostCert(ctx, h.ID, iss.Serial, iss.NotAfter); err != nil {
		return nil, status.Errorf(codes.Unavailable, "store certificate: %v", err)
	}
	if err := s.cfg.Store.MarkEnrollSecretUsed(ctx, secret.ID, now); err != nil {
		s.cfg.Logger.Warn("mark enroll secret used", "err", err)
	}
	switch {
	case h.ReenrolledAt != nil:
		// The older certificate is dead from here: Connect and Renew check
		// the serial, and its stream (on this replica: now; on another: at
		// its next batch) is cut.
		s.cfg.Registry.kick(h.ID)
		s.m.enrolls.WithLabelValues("reenrolled").Inc()
		s.cfg.Logger.Warn("host re-enrolled: earlier certificates retired", "host", h.ID, "hostname", h.Hostname,
			"team", h.Team, "reenroll_count", h.ReenrollCount, "secret", secret.ID, "source", src)
		s.auditEnroll(ctx, "host re-enrolled", h, secret.ID, src)
	case h.DuplicateOf != "":
		s.m.enrolls.WithLabelValues("duplicate").Inc()
		s.cfg.Logger.Warn("host enrolled as a duplicate: its hardware uuid belongs to a host of another team",
			"host", h.ID, "duplicate_of", h.DuplicateOf, "hostname", h.Hostname, "team", h.Team, "secret", secret.ID, "source", src)
		s.auditEnroll(ctx, "host enrolled as duplicate", h, secret.ID, src)
	default:
		s.m.enrolls.WithLabelValues("ok").Inc()
		s.cfg.Logger.Info("host enrolled", "host", h.ID, "hostname", h.Hostname, "team", h.Team, "source", src)
	}
	return &posturev1.EnrollResponse{
		HostId:         h.ID,
		CertificatePem: iss.CertPEM,
		CaBundlePem:    s.cfg.CA.CertPEM(),
		NotAfter:       timestamppb.New(iss.NotAfter),
	}, nil
}

// auditEnroll writes a re-enroll or duplicate enrollment to the audit log
// (the hub is the actor: no admin token is involved).
func (s *Server) auditEnroll(ctx context.Context, action string, h store.Host, secretID, src string) {
	after, _ := json.Marshal(map[string]any{
		"hostname": h.Hostname, "team": h.Team, "hardware_uuid": h.HardwareUUID, "enroll_secret_id": secretID,
		"duplicate_of": h.DuplicateOf, "reenroll_count": h.ReenrollCount,
	})
	err := s.cfg.Store.RecordAuditEvent(ctx, store.AuditEvent{
		At: s.cfg.Now(), Actor: store.AuditActorHub, Action: action, Target: "host/" + h.ID,
		Source: src, Result: store.AuditOK, After: string(after),
	})
	if err != nil {
		s.cfg.Logger.Error("audit log: record enroll", "host", h.ID, "action", action, "err", err)
	}
}

// Renew issues a fresh certificate to an authenticated, unrevoked host.
func (s *Server) Renew(ctx context.Context, req *posturev1.RenewRequest) (*posturev1.RenewResponse, error) {
	h, err := s.authHost(ctx)
	if err != nil {
		return nil, err
	}
	iss, err := s.cfg.CA.SignHost(req.GetCsrDer(), h.ID, s.cfg.CertLifetime)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	if err := s.cfg.Store.SetHostCert(ctx, h.ID, iss.Serial, iss.NotAfter); err != nil {
		return nil, status.Errorf(codes.Unavailable, "store certificate: %v", err)
	}
	s.cfg.Logger.Info("host certificate renewed", "host", h.ID, "not_after", iss.NotAfter)
	return &posturev1.RenewResponse{CertificatePem: iss.CertPEM, CaBundlePem: s.cfg.CA.CertPEM(), NotAfter: timestamppb.New(iss.NotAfter)}, nil
}

// authHost maps the verified client certificate to an enrolled, unrevoked host.
func (s *Server) authHost(ctx context.Context) (store.Host, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return store.Host{}, status.Error(codes.Unauthenticated, "no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	// VerifiedChains is only set when TLS verified the cert against our CA.
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return store.Host{}, status.Error(codes.Unauthenticated, "a client certificate issued by this hub is required")
	}
	leaf := ti.State.VerifiedChains[0][0]
	id, err := ca.HostID(leaf)
	if err != nil {
		return store.Host{}, status.Errorf(codes.Unauthenticated, "client certificate: %v", err)
	}
	h, err := s.cfg.Store.GetHost(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Host{}, status.Error(codes.Unauthenticated, "host is not enrolled (deleted?); enroll again")
	}
	if err != nil {
		return store.Host{}, status.Errorf(codes.Unavailable, "look up host: %v", err)
	}
	if h.Revoked() {
		return store.Host{}, status.Error(codes.PermissionDenied, "host is revoked")
	}
	// A host is its key: only the certificate issued last (at enroll or
	// renew) speaks for it.
	if h.CertSerial == "" || leaf.SerialNumber == nil || leaf.SerialNumber.Text(16) != h.CertSerial {
		return store.Host{}, status.Error(codes.Unauthenticated, "this certificate is no longer the host's current one (re-enrolled or renewed since); enroll again")
	}
	return h, nil
}

func sourceAddr(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown"
	}
	if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
		return host
	}
	return p.Addr.String()
}

// Connect runs one host's stream.
func (s *Server) Connect(stream posturev1.AgentService_ConnectServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	h, err := s.authHost(ctx)
	if err != nil {
		return err
	}
	// Batches on this stream speak for this enrollment only: after a
	// re-enroll (through any replica) the store refuses them.
	ctx = store.WithEnrollment(ctx, h.ReenrollCount)
	hello, err := s.awaitHello(ctx, stream)
	if err != nil {
		return err
	}
	if err := s.applyHello(ctx, &h, hello); err != nil {
		return err
	}
	sess := &session{
		hostID:     h.ID,
		enrollment: h.ReenrollCount,
		out:        make(chan *posturev1.HubMessage, 16),
		dirty:      make(chan struct{}, 1),
		done:       make(chan struct{}),
		cancel:     cancel,
	}
	defer close(sess.done)
	s.cfg.Registry.add(sess)
	defer s.cfg.Registry.remove(sess)
	since := s.streamOpened(ctx, h.ID)
	defer s.streamClosed(h.ID, since)
	sess.markDirty() // every Hello is answered with a PolicySet
	s.queueStatus(ctx, sess)
	log := s.cfg.Logger.With("host", h.ID)
	log.Info("agent connected", "hostname", h.Hostname, "platform", h.Platform)

	sendErr := make(chan error, 1)
	go func() { sendErr <- s.sendLoop(ctx, stream, sess) }()
	recvErr := make(chan error, 1)
	go func() { recvErr <- s.recvLoop(ctx, stream, sess, &h) }()
	select {
	case err = <-sendErr:
	case err = <-recvErr:
	}
	cancel()
	log.Info("agent disconnected", "reason", err)
	if errors.Is(err, errDisabled) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

var errDisabled = errors.New("host disabled")

var errSuperseded = status.Error(codes.Unauthenticated, "this host was enrolled again with a new key; this certificate is retired")

// queueStatus tells the host its current verdict (and remediation link).
func (s *Server) queueStatus(ctx context.Context, sess *session) {
	if s.cfg.Status == nil {
		return
	}
	st, err := s.cfg.Status(ctx, sess.hostID)
	if err != nil {
		s.cfg.Logger.Warn("build device status", "host", sess.hostID, "err", err)
		return
	}
	if st == nil {
		return
	}
	select {
	case sess.out <- &posturev1.HubMessage{Msg: &posturev1.HubMessage_Status{Status: st}}:
	case <-ctx.Done():
	}
}

func (s *Server) awaitHello(ctx context.Context, stream posturev1.AgentService_ConnectServer) (*posturev1.Hello, error) {
	type res struct {
		m   *posturev1.AgentMessage
		err error
	}
	ch := make(chan res, 1)
	go func() {
		m, err := stream.Recv()
		ch <- res{m, err}
	}()
	t := time.NewTimer(s.cfg.HelloTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		if r.m.GetHello() == nil {
			return nil, status.Error(codes.InvalidArgument, "the first message on a stream must be Hello")
		}
		return r.m.GetHello(), nil
	case <-t.C:
		return nil, status.Error(codes.DeadlineExceeded, "no Hello received")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *Server) applyHello(ctx context.Context, h *store.Host, hello *posturev1.Hello) error {
	facts, err := checkFacts(hello.GetFacts())
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "hello facts: %v", err)
	}
	nh := hostFromFacts(facts)
	if nh.HardwareUUID != "" && nh.HardwareUUID != h.HardwareUUID {
		// The hardware UUID is fixed at enrollment. One answer whether or
		// not another host holds the claimed one: no oracle.
		s.cfg.Logger.Warn("hello refused: hardware uuid differs from the enrollment", "host", h.ID)
		return status.Error(codes.PermissionDenied, "hello facts do not match this host's enrollment; enroll again with this machine's own identity")
	}
	nh.ID = h.ID
	if err := s.cfg.Store.UpdateHostFacts(ctx, nh); err != nil {
		return status.Errorf(codes.Unavailable, "store facts: %v", err)
	}
	if err := s.cfg.Store.TouchHost(ctx, h.ID, s.cfg.Now()); err != nil {
		return status.Errorf(codes.Unavailable, "touch host: %v", err)
	}
	// Keep what the hub, not the Hello, decides: team and identity.
	nh.Team, nh.EntraDeviceID, nh.EntraDeviceIDOverride, nh.UserPrincipalName = h.Team, h.EntraDeviceID, h.EntraDeviceIDOverride, h.UserPrincipalName
	nh.UserPrincipalNameOverride = h.UserPrincipalNameOverride
	nh.EnrolledAt, nh.LastSeenAt, nh.RevokedAt = h.EnrolledAt, h.LastSeenAt, h.RevokedAt
	nh.HardwareUUID, nh.CertSerial, nh.CertNotAfter = h.HardwareUUID, h.CertSerial, h.CertNotAfter
	nh.DuplicateOf, nh.ReenrolledAt, nh.ReenrollCount = h.DuplicateOf, h.ReenrolledAt, h.ReenrollCount
	*h = nh
	return nil
}

func (s *Server) sendLoop(ctx context.Context, stream posturev1.AgentService_ConnectServer, sess *session) error {
	hostID := sess.hostID
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m := <-sess.out:
			if err := stream.Send(m); err != nil {
				return fmt.Errorf("send: %w", err)
			}
			if m.GetDisable() != nil {
				return errDisabled
			}
		case <-sess.dirty:
			h, err := s.cfg.Store.GetHost(ctx, hostID)
			if err != nil {
				return status.Errorf(codes.Unavailable, "load host: %v", err)
			}
			if h.Revoked() {
				_ = stream.Send(&posturev1.HubMessage{Msg: &posturev1.HubMessage_Disable{Disable: &posturev1.Disable{Reason: "host revoked"}}})
				return errDisabled
			}
			if h.ReenrollCount != sess.enrollment {
				return errSuperseded
			}
			ps, err := s.PolicySetFor(ctx, h)
			if err != nil {
				return status.Errorf(codes.Unavailable, "build policy set: %v", err)
			}
			sess.setPolicies(ps)
			// The interval is the host's promised cadence: silence is
			// judged against it.
			if err := s.cfg.Store.SetHostReportInterval(ctx, hostID, ps.GetInterval().AsDuration()); err != nil {
				return status.Errorf(codes.Unavailable, "store report interval: %v", err)
			}
			if err := stream.Send(&posturev1.HubMessage{Msg: &posturev1.HubMessage_PolicySet{PolicySet: ps}}); err != nil {
				return fmt.Errorf("send: %w", err)
			}
		}
	}
}

// policySnapshot is the whole policy and fact set of one PolicySetVersion,
// shared by every stream: a policy change (or every host reconnecting after
// a hub restart) then costs one version read per host, not a full listing.
type policySnapshot struct {
	version  string
	policies []store.Policy
	facts    []store.FactQuery
}

func (s *Server) snapshot(ctx context.Context) (*policySnapshot, error) {
	version, err := s.cfg.Store.PolicySetVersion(ctx)
	if err != nil {
		return nil, err
	}
	s.snapMu.Lock()
	cur := s.snap
	s.snapMu.Unlock()
	if cur != nil && cur.version == version {
		return cur, nil
	}
	all, err := s.cfg.Store.ListPolicies(ctx)
	if err != nil {
		return nil, err
	}
	facts, err := s.cfg.Store.ListFactQueries(ctx)
	if err != nil {
		return nil, err
	}
	// Lists read after the version may be newer than it; the next version
	// change reloads them, so a host never keeps an old set.
	next := &policySnapshot{version: version, policies: all, facts: facts}
	s.snapMu.Lock()
	s.snap = next
	s.snapMu.Unlock()
	return next, nil
}

// PolicySetFor builds the policies that apply to a host.
func (s *Server) PolicySetFor(ctx context.Context, h store.Host) (*posturev1.PolicySet, error) {
	snap, err := s.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	ps := &posturev1.PolicySet{Version: snap.version, Interval: durationpb.New(s.cfg.PolicyInterval)}
	for _, p := range snap.policies {
		if p.AppliesTo(h.Platform, h.Team) {
			ps.Policies = append(ps.Policies, &posturev1.AgentPolicy{Id: p.ID, Revision: p.Revision, Query: p.Query, Name: p.Name})
		}
	}
	for _, f := range snap.facts {
		if f.Platform == "" || f.Platform == h.Platform {
			ps.Facts = append(ps.Facts, &posturev1.FactQuery{Name: f.Name, Query: f.Query, Platform: f.Platform})
		}
	}
	return ps, nil
}

func (s *Server) recvLoop(ctx context.Context, stream posturev1.AgentService_ConnectServer, sess *session, h *store.Host) error {
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		switch msg := m.Msg.(type) {
		case *posturev1.AgentMessage_Results:
			refused, err := s.admitBatch(ctx, sess, h, msg.Results)
			if err != nil {
				return err
			}
			if refused == "" {
				if err := s.recordBatch(ctx, h.ID, msg.Results); err != nil {
					// No ack: the agent keeps the batch and resends it.
					return err
				}
			}
			ack := &posturev1.HubMessage{Msg: &posturev1.HubMessage_Ack{Ack: &posturev1.Ack{Seq: msg.Results.GetSeq(), Refused: refused}}}
			select {
			case sess.out <- ack:
			case <-ctx.Done():
				return ctx.Err()
			}
		case *posturev1.AgentMessage_Facts:
			// A fact the report leaves out is unchanged: the agent omits a
			// fact whose query failed (e.g. before its own table was
			// registered), and that must not clear a known identity. An
			// explicitly empty value means the host looked and found none.
			v := msg.Facts.GetValues()
			dev, upn := h.EntraDeviceID, h.UserPrincipalName
			if raw, ok := v["entra_device_id"]; ok {
				dev = strings.ToLower(clean(raw, 128))
			}
			if raw, ok := v["user_principal_name"]; ok {
				upn = clean(raw, 256)
			}
			if err := s.cfg.Store.SetHostIdentity(ctx, h.ID, dev, upn); err != nil {
				return status.Errorf(codes.Unavailable, "store identity: %v", err)
			}
			if (dev != h.EntraDeviceID || upn != h.UserPrincipalName) && s.cfg.IdentityChanged != nil {
				s.cfg.IdentityChanged(h.ID)
			}
			if dev != h.EntraDeviceID && h.EntraDeviceID != "" && s.cfg.DeviceReleased != nil {
				s.cfg.DeviceReleased(ctx, h.EntraDeviceID)
			}
			h.EntraDeviceID, h.UserPrincipalName = dev, upn
		case *posturev1.AgentMessage_Hello:
			if err := s.applyHello(ctx, h, msg.Hello); err != nil {
				return err
			}
			sess.markDirty()
			s.queueStatus(ctx, sess)
		case *posturev1.AgentMessage_Health:
			if err := s.recordHealth(ctx, h.ID, msg.Health); err != nil {
				return err
			}
		default:
			return status.Error(codes.InvalidArgument, "unknown agent message")
		}
	}
}

// maxClockSkew bounds how far in the future a host may date a result; later
// ones are clamped so a fast clock cannot pin a stale status ("newer wins").
const maxClockSkew = 5 * time.Minute

func (s *Server) recordBatch(ctx context.Context, hostID string, b *posturev1.ResultBatch) error {
	now := s.cfg.Now()
	rs := make([]store.Result, 0, len(b.GetResults()))
	invalid := 0
	for _, r := range b.GetResults() {
		sr, ok := toStoreResult(hostID, r, now)
		if !ok {
			invalid++
			continue
		}
		rs = append(rs, sr)
	}
	if invalid > 0 {
		// Acked anyway: resending cannot fix them, and the spool must drain.
		s.m.results.WithLabelValues(outcomeInvalid).Add(float64(invalid))
		s.cfg.Logger.Warn("dropped invalid results", "host", hostID, "seq", b.GetSeq(), "count", invalid)
	}
	start := time.Now()
	out, err := s.cfg.Store.RecordResults(ctx, hostID, rs, now)
	switch {
	case errors.Is(err, store.ErrRevoked):
		return status.Error(codes.PermissionDenied, "host is revoked")
	case errors.Is(err, store.ErrSuperseded):
		return errSuperseded
	case errors.Is(err, store.ErrInvalid):
		// Resending cannot fix a batch the store refuses: drop it (acked)
		// so the host's spool drains, and say so loudly.
		s.m.results.WithLabelValues(outcomeInvalid).Add(float64(len(rs)))
		s.cfg.Logger.Error("dropped a batch the store refused", "host", hostID, "seq", b.GetSeq(), "err", err)
		return nil
	case err != nil:
		return status.Errorf(codes.Unavailable, "record results: %v", err)
	}
	s.m.recordDB.Observe(time.Since(start).Seconds())
	s.m.batches.Inc()
	s.m.results.WithLabelValues(outcomeUpdated).Add(float64(out.Updated))
	s.m.results.WithLabelValues(outcomeChanged).Add(float64(len(out.Changed)))
	s.m.results.WithLabelValues(outcomeStale).Add(float64(out.Stale))
	s.m.results.WithLabelValues(outcomeUnknown).Add(float64(out.Unknown))
	if s.cfg.Observer != nil {
		s.cfg.Observer(ctx, hostID, out)
	}
	return nil
}

func toStoreResult(hostID string, r *posturev1.PolicyResult, now time.Time) (store.Result, bool) {
	var st string
	switch r.GetStatus() {
	case posturev1.ResultStatus_RESULT_STATUS_PASS:
		st = store.StatusPass
	case posturev1.ResultStatus_RESULT_STATUS_FAIL:
		st = store.StatusFail
	case posturev1.ResultStatus_RESULT_STATUS_ERROR:
		st = store.StatusError
	default:
		return store.Result{}, false
	}
	if r.GetPolicyId() == "" || len(r.GetPolicyId()) > 128 || r.GetEvaluatedAt() == nil || !r.GetEvaluatedAt().IsValid() {
		return store.Result{}, false
	}
	at := r.GetEvaluatedAt().AsTime()
	if at.After(now.Add(maxClockSkew)) {
		at = now
	}
	return store.Result{
		HostID:      hostID,
		PolicyID:    r.GetPolicyId(),
		Revision:    r.GetRevision(),
		Status:      st,
		Error:       clean(r.GetError(), 2048),
		EvaluatedAt: at,
		Duration:    r.GetDuration().AsDuration(),
	}, true
}

// clean trims and bounds host-supplied text.
func clean(s string, max int) string {
	s = strings.TrimSpace(strings.ToValidUTF8(s, "\uFFFD"))
	for len(s) > max {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

var platforms = map[string]bool{"darwin": true, "windows": true, "linux": true}

func checkFacts(f *posturev1.HostFacts) (*posturev1.HostFacts, error) {
	if f == nil {
		return nil, errors.New("missing")
	}
	if !platforms[f.GetPlatform()] {
		return nil, fmt.Errorf("platform %q is not darwin, windows or linux", f.GetPlatform())
	}
	if strings.TrimSpace(f.GetHostname()) == "" {
		return nil, errors.New("hostname is empty")
	}
	return f, nil
}

func hostFromFacts(f *posturev1.HostFacts) store.Host {
	return store.Host{
		Hostname:       clean(f.GetHostname(), 255),
		Platform:       f.GetPlatform(),
		OSPlatform:     clean(f.GetOsPlatform(), 64),
		OSName:         clean(f.GetOsName(), 128),
		OSVersion:      clean(f.GetOsVersion(), 64),
		OsqueryVersion: clean(f.GetOsqueryVersion(), 64),
		HardwareSerial: clean(f.GetHardwareSerial(), 128),
		HardwareUUID:   strings.ToUpper(clean(f.GetHardwareUuid(), 64)),
		HardwareModel:  clean(f.GetHardwareModel(), 128),
		ExtVersion:     clean(f.GetExtensionVersion(), 64),
	}
}
