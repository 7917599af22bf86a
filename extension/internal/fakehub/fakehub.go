// Package fakehub is a small AgentService stand-in for posture.ext tests:
// a throw-away CA, real TLS on loopback, and a record of what the agent sent.
package fakehub

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/extension/clock"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// CA is a throw-away CA that signs the hub's server certificate and the
// host certificates, as the real hub does.
type CA struct {
	key   *ecdsa.PrivateKey
	Cert  *x509.Certificate
	PEM   []byte
	Pool  *x509.CertPool
	clk   clock.Clock
	mu    sync.Mutex
	nextS int64
}

// NewCA makes a CA valid around clk's time.
func NewCA(t testing.TB, clk clock.Clock) *CA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := clk.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "posture test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{key: key, Cert: cert, Pool: pool, clk: clk, nextS: 100,
		PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *CA) serial() *big.Int {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.nextS++
	return big.NewInt(ca.nextS)
}

func (ca *CA) serverCert(t testing.TB) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	// The agent checks the server certificate against the real clock.
	now := time.Now()
	if f := ca.clk.Now(); f.Before(now) {
		now = f
	}
	tmpl := &x509.Certificate{
		SerialNumber: ca.serial(),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key}
}

func (ca *CA) hostCert(csrDER []byte, hostID string, life time.Duration) ([]byte, *x509.Certificate, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, nil, err
	}
	now := ca.clk.Now()
	u, _ := url.Parse("posture://host/" + hostID)
	tmpl := &x509.Certificate{
		SerialNumber: ca.serial(),
		Subject:      pkix.Name{CommonName: csr.Subject.CommonName},
		URIs:         []*url.URL{u},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(life),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	c, _ := x509.ParseCertificate(der)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), c, nil
}

// State survives "restarts" of the fake hub, like the real hub's store.
type State struct {
	Mu          sync.Mutex
	Secret      string
	Life        time.Duration
	Hosts       map[string]bool // host id -> revoked
	Enrolls     int
	Renews      int
	Connects    int
	Hellos      []*posturev1.Hello
	Batches     []Received
	Facts       []map[string]string
	Health      []*posturev1.AgentHealth // every AgentHealth, in order
	PeerSerials []*big.Int               // client cert serial per Connect
	AckOff      bool
	PolicySet   *posturev1.PolicySet
	// Status, when set, is sent after the PolicySet on every Hello, as
	// the real hub sends DeviceStatus.
	Status  *posturev1.DeviceStatus
	streams []chan *posturev1.HubMessage
}

// Received is one ResultBatch as the hub got it.
type Received struct {
	Conn  int // which Connect call carried it
	Batch *posturev1.ResultBatch
}

// NewState accepts the secret "s3cret", issues one-hour certificates and
// serves one policy ("disk", SELECT 1) every hour.
func NewState() *State {
	return &State{
		Secret: "s3cret", Life: time.Hour, Hosts: map[string]bool{},
		PolicySet: &posturev1.PolicySet{Version: "v1", Interval: durationpb.New(time.Hour),
			Policies: []*posturev1.AgentPolicy{{Id: "disk", Revision: 1, Query: "SELECT 1"}}},
	}
}

func (s *State) lock() func() { s.Mu.Lock(); return s.Mu.Unlock }

// Hub is one running instance serving a State; Stop and Start again on the
// same Addr to simulate a hub restart.
type Hub struct {
	posturev1.UnimplementedAgentServiceServer
	st   *State
	ca   *CA
	srv  *grpc.Server
	Addr string
}

// Start serves st on addr ("" for a free loopback port) until the test ends.
func Start(t testing.TB, st *State, ca *CA, addr string) *Hub {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var lis net.Listener
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for {
		lis, err = net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		<-time.After(10 * time.Millisecond) // the old listener is still closing
	}
	if err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{
		Certificates: []tls.Certificate{ca.serverCert(t)},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.Pool,
		Time:         ca.clk.Now,
	}
	h := &Hub{st: st, ca: ca, srv: grpc.NewServer(grpc.Creds(credentials.NewTLS(tc))), Addr: lis.Addr().String()}
	posturev1.RegisterAgentServiceServer(h.srv, h)
	go func() { _ = h.srv.Serve(lis) }()
	t.Cleanup(h.srv.Stop)
	return h
}

// Stop ends the hub and every open stream.
func (h *Hub) Stop() { h.srv.Stop() }

func (h *Hub) Enroll(_ context.Context, req *posturev1.EnrollRequest) (*posturev1.EnrollResponse, error) {
	defer h.st.lock()()
	h.st.Enrolls++
	if req.GetEnrollSecret() != h.st.Secret {
		return nil, status.Error(codes.Unauthenticated, "invalid enroll secret")
	}
	id := "host-" + strings.ToLower(req.GetFacts().GetHardwareUuid())
	certPEM, c, err := h.ca.hostCert(req.GetCsrDer(), id, h.st.Life)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if revoked := h.st.Hosts[id]; revoked {
		return nil, status.Error(codes.PermissionDenied, "this host was revoked")
	}
	h.st.Hosts[id] = false
	return &posturev1.EnrollResponse{HostId: id, CertificatePem: certPEM, CaBundlePem: h.ca.PEM, NotAfter: timestamppb.New(c.NotAfter)}, nil
}

