// Package hublink is posture.ext's side of the hub protocol: enrollment,
// certificate renewal, and the long-lived Connect stream that carries
// spooled results up and policy sets, acks, rechecks and Disable down.
package hublink

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/extension/atomicfile"
	"github.com/posture-dev/posture/extension/clock"
	"github.com/posture-dev/posture/extension/hostfacts"
	"github.com/posture-dev/posture/extension/identity"
	"github.com/posture-dev/posture/extension/spool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// PolicySetFile caches the last PolicySet in the state directory so that
// policies keep running (and results keep spooling) while the hub is away.
const PolicySetFile = "policyset.pb"

// Runner is the scheduler as the link drives it.
type Runner interface {
	Apply(ps *posturev1.PolicySet)
	Recheck(ids []string, all bool)
	Clear()
	Version() string
}

// Config wires a Link.
type Config struct {
	// Hub is host:port of the hub's agent port.
	Hub string
	// EnrollSecret enrolls the host; empty means enrollment is impossible
	// and only an existing certificate can be used.
	EnrollSecret string
	// Bootstrap is the server-only TLS config for Enroll before a CA bundle
	// is stored (see BootstrapTLS). Required to enroll.
	Bootstrap *tls.Config
	// StateDir holds the identity files and the policy-set cache.
	StateDir string
	Spool    *spool.Spool
	Runner   Runner
	// HostFacts gathers the facts sent with Enroll and Hello.
	HostFacts func(ctx context.Context) (*posturev1.HostFacts, error)

	Clock  clock.Clock
	Rand   *rand.Rand
	Logger *slog.Logger
	// BackoffBase and BackoffMax bound reconnect waits (250 ms, 30 s).
	// Waits are also held to a quarter of the outage so far, so the link
	// is back within moments of a short hub outage.
	BackoffBase, BackoffMax time.Duration
	// DisabledRetry is how long to wait after a Disable or a revoked
	// certificate before asking again (1 h).
	DisabledRetry time.Duration
	// HealthyAfter: a stream that got a PolicySet resets the backoff.
	// RPCTimeout bounds Enroll and Renew (30 s).
	RPCTimeout time.Duration
	// DialOptions are appended to the gRPC dial options (tests).
	DialOptions []grpc.DialOption
	// SpoolRetry is how often a failing spool write is retried (5 s).
	SpoolRetry time.Duration
	// Observer, if set, hears about the stream and what the hub says
	// (the posture_status table).
	Observer Observer
}

// Observer is told about connection state, acks and the device status.
type Observer interface {
	Connected(up bool)
	Acked(at time.Time)
	DeviceStatus(*posturev1.DeviceStatus)
}

type noObserver struct{}

func (noObserver) Connected(bool)                       {}
func (noObserver) Acked(time.Time)                      {}
func (noObserver) DeviceStatus(*posturev1.DeviceStatus) {}

// Link runs the hub connection. It is also the scheduler's Sink.
type Link struct {
	cfg   Config
	log   *slog.Logger
	clk   clock.Clock
	store identity.Store
	id    identity.Holder
	key   *ecdsa.PrivateKey

	notify      chan struct{}
	spoolFailed chan struct{} // a spool write failed: retry

	mu        sync.Mutex
	health    healthState
	unspooled map[string]*posturev1.PolicyResult // results the spool refused, newest per policy; retried
	facts     map[string]string                  // latest fact values from the scheduler
	hostFacts *posturev1.HostFacts
	knownCAs  *x509.CertPool // last CA bundle from the hub
	rnd       *rand.Rand
}

// Errors that end a session and steer the retry loop.
var (
	errDisabled = errors.New("host disabled by the hub")
	errReenroll = errors.New("hub does not know this certificate")
)

