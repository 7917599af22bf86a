package agentapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/types/known/timestamppb"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/ca"
	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/sqlite"
)

// fuzzStream is an AgentService_ConnectServer fed from a byte slice of
// length-delimited AgentMessages; it ends with io.EOF.
type fuzzStream struct {
	grpc.ServerStream
	ctx  context.Context
	in   *bufio.Reader
	sent int
}

func (f *fuzzStream) Context() context.Context         { return f.ctx }
func (f *fuzzStream) SetHeader(metadata.MD) error      { return nil }
func (f *fuzzStream) SendHeader(metadata.MD) error     { return nil }
func (f *fuzzStream) SetTrailer(metadata.MD)           {}
func (f *fuzzStream) Send(*posturev1.HubMessage) error { f.sent++; return nil }
func (f *fuzzStream) Recv() (*posturev1.AgentMessage, error) {
	m := &posturev1.AgentMessage{}
	// The size cap stands in for gRPC's 4 MB receive limit.
	if err := (protodelim.UnmarshalOptions{MaxSize: 4 << 20}).UnmarshalFrom(f.in, m); err != nil {
		return nil, io.EOF
	}
	return m, nil
}

func encodeMsgs(t testing.TB, ms ...*posturev1.AgentMessage) []byte {
	var b bytes.Buffer
	for _, m := range ms {
		if _, err := protodelim.MarshalTo(&b, m); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// FuzzConnect feeds arbitrary message sequences into the hub's stream
// handler, after a valid Hello from an enrolled host: it never panics, always
// returns, and stores results only for the policies of the host's set.
func FuzzConnect(f *testing.F) {
	ctx := context.Background()
	dir := f.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "fuzz.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	authority, err := ca.LoadOrCreate(dir)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := st.ApplyPolicies(ctx, store.ApplyRequest{At: time.Now(), Policies: []store.Policy{
		{ID: "disk", Name: "Disk", Query: "SELECT 1", Severity: "high", ConditionalAccess: true},
		{ID: "fw", Name: "FW", Query: "SELECT 1", Severity: "low"},
	}}); err != nil {
		f.Fatal(err)
	}
	h, err := st.EnrollHost(ctx, store.Host{Team: store.DefaultTeam, Hostname: "fuzz", Platform: "darwin", EnrolledAt: time.Now(), LastSeenAt: time.Now()})
	if err != nil {
		f.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	iss, err := authority.SignHost(csr, h.ID, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	leaf := parseLeaf(f, iss.CertPEM)
	if err := st.SetHostCert(ctx, h.ID, iss.Serial, iss.NotAfter); err != nil {
		f.Fatal(err)
	}
	pctx := peer.NewContext(ctx, &peer.Peer{
		Addr:     &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1},
		AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf}}}},
	})
	srv := New(Config{Store: st, CA: authority, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		HelloTimeout: time.Second, MaxBatchResults: 50})
	hello := &posturev1.AgentMessage{Msg: &posturev1.AgentMessage_Hello{Hello: &posturev1.Hello{
		Facts: &posturev1.HostFacts{Hostname: "fuzz", Platform: "darwin"}}}}
	now := timestamppb.Now()
	res := func(id string, st posturev1.ResultStatus) *posturev1.PolicyResult {
		return &posturev1.PolicyResult{PolicyId: id, Revision: 1, Status: st, EvaluatedAt: now}
	}
	f.Add(encodeMsgs(f, &posturev1.AgentMessage{Msg: &posturev1.AgentMessage_Results{Results: &posturev1.ResultBatch{Seq: 1,
		Results: []*posturev1.PolicyResult{res("disk", 1), res("fw", 2), res("nope", 3)}}}}))
	f.Add(encodeMsgs(f, &posturev1.AgentMessage{Msg: &posturev1.AgentMessage_Health{Health: &posturev1.AgentHealth{SpoolOk: true, Detail: "osquery down", SpoolDepth: 1 << 31}}}))
	f.Add(encodeMsgs(f, &posturev1.AgentMessage{Msg: &posturev1.AgentMessage_Health{Health: &posturev1.AgentHealth{OsqueryOk: true, SpoolOk: true,
		SpoolDroppedResults: 3, SpoolDroppedTransitions: 1<<64 - 1}}}))
	f.Add(encodeMsgs(f, &posturev1.AgentMessage{Msg: &posturev1.AgentMessage_Facts{Facts: &posturev1.FactReport{
		Values: map[string]string{"entra_device_id": "ABC", "user_principal_name": "  someone@example.com  "}}}}, hello))
	f.Add([]byte{0x05, 0x12, 0x03, 0x0a, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		in := append(encodeMsgs(t, hello), data...)
		stream := &fuzzStream{ctx: pctx, in: bufio.NewReader(bytes.NewReader(in))}
		done := make(chan error, 1)
		go func() { done <- srv.Connect(stream) }()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, io.EOF) && err.Error() == "" {
				t.Fatalf("empty error")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Connect did not return after the stream ended")
		}
		rs, err := st.LatestResults(ctx, h.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.PolicyID != "disk" && r.PolicyID != "fw" {
				t.Fatalf("stored a result for %q, not in the host's policy set", r.PolicyID)
			}
		}
		if hr, err := st.GetHostReporting(ctx, h.ID); err != nil {
			t.Fatal(err)
		} else if hh := hr.Health; hh != nil && (len(hh.Detail) > 1024 || hh.SpoolDepth < 0) {
			t.Fatalf("unbounded health stored: %d bytes, depth %d", len(hh.Detail), hh.SpoolDepth)
		} else if hh != nil && (hh.SpoolDroppedTransitions > hh.SpoolDroppedResults || hh.SpoolDroppedResults > store.MaxSpoolDropped) {
			t.Fatalf("drop counters stored as %d results, %d transitions", hh.SpoolDroppedResults, hh.SpoolDroppedTransitions)
		}
	})
}

func parseLeaf(t testing.TB, certPEM []byte) *x509.Certificate {
	t.Helper()
	rest := certPEM
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			t.Fatal("no certificate in PEM")
		}
		if blk.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
	}
}