func peerHost(ctx context.Context) (string, *x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", nil, status.Error(codes.Unauthenticated, "no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 {
		return "", nil, status.Error(codes.Unauthenticated, "client certificate required")
	}
	leaf := ti.State.VerifiedChains[0][0]
	for _, u := range leaf.URIs {
		if s := u.String(); strings.HasPrefix(s, "posture://host/") {
			return strings.TrimPrefix(s, "posture://host/"), leaf, nil
		}
	}
	return "", nil, status.Error(codes.Unauthenticated, "no host id")
}

func (h *Hub) auth(ctx context.Context) (string, *x509.Certificate, error) {
	id, leaf, err := peerHost(ctx)
	if err != nil {
		return "", nil, err
	}
	defer h.st.lock()()
	revoked, known := h.st.Hosts[id]
	switch {
	case !known:
		return "", nil, status.Error(codes.Unauthenticated, "unknown host")
	case revoked:
		return "", nil, status.Error(codes.PermissionDenied, "host revoked")
	}
	return id, leaf, nil
}

func (h *Hub) Renew(ctx context.Context, req *posturev1.RenewRequest) (*posturev1.RenewResponse, error) {
	id, _, err := h.auth(ctx)
	if err != nil {
		return nil, err
	}
	defer h.st.lock()()
	h.st.Renews++
	certPEM, c, err := h.ca.hostCert(req.GetCsrDer(), id, h.st.Life)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &posturev1.RenewResponse{CertificatePem: certPEM, CaBundlePem: h.ca.PEM, NotAfter: timestamppb.New(c.NotAfter)}, nil
}

func (h *Hub) Connect(stream posturev1.AgentService_ConnectServer) error {
	_, leaf, err := h.auth(stream.Context())
	if err != nil {
		return err
	}
	out := make(chan *posturev1.HubMessage, 64)
	h.st.Mu.Lock()
	h.st.Connects++
	conn := h.st.Connects
	h.st.PeerSerials = append(h.st.PeerSerials, leaf.SerialNumber)
	h.st.streams = append(h.st.streams, out)
	h.st.Mu.Unlock()

	errc := make(chan error, 2)
	go func() {
		for {
			select {
			case m := <-out:
				if err := stream.Send(m); err != nil {
					errc <- err
					return
				}
				if m.GetDisable() != nil {
					errc <- nil
					return
				}
			case <-stream.Context().Done():
				return
			}
		}
	}()
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			h.st.Mu.Lock()
			switch msg := m.GetMsg().(type) {
			case *posturev1.AgentMessage_Hello:
				h.st.Hellos = append(h.st.Hellos, msg.Hello)
				out <- &posturev1.HubMessage{Msg: &posturev1.HubMessage_PolicySet{PolicySet: h.st.PolicySet}}
				if h.st.Status != nil {
					out <- &posturev1.HubMessage{Msg: &posturev1.HubMessage_Status{Status: h.st.Status}}
				}
			case *posturev1.AgentMessage_Results:
				h.st.Batches = append(h.st.Batches, Received{Conn: conn, Batch: msg.Results})
				if !h.st.AckOff {
					out <- &posturev1.HubMessage{Msg: &posturev1.HubMessage_Ack{Ack: &posturev1.Ack{Seq: msg.Results.GetSeq()}}}
				}
			case *posturev1.AgentMessage_Facts:
				h.st.Facts = append(h.st.Facts, msg.Facts.GetValues())
			case *posturev1.AgentMessage_Health:
				h.st.Health = append(h.st.Health, msg.Health)
			}
			h.st.Mu.Unlock()
		}
	}()
	return <-errc
}

// SendLatest pushes a message down the most recent stream.
func (s *State) SendLatest(m *posturev1.HubMessage) {
	defer s.lock()()
	s.streams[len(s.streams)-1] <- m
}

// Seqs lists the seqs received on Connect number conn (0: all).
func (s *State) Seqs(conn int) []uint64 {
	defer s.lock()()
	var out []uint64
	for _, r := range s.Batches {
		if conn == 0 || r.Conn == conn {
			out = append(out, r.Batch.GetSeq())
		}
	}
	return out
}

// Count reads state under the lock.
func (s *State) Count(f func() int) int { defer s.lock()(); return f() }

// LastHealth is the newest AgentHealth received (nil if none).
func (s *State) LastHealth() *posturev1.AgentHealth {
	s.Mu.Lock()
	defer s.Mu.Unlock()
	if len(s.Health) == 0 {
		return nil
	}
	return s.Health[len(s.Health)-1]
}