// New prepares a Link: loads or creates the host key and loads a stored
// identity and cached policy set.
func New(cfg Config) (*Link, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = 250 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 30 * time.Second
	}
	if cfg.DisabledRetry <= 0 {
		cfg.DisabledRetry = time.Hour
	}
	if cfg.RPCTimeout <= 0 {
		cfg.RPCTimeout = 30 * time.Second
	}
	if cfg.SpoolRetry <= 0 {
		cfg.SpoolRetry = 5 * time.Second
	}
	if cfg.Observer == nil {
		cfg.Observer = noObserver{}
	}
	if cfg.Spool == nil || cfg.Runner == nil || cfg.HostFacts == nil || cfg.Hub == "" {
		return nil, errors.New("hublink: Hub, Spool, Runner and HostFacts are required")
	}
	l := &Link{
		cfg: cfg, log: cfg.Logger, clk: cfg.Clock, rnd: cfg.Rand,
		store:       identity.Store{Dir: cfg.StateDir},
		notify:      make(chan struct{}, 1),
		spoolFailed: make(chan struct{}, 1),
	}
	key, err := l.store.Key()
	if err != nil {
		return nil, err
	}
	l.key = key
	id, err := l.store.Load(key)
	switch {
	case err == nil:
		l.setIdentity(id)
		l.log.Info("loaded identity", "host_id", id.HostID, "not_after", id.Leaf.NotAfter)
	case errors.Is(err, identity.ErrNotEnrolled):
	default:
		// A damaged identity is replaced by enrolling again.
		l.log.Error("stored identity unusable; will enroll again", "err", err)
	}
	if b, err := os.ReadFile(filepath.Join(cfg.StateDir, PolicySetFile)); err == nil {
		var ps posturev1.PolicySet
		if err := proto.Unmarshal(b, &ps); err != nil {
			l.log.Error("cached policy set unreadable; waiting for the hub", "err", err)
		} else {
			cfg.Runner.Apply(&ps)
		}
	}
	return l, nil
}

// Identity returns the current identity (nil before enrollment).
func (l *Link) Identity() *identity.Identity { return l.id.Get() }

// healthState is what the agent last knew about its own ability to report.
type healthState struct {
	osqueryBad, spoolBad       string // "" when fine, else why
	quarantined                int
	dropped                    spool.Drops // what the spool's cap dropped; informational
	osqueryChanged, spoolSince time.Time
}

func (h healthState) msg(now time.Time, depth int) *posturev1.AgentHealth {
	var detail []string
	if h.osqueryBad != "" {
		detail = append(detail, "osquery unreachable: "+h.osqueryBad)
	}
	if h.spoolBad != "" {
		detail = append(detail, "spool write failing: "+h.spoolBad)
	}
	if h.quarantined > 0 {
		detail = append(detail, fmt.Sprintf("%d corrupt spooled batch(es) set aside in the spool's quarantine directory", h.quarantined))
	}
	return &posturev1.AgentHealth{
		OsqueryOk:  h.osqueryBad == "",
		SpoolOk:    h.spoolBad == "",
		Detail:     strings.Join(detail, "; "),
		ObservedAt: timestamppb.New(now),
		SpoolDepth: uint32(max(depth, 0)),
		// Gaps in the history the hub will get, not a reason to fail closed.
		SpoolDroppedResults:     h.dropped.Results,
		SpoolDroppedTransitions: h.dropped.Transitions,
	}
}

// SetOsquery records whether osqueryd answers; a change is sent to the hub.
func (l *Link) SetOsquery(err error) {
	bad := ""
	if err != nil {
		bad = err.Error()
	}
	l.mu.Lock()
	was := l.health.osqueryBad
	l.health.osqueryBad = bad
	l.mu.Unlock()
	if (was == "") != (bad == "") {
		l.wake()
	}
}

// Health is the agent's current health as sent to the hub.
func (l *Link) Health() *posturev1.AgentHealth {
	l.mu.Lock()
	h := l.health
	l.mu.Unlock()
	h.quarantined = len(l.cfg.Spool.Quarantined())
	h.dropped = l.cfg.Spool.Dropped()
	return h.msg(l.clk.Now(), l.cfg.Spool.Depth())
}

// Results implements scheduler.Sink: results go to disk first, then the
// stream (if any) is nudged to send them. When the spool cannot be written
// (disk full, read-only), the results wait in memory (newest per policy),
// the hub is told (spool_ok=false), and the write is retried.
func (l *Link) Results(_ context.Context, results []*posturev1.PolicyResult) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range results {
		if prev, ok := l.unspooled[r.GetPolicyId()]; !ok || !r.GetEvaluatedAt().AsTime().Before(prev.GetEvaluatedAt().AsTime()) {
			if l.unspooled == nil {
				l.unspooled = map[string]*posturev1.PolicyResult{}
			}
			l.unspooled[r.GetPolicyId()] = r
		}
	}
	l.spoolLocked()
}

