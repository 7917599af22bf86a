package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
)

// simAgent speaks the agent protocol for real (enroll over TLS, mTLS stream,
// Hello, facts, result batches, acks) without osquery, so a test or a
// benchmark can drive hundreds of hosts from one process.
type simAgent struct {
	HostID string
	conn   *grpc.ClientConn
	stream posturev1.AgentService_ConnectClient
	cancel context.CancelFunc

	mu       sync.Mutex
	seq      uint64
	acked    map[uint64]chan struct{}
	policies map[string]int64 // id → revision of the last PolicySet
	gotSet   chan struct{}
	ended    chan struct{} // closed when the stream ends; endErr says why
	endErr   error
	// onAck, if set before sending, sees every Ack.
	onAck    func(*posturev1.Ack)
	statuses []*posturev1.DeviceStatus
	rechecks int
	// onRecheck, if set, runs (in its own goroutine) on every Recheck.
	onRecheck func()
}

func startSimAgent(ctx context.Context, addr string, caPEM []byte, secret, hostname, uuid string) (*simAgent, error) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: hostname}}, key)
	if err != nil {
		return nil, err
	}
	facts := &posturev1.HostFacts{Hostname: hostname, Platform: "darwin", OsPlatform: "darwin", OsName: "macOS", OsVersion: "15.7.2", HardwareUuid: uuid}
	tlsCfg := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	plain, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		return nil, err
	}
	resp, err := posturev1.NewAgentServiceClient(plain).Enroll(ctx, &posturev1.EnrollRequest{EnrollSecret: secret, Facts: facts, CsrDer: csr})
	plain.Close()
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(resp.GetCertificatePem(), pemEncode("EC PRIVATE KEY", keyDER))
	if err != nil {
		return nil, err
	}
	mtls := tlsCfg.Clone()
	mtls.Certificates = []tls.Certificate{cert}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(mtls)))
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	stream, err := posturev1.NewAgentServiceClient(conn).Connect(sctx)
	if err != nil {
		cancel()
		conn.Close()
		return nil, err
	}
	a := &simAgent{HostID: resp.GetHostId(), conn: conn, stream: stream, cancel: cancel,
		acked: map[uint64]chan struct{}{}, policies: map[string]int64{}, gotSet: make(chan struct{}), ended: make(chan struct{})}
	if err := stream.Send(&posturev1.AgentMessage{Msg: &posturev1.AgentMessage_Hello{Hello: &posturev1.Hello{Facts: facts}}}); err != nil {
		a.Close()
		return nil, err
	}
	go a.recv()
	select {
	case <-a.gotSet:
	case <-ctx.Done():
		a.Close()
		return nil, ctx.Err()
	}
	return a, nil
}

func (a *simAgent) recv() {
	first := true
	for {
		m, err := a.stream.Recv()
		if err != nil {
			a.endErr = err
			close(a.ended)
			return
		}
		a.mu.Lock()
		switch {
		case m.GetPolicySet() != nil:
			a.policies = map[string]int64{}
			for _, p := range m.GetPolicySet().GetPolicies() {
				a.policies[p.GetId()] = p.GetRevision()
			}
			if first {
				close(a.gotSet)
				first = false
			}
		case m.GetStatus() != nil:
			a.statuses = append(a.statuses, m.GetStatus())
		case m.GetRecheck() != nil:
			a.rechecks++
			if f := a.onRecheck; f != nil {
				go f()
			}
		case m.GetAck() != nil:
			if a.onAck != nil {
				a.onAck(m.GetAck())
			}
			if ch, ok := a.acked[m.GetAck().GetSeq()]; ok {
				close(ch)
				delete(a.acked, m.GetAck().GetSeq())
			}
		}
		a.mu.Unlock()
	}
}

// ReportFacts sends one fact report with exactly these values.
func (a *simAgent) ReportFacts(values map[string]string) error {
	return a.stream.Send(&posturev1.AgentMessage{Msg: &posturev1.AgentMessage_Facts{Facts: &posturev1.FactReport{
		Values: values, EvaluatedAt: timestamppb.Now(),
	}}})
}

// ReportDevice sends the Entra device id fact.
func (a *simAgent) ReportDevice(deviceID string) error {
	return a.stream.Send(&posturev1.AgentMessage{Msg: &posturev1.AgentMessage_Facts{Facts: &posturev1.FactReport{
		Values: map[string]string{"entra_device_id": deviceID}, EvaluatedAt: timestamppb.Now(),
	}}})
}

// Send sends one batch with every policy of the last PolicySet at the given
// status (or per-policy overrides) and returns a channel closed on its ack.
func (a *simAgent) Send(status posturev1.ResultStatus, override map[string]posturev1.ResultStatus) (<-chan struct{}, error) {
	a.mu.Lock()
	a.seq++
	seq := a.seq
	ch := make(chan struct{})
	a.acked[seq] = ch
	b := &posturev1.ResultBatch{Seq: seq}
	now := timestamppb.Now()
	for id, rev := range a.policies {
		st := status
		if o, ok := override[id]; ok {
			st = o
		}
		b.Results = append(b.Results, &posturev1.PolicyResult{PolicyId: id, Revision: rev, Status: st, EvaluatedAt: now, Duration: durationpb.New(time.Millisecond)})
	}
	a.mu.Unlock()
	return ch, a.stream.Send(&posturev1.AgentMessage{Msg: &posturev1.AgentMessage_Results{Results: b}})
}

// Statuses returns the DeviceStatus messages received so far.
func (a *simAgent) Statuses() []*posturev1.DeviceStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*posturev1.DeviceStatus(nil), a.statuses...)
}

// OnRecheck sets what the agent does when told to recheck.
func (a *simAgent) OnRecheck(f func()) {
	a.mu.Lock()
	a.onRecheck = f
	a.mu.Unlock()
}

// Rechecks is the number of Recheck messages received.
func (a *simAgent) Rechecks() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rechecks
}

func (a *simAgent) Close() {
	a.cancel()
	a.conn.Close()
}

func waitAck(t testing.TB, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("no ack within 30s")
	}
}
