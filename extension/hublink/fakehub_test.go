package hublink

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
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

// testCA is a throw-away CA that signs the hub's server certificate and the
// host certificates, as the real hub does.
type testCA struct {
	key   *ecdsa.PrivateKey
	cert  *x509.Certificate
	pem   []byte
	pool  *x509.CertPool
	clk   clock.Clock
	mu    sync.Mutex
	nextS int64
}

func newTestCA(t *testing.T, clk clock.Clock) *testCA {
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
	return &testCA{key: key, cert: cert, pool: pool, clk: clk, nextS: 100,
		pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) serial() *big.Int {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.nextS++
	return big.NewInt(ca.nextS)
}

func (ca *testCA) serverCert(t *testing.T) tls.Certificate {
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
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key}
}

func (ca *testCA) hostCert(csrDER []byte, hostID string, life time.Duration) ([]byte, *x509.Certificate, error) {
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
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, csr.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	c, _ := x509.ParseCertificate(der)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), c, nil
}

// hubState survives "restarts" of the fake hub, like the real hub's store.
type hubState struct {
	mu        sync.Mutex
	secret    string
	life      time.Duration
	hosts     map[string]bool // host id -> revoked
	enrolls   int
	renews    int
	connects  int
	hellos    []*posturev1.Hello
	batches   []received
	facts     []map[string]string
	peerSer   []*big.Int // client cert serial per Connect
	ackOff    bool
	policySet *posturev1.PolicySet
	streams   []chan *posturev1.HubMessage
}

type received struct {
	conn  int // which Connect call carried it
	batch *posturev1.ResultBatch
}

func newHubState() *hubState {
	return &hubState{
		secret: "s3cret", life: time.Hour, hosts: map[string]bool{},
		policySet: &posturev1.PolicySet{Version: "v1", Interval: durationpb.New(time.Hour),
			Policies: []*posturev1.AgentPolicy{{Id: "disk", Revision: 1, Query: "SELECT 1"}}},
	}
}

func (s *hubState) lock() func() { s.mu.Lock(); return s.mu.Unlock }

type fakeHub struct {
	posturev1.UnimplementedAgentServiceServer
	st   *hubState
	ca   *testCA
	srv  *grpc.Server
	addr string
}

func startHub(t *testing.T, st *hubState, ca *testCA, addr string) *fakeHub {
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
	}
	if err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{
		Certificates: []tls.Certificate{ca.serverCert(t)},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.pool,
		Time:         ca.clk.Now,
	}
	h := &fakeHub{st: st, ca: ca, srv: grpc.NewServer(grpc.Creds(credentials.NewTLS(tc))), addr: lis.Addr().String()}
	posturev1.RegisterAgentServiceServer(h.srv, h)
	go func() { _ = h.srv.Serve(lis) }()
	t.Cleanup(h.srv.Stop)
	return h
}

func (h *fakeHub) Stop() { h.srv.Stop() }

func (h *fakeHub) Enroll(_ context.Context, req *posturev1.EnrollRequest) (*posturev1.EnrollResponse, error) {
	defer h.st.lock()()
	h.st.enrolls++
	if req.GetEnrollSecret() != h.st.secret {
		return nil, status.Error(codes.Unauthenticated, "invalid enroll secret")
	}
	id := "host-" + strings.ToLower(req.GetFacts().GetHardwareUuid())
	certPEM, c, err := h.ca.hostCert(req.GetCsrDer(), id, h.st.life)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	h.st.hosts[id] = false
	return &posturev1.EnrollResponse{HostId: id, CertificatePem: certPEM, CaBundlePem: h.ca.pem, NotAfter: timestamppb.New(c.NotAfter)}, nil
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

func (h *fakeHub) auth(ctx context.Context) (string, *x509.Certificate, error) {
	id, leaf, err := peerHost(ctx)
	if err != nil {
		return "", nil, err
	}
	defer h.st.lock()()
	revoked, known := h.st.hosts[id]
	switch {
	case !known:
		return "", nil, status.Error(codes.Unauthenticated, "unknown host")
	case revoked:
		return "", nil, status.Error(codes.PermissionDenied, "host revoked")
	}
	return id, leaf, nil
}

func (h *fakeHub) Renew(ctx context.Context, req *posturev1.RenewRequest) (*posturev1.RenewResponse, error) {
	id, _, err := h.auth(ctx)
	if err != nil {
		return nil, err
	}
	defer h.st.lock()()
	h.st.renews++
	certPEM, c, err := h.ca.hostCert(req.GetCsrDer(), id, h.st.life)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &posturev1.RenewResponse{CertificatePem: certPEM, CaBundlePem: h.ca.pem, NotAfter: timestamppb.New(c.NotAfter)}, nil
}

func (h *fakeHub) Connect(stream posturev1.AgentService_ConnectServer) error {
	_, leaf, err := h.auth(stream.Context())
	if err != nil {
		return err
	}
	out := make(chan *posturev1.HubMessage, 64)
	h.st.mu.Lock()
	h.st.connects++
	conn := h.st.connects
	h.st.peerSer = append(h.st.peerSer, leaf.SerialNumber)
	h.st.streams = append(h.st.streams, out)
	h.st.mu.Unlock()

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
			h.st.mu.Lock()
			switch msg := m.GetMsg().(type) {
			case *posturev1.AgentMessage_Hello:
				h.st.hellos = append(h.st.hellos, msg.Hello)
				out <- &posturev1.HubMessage{Msg: &posturev1.HubMessage_PolicySet{PolicySet: h.st.policySet}}
			case *posturev1.AgentMessage_Results:
				h.st.batches = append(h.st.batches, received{conn: conn, batch: msg.Results})
				if !h.st.ackOff {
					out <- &posturev1.HubMessage{Msg: &posturev1.HubMessage_Ack{Ack: &posturev1.Ack{Seq: msg.Results.GetSeq()}}}
				}
			case *posturev1.AgentMessage_Facts:
				h.st.facts = append(h.st.facts, msg.Facts.GetValues())
			}
			h.st.mu.Unlock()
		}
	}()
	return <-errc
}

// sendLatest pushes a message down the most recent stream.
func (s *hubState) sendLatest(m *posturev1.HubMessage) {
	defer s.lock()()
	s.streams[len(s.streams)-1] <- m
}

// seqs lists the seqs received on Connect number conn (0: all).
func (s *hubState) seqs(conn int) []uint64 {
	defer s.lock()()
	var out []uint64
	for _, r := range s.batches {
		if conn == 0 || r.conn == conn {
			out = append(out, r.batch.GetSeq())
		}
	}
	return out
}

func (s *hubState) count(f func() int) int { defer s.lock()(); return f() }

func eq(a, b []uint64) bool { return fmt.Sprint(a) == fmt.Sprint(b) }