// spoolLocked writes the waiting results to the spool and tracks failures.
func (l *Link) spoolLocked() {
	if len(l.unspooled) == 0 {
		return
	}
	batch := make([]*posturev1.PolicyResult, 0, len(l.unspooled))
	for _, r := range l.unspooled {
		batch = append(batch, r)
	}
	sort.Slice(batch, func(i, j int) bool { return batch[i].GetPolicyId() < batch[j].GetPolicyId() })
	b, err := l.cfg.Spool.Append(batch)
	if err != nil {
		if l.health.spoolBad == "" {
			l.log.Error("SPOOL WRITE FAILING: results kept in memory and retried; the hub is told", "results", len(batch), "err", err)
			l.health.spoolSince = l.clk.Now()
		}
		l.health.spoolBad = err.Error()
		select {
		case l.spoolFailed <- struct{}{}:
		default:
		}
		l.wake()
		return
	}
	l.unspooled = nil
	if l.health.spoolBad != "" {
		l.log.Info("spool writable again", "after", l.clk.Now().Sub(l.health.spoolSince).Round(time.Second))
		l.health.spoolBad = ""
	}
	l.log.Debug("results spooled", "seq", b.GetSeq(), "results", len(batch))
	l.wake()
}

// retrySpool retries a failing spool write until it succeeds, each time
// the spool fails, until ctx ends. No timer runs while the spool is fine.
func (l *Link) retrySpool(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.spoolFailed:
		}
		for failing := true; failing; {
			select {
			case <-ctx.Done():
				return
			case <-l.clk.After(l.cfg.SpoolRetry):
			}
			l.mu.Lock()
			l.spoolLocked()
			failing = len(l.unspooled) > 0
			l.mu.Unlock()
		}
	}
}

// Facts implements scheduler.Sink.
func (l *Link) Facts(_ context.Context, values map[string]string) {
	l.mu.Lock()
	l.facts = maps.Clone(values)
	l.mu.Unlock()
	l.wake()
}

func (l *Link) wake() {
	select {
	case l.notify <- struct{}{}:
	default:
	}
}

// outageFraction bounds a reconnect wait to this share of the outage so far.
const outageFraction = 0.25

// Run keeps a stream to the hub open until ctx ends, enrolling, renewing
// and reconnecting as needed.
func (l *Link) Run(ctx context.Context) error {
	rctx, stopRetry := context.WithCancel(ctx)
	retried := make(chan struct{})
	go func() { l.retrySpool(rctx); close(retried) }()
	defer func() { stopRetry(); <-retried }()
	bo := &Backoff{Base: l.cfg.BackoffBase, Max: l.cfg.BackoffMax, Rand: l.cfg.Rand, Clock: l.clk, OutageFraction: outageFraction}
	for {
		healthy, err := l.once(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if healthy {
			bo.Reset()
		}
		wait := bo.Next()
		switch {
		case errors.Is(err, errDisabled):
			wait = l.cfg.DisabledRetry
			l.log.Error("HOST DISABLED BY THE HUB: policies stopped; will ask the hub again later", "reason", err, "retry_in", wait)
		case errors.Is(err, errReenroll):
			l.log.Warn("hub rejected this host's certificate; enrolling again", "err", err)
		default:
			l.log.Warn("hub connection ended; reconnecting", "err", err, "retry_in", wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-l.clk.After(wait):
		}
	}
}

// once runs one enroll-if-needed + session attempt. healthy reports that
// the hub accepted the stream (sent a PolicySet).
func (l *Link) once(ctx context.Context) (healthy bool, err error) {
	id := l.id.Get()
	if id != nil && id.Expired(l.clk.Now()) {
		l.log.Warn("certificate expired; enrolling again", "not_after", id.Leaf.NotAfter)
		id = nil
	}
	if id == nil {
		if id, err = l.enroll(ctx); err != nil {
			return false, err
		}
	}
	healthy, err = l.session(ctx, id)
	switch status.Code(err) {
	case codes.Unauthenticated:
		if l.cfg.EnrollSecret != "" && l.enrollTLS() != nil {
			l.id.Set(nil)
			return healthy, fmt.Errorf("%w: %w", errReenroll, err)
		}
		l.log.Error("hub rejected this host's certificate and no enroll secret is configured", "err", err)
	case codes.PermissionDenied:
		l.cfg.Runner.Clear()
		l.dropPolicySet()
		return healthy, fmt.Errorf("%w: %w", errDisabled, err)
	}
	return healthy, err
}

// gatherFacts asks osquery for the host facts. When osquery cannot answer,
// the last good facts (or a minimal set from the OS) stand in and ok is
// false: good enough for a Hello, not for an enrollment.
func (l *Link) gatherFacts(ctx context.Context) (facts *posturev1.HostFacts, ok bool) {
	f, err := l.cfg.HostFacts(ctx)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		l.hostFacts = f
		return f, true
	}
	l.log.Warn("could not gather host facts from osquery; using the last known", "err", err)
	if l.hostFacts != nil {
		return l.hostFacts, false
	}
	h, _ := os.Hostname()
	return &posturev1.HostFacts{Hostname: h, Platform: hostfacts.Family(runtime.GOOS, "")}, false
}

func (l *Link) enroll(ctx context.Context) (*identity.Identity, error) {
	if l.cfg.EnrollSecret == "" {
		return nil, errors.New("not enrolled and no enroll secret given (--enroll-secret or --enroll-secret-path)")
	}
	tc := l.enrollTLS()
	if tc == nil {
		return nil, errors.New("not enrolled and no trust for the hub given (--hub-ca or --hub-ca-pin)")
	}
	facts, ok := l.gatherFacts(ctx)
	if !ok {
		// The hub matches a re-enrolling host by system_info.uuid: do not
		// enroll without it.
		return nil, errors.New("enroll postponed: osquery has not answered the host facts yet")
	}
	cn := facts.GetHardwareUuid()
	if cn == "" {
		cn = facts.GetHostname()
	}
	csr, err := identity.CSR(l.key, cn)
	if err != nil {
		return nil, err
	}
	conn, err := l.dial(tc)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	rctx, cancel := context.WithTimeout(ctx, l.cfg.RPCTimeout)
	defer cancel()
	resp, err := posturev1.NewAgentServiceClient(conn).Enroll(rctx, &posturev1.EnrollRequest{
		EnrollSecret: l.cfg.EnrollSecret,
		Facts:        facts,
		CsrDer:       csr,
	})
	if err != nil {
		switch status.Code(err) {
		case codes.Unauthenticated:
			return nil, fmt.Errorf("enroll refused: the enroll secret is wrong, revoked or expired: %w", err)
		case codes.ResourceExhausted:
			return nil, fmt.Errorf("enroll rate limited by the hub: %w", err)
		case codes.PermissionDenied:
			l.cfg.Runner.Clear()
			l.dropPolicySet()
			return nil, fmt.Errorf("%w: enroll refused: %w", errDisabled, err)
		}
		return nil, fmt.Errorf("enroll: %w", err)
	}
	id, err := l.store.Save(resp.GetHostId(), resp.GetCertificatePem(), resp.GetCaBundlePem(), l.key)
	if err != nil {
		return nil, fmt.Errorf("enroll: storing the issued certificate: %w", err)
	}
	l.setIdentity(id)
	l.log.Info("enrolled", "host_id", id.HostID, "not_after", id.Leaf.NotAfter)
	return id, nil
}

// enrollTLS is the trust for Enroll: the configured bootstrap, else the CA
// bundle the hub handed out at an earlier enrollment (a host whose
// certificate expired or was forgotten re-enrolls without --hub-ca).
func (l *Link) enrollTLS() *tls.Config {
	if l.cfg.Bootstrap != nil {
		return l.cfg.Bootstrap.Clone()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.knownCAs == nil {
		return nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: l.knownCAs}
}

// mtlsConfig trusts the hub's CA bundle and presents whatever certificate
// the holder has at handshake time.
func (l *Link) mtlsConfig(id *identity.Identity) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		RootCAs:              id.CAs,
		GetClientCertificate: l.id.GetClientCertificate,
	}
}

func (l *Link) dial(tc *tls.Config) (*grpc.ClientConn, error) {
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(tc)),
		// Notice a vanished hub (the hub permits pings every 15 s).
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 20 * time.Second}),
	}, l.cfg.DialOptions...)
	conn, err := grpc.NewClient(l.cfg.Hub, opts...)
	if err != nil {
		return nil, fmt.Errorf("dial hub %s: %w", l.cfg.Hub, err)
	}
	return conn, nil
}

// session runs one Connect stream.
func (l *Link) session(ctx context.Context, id *identity.Identity) (healthy bool, err error) {
	conn, err := l.dial(l.mtlsConfig(id))
	if err != nil {
		return false, err
	}
	defer conn.Close()
	client := posturev1.NewAgentServiceClient(conn)

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Connect(sctx)
	if err != nil {
		return false, err
	}
	facts, _ := l.gatherFacts(ctx)
	hello := &posturev1.Hello{Facts: facts, PolicySetVersion: l.cfg.Runner.Version()}
	if err := stream.Send(&posturev1.AgentMessage{Msg: &posturev1.AgentMessage_Hello{Hello: hello}}); err != nil {
		return false, recvErr(stream, err)
	}
	l.log.Info("connected to hub", "hub", l.cfg.Hub, "host_id", id.HostID)
	l.cfg.Observer.Connected(true)
	defer l.cfg.Observer.Connected(false)

	msgs := make(chan *posturev1.HubMessage)
	recvDone := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvDone <- err
				return
			}
			select {
			case msgs <- m:
			case <-sctx.Done():
				recvDone <- sctx.Err()
				return
			}
		}
	}()

	var sentSeq uint64              // highest seq sent on this stream
	var sentFacts map[string]string // nil: none sent on this stream yet
	var sentHealth *posturev1.AgentHealth
	flush := func() error {
		// Health goes first (with every Hello, then on every change), so
		// the hub hears about a failing spool before anything else. The
		// drop counters move only when the spool compacts at its cap, so
		// resending on their change stays rare.
		if h := l.Health(); sentHealth == nil || h.GetOsqueryOk() != sentHealth.GetOsqueryOk() ||
			h.GetSpoolOk() != sentHealth.GetSpoolOk() || h.GetDetail() != sentHealth.GetDetail() ||
			h.GetSpoolDroppedResults() != sentHealth.GetSpoolDroppedResults() ||
			h.GetSpoolDroppedTransitions() != sentHealth.GetSpoolDroppedTransitions() {
			if err := stream.Send(&posturev1.AgentMessage{Msg: &posturev1.AgentMessage_Health{Health: h}}); err != nil {
				return err
			}
			sentHealth = h
			l.log.Debug("sent health", "osquery_ok", h.GetOsqueryOk(), "spool_ok", h.GetSpoolOk(), "detail", h.GetDetail(),
				"spool_dropped_results", h.GetSpoolDroppedResults(), "spool_dropped_transitions", h.GetSpoolDroppedTransitions())
		}
		// Batches are read from disk one at a time: a spool filled during
		// a long outage is never held in memory whole.
		for _, seq := range l.cfg.Spool.Seqs(sentSeq) {
			b, err := l.cfg.Spool.Load(seq)
			if errors.Is(err, spool.ErrNotPending) {
				continue // acked or compacted away since listed, or set aside as corrupt
			}
			if err != nil {
				l.log.Error("could not read a spooled batch; will retry", "seq", seq, "err", err)
				break
			}
			if err := stream.Send(&posturev1.AgentMessage{Msg: &posturev1.AgentMessage_Results{Results: b}}); err != nil {
				return err
			}
			sentSeq = seq
			l.log.Debug("sent result batch", "seq", seq, "results", len(b.GetResults()))
		}
		l.mu.Lock()
		facts := l.facts
		l.mu.Unlock()
		if facts != nil && (sentFacts == nil || !maps.Equal(facts, sentFacts)) {
			if err := stream.Send(&posturev1.AgentMessage{Msg: &posturev1.AgentMessage_Facts{Facts: &posturev1.FactReport{
				Values: facts, EvaluatedAt: timestamppb.New(l.clk.Now()),
			}}}); err != nil {
				return err
			}
			sentFacts = facts
			l.log.Debug("sent facts", "facts", facts)
		}
		return nil
	}
	// A failed Send only says the stream broke; the reason (the gRPC
	// status) arrives through the receiving goroutine. Only that goroutine
	// may call Recv now.
	sendFailed := func(err error) error {
		wait := time.NewTimer(5 * time.Second)
		defer wait.Stop()
		for {
			select {
			case rerr := <-recvDone:
				return rerr
			case <-msgs: // the stream is broken; unacked batches are resent
			case <-wait.C:
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return false, sendFailed(err)
	}

	renewRetry := time.Minute
	renewTimer := l.clk.After(l.renewWait(id))
	renewDone := make(chan error, 1)
	for {
		select {
		case <-ctx.Done():
			_ = stream.CloseSend()
			return healthy, ctx.Err()
		case err := <-recvDone:
			return healthy, err
		case <-l.notify:
			if err := flush(); err != nil {
				return healthy, sendFailed(err)
			}
		case <-renewTimer:
			go func() { renewDone <- l.renew(ctx, client) }()
		case err := <-renewDone:
			if err != nil {
				l.log.Warn("certificate renewal failed; will retry", "err", err, "retry_in", renewRetry)
				renewTimer = l.clk.After(renewRetry)
				renewRetry = min(2*renewRetry, 30*time.Minute)
			} else {
				renewRetry = time.Minute
				renewTimer = l.clk.After(l.renewWait(l.id.Get()))
			}
		case m := <-msgs:
			switch msg := m.GetMsg().(type) {
			case *posturev1.HubMessage_PolicySet:
				healthy = true
				l.savePolicySet(msg.PolicySet)
				l.cfg.Runner.Apply(msg.PolicySet)
			case *posturev1.HubMessage_Ack:
				if r := msg.Ack.GetRefused(); r != "" {
					// Resending cannot help: the batch is dropped like any acked one.
					l.log.Error("hub refused a result batch; dropping it", "seq", msg.Ack.GetSeq(), "reason", r)
				}
				if err := l.cfg.Spool.Ack(msg.Ack.GetSeq()); err != nil {
					l.log.Error("could not delete acked batch", "seq", msg.Ack.GetSeq(), "err", err)
				}
				l.cfg.Observer.Acked(l.clk.Now())
			case *posturev1.HubMessage_Status:
				l.log.Debug("device status from hub", "verdict", msg.Status.GetVerdict())
				l.cfg.Observer.DeviceStatus(msg.Status)
			case *posturev1.HubMessage_Recheck:
				l.log.Info("recheck requested", "all", msg.Recheck.GetAll(), "policies", msg.Recheck.GetPolicyIds())
				l.cfg.Runner.Recheck(msg.Recheck.GetPolicyIds(), msg.Recheck.GetAll())
			case *posturev1.HubMessage_Disable:
				l.cfg.Runner.Clear()
				l.dropPolicySet()
				_ = stream.CloseSend()
				return healthy, fmt.Errorf("%w: %s", errDisabled, msg.Disable.GetReason())
			default:
				l.log.Warn("unknown message from hub ignored", "msg", m)
			}
		}
	}
}

// recvErr prefers the stream's status (from Recv) over a Send error, which
// is only io.EOF when the server ended the stream. Only for use before the
// receiving goroutine starts.
func recvErr(stream grpc.BidiStreamingClient[posturev1.AgentMessage, posturev1.HubMessage], sendErr error) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	return sendErr
}

func (l *Link) renewWait(id *identity.Identity) time.Duration {
	l.mu.Lock()
	j := l.rnd.Float64()
	l.mu.Unlock()
	return id.RenewAt(j).Sub(l.clk.Now())
}

// renew asks for a fresh certificate over the open mTLS connection and
// installs it; the stream stays up, later handshakes use the new one.
func (l *Link) renew(ctx context.Context, client posturev1.AgentServiceClient) error {
	old := l.id.Get()
	csr, err := identity.CSR(l.key, old.Leaf.Subject.CommonName)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, l.cfg.RPCTimeout)
	defer cancel()
	resp, err := client.Renew(rctx, &posturev1.RenewRequest{CsrDer: csr})
	if err != nil {
		return fmt.Errorf("renew: %w", err)
	}
	ca := resp.GetCaBundlePem()
	if len(ca) == 0 {
		ca = old.CAPEM
	}
	id, err := l.store.Save(old.HostID, resp.GetCertificatePem(), ca, l.key)
	if err != nil {
		return fmt.Errorf("renew: storing the certificate: %w", err)
	}
	l.setIdentity(id)
	l.log.Info("certificate renewed", "host_id", id.HostID, "not_after", id.Leaf.NotAfter)
	return nil
}

func (l *Link) savePolicySet(ps *posturev1.PolicySet) {
	b, err := proto.Marshal(ps)
	if err == nil {
		err = atomicfile.Write(filepath.Join(l.cfg.StateDir, PolicySetFile), b, 0o600)
	}
	if err != nil {
		l.log.Warn("could not cache the policy set", "err", err)
	}
}

func (l *Link) dropPolicySet() {
	if err := os.Remove(filepath.Join(l.cfg.StateDir, PolicySetFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		l.log.Warn("could not remove the cached policy set", "err", err)
	}
}

// setIdentity installs id for later handshakes and remembers its CA bundle.
func (l *Link) setIdentity(id *identity.Identity) {
	l.id.Set(id)
	l.mu.Lock()
	l.knownCAs = id.CAs
	l.mu.Unlock()
}
