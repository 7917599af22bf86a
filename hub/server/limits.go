package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/posture-dev/posture/hub/clientip"
	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/tokens"
)

// Default limits (see Config).
const (
	DefaultHTTPMaxBody      = 1 << 20  // 1 MiB: every admin REST body but policy apply
	DefaultHTTPMaxApplyBody = 16 << 20 // 16 MiB: POST /api/v1/policies:apply

	// HTTP server timeouts. WriteTimeout is not set on the server: streaming
	// routes (the portal's server-sent events) must outlive it, so the admin
	// API and the health/metrics routes set their write deadline per request.
	httpReadHeaderTimeout = 10 * time.Second
	httpReadTimeout       = time.Minute // the whole request, body included
	httpIdleTimeout       = 2 * time.Minute
	httpWriteTimeout      = 2 * time.Minute // per route, see above
	httpMaxHeaderBytes    = 64 << 10

	// gRPC per-method caps on one received message.
	grpcAdminMaxMsg  = 1 << 20  // admin calls but ApplyPolicies
	grpcEnrollMaxMsg = 64 << 10 // Enroll / Renew: facts and a CSR
	grpcAgentMaxMsg  = 4 << 20  // one Connect message (a result batch): gRPC's usual default
	grpcOtherMaxMsg  = 64 << 10 // health, reflection
	// gatewayMaxRecv bounds what the gateway accepts back (big host lists).
	gatewayMaxRecv = 64 << 20
)

// applyPath is the one REST route allowed the larger body cap.
const applyPath = "/api/v1/policies:apply"

// portalPrefix is served with its own (session) authentication.
const portalPrefix = "/api/v1/portal/"

// portalMaxBody caps what an end-user page or portal call may send.
const portalMaxBody = 64 << 10

// portal reports whether r is for the end-user pages or their JSON API.
func (g *apiGuard) portal(r *http.Request) bool {
	p := r.URL.Path
	return strings.HasPrefix(p, portalPrefix) || p == "/remediate" || p == "/enroll" ||
		strings.HasPrefix(p, "/remediate/") || strings.HasPrefix(p, "/portal/")
}

// msgCaps holds the per-method gRPC message caps.
type msgCaps struct{ apply int }

func (c msgCaps) limit(fullMethod string) int {
	switch {
	case fullMethod == "/posture.v1.AdminService/ApplyPolicies":
		return c.apply
	case strings.HasPrefix(fullMethod, "/posture.v1.AdminService/"):
		return grpcAdminMaxMsg
	case fullMethod == "/posture.v1.AgentService/Enroll", fullMethod == "/posture.v1.AgentService/Renew":
		return grpcEnrollMaxMsg
	case strings.HasPrefix(fullMethod, "/posture.v1.AgentService/"):
		return grpcAgentMaxMsg
	}
	return grpcOtherMaxMsg
}

func tooBig(fullMethod string, n, limit int) error {
	return status.Errorf(codes.ResourceExhausted, "%s: message of %d bytes is over this method's limit of %d bytes", fullMethod, n, limit)
}

// unary refuses a request over its method's cap. The server-wide
// MaxRecvMsgSize (the largest cap) already bounds what was decoded.
func (c msgCaps) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if m, ok := req.(proto.Message); ok {
		if n, limit := proto.Size(m), c.limit(info.FullMethod); n > limit {
			return nil, tooBig(info.FullMethod, n, limit)
		}
	}
	return handler(ctx, req)
}

func (c msgCaps) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &cappedStream{ServerStream: ss, method: info.FullMethod, limit: c.limit(info.FullMethod)})
}

type cappedStream struct {
	grpc.ServerStream
	method string
	limit  int
}

func (s *cappedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if pm, ok := m.(proto.Message); ok {
		if n := proto.Size(pm); n > s.limit {
			return tooBig(s.method, n, s.limit)
		}
	}
	return nil
}

// apiGuard sits in front of the REST gateway. It refuses work before doing
// any: a request without a usable bearer token gets 401 before a byte of
// its body is read, and a body over the cap gets 413 (from Content-Length
// when given, else while reading, never buffering more than the cap). The
// token's role is still checked by the gRPC interceptor.
type apiGuard struct {
	next            http.Handler
	tokens          store.Tokens
	maxBody, maxApp int64
	log             *slog.Logger
}

func (g *apiGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(httpWriteTimeout))
	// Only the gateway may say where a call came from.
	for k := range r.Header {
		if strings.HasPrefix(strings.ToLower(k), "grpc-metadata-x-posture-") {
			r.Header.Del(k)
		}
	}
	if g.portal(r) {
		// The end-user pages and their JSON authenticate with a signed link
		// or a session cookie (checked by the portal), not a bearer token;
		// their bodies are tiny forms.
		r.Body = http.MaxBytesReader(w, r.Body, portalMaxBody)
		g.next.ServeHTTP(w, r)
		return
	}
	raw := ""
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		raw = strings.TrimSpace(a[7:])
	}
	if raw == "" {
		apiError(w, http.StatusUnauthorized, codes.Unauthenticated, `missing "Authorization: Bearer <token>"`)
		return
	}
	tok, err := g.tokens.FindAPIToken(r.Context(), tokens.Hash(raw))
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && !tok.Usable(time.Now())):
		apiError(w, http.StatusUnauthorized, codes.Unauthenticated, "API token is not valid (unknown, revoked or expired)")
		return
	case err != nil:
		g.log.Warn("REST token lookup", "err", err)
		apiError(w, http.StatusServiceUnavailable, codes.Unavailable, "token lookup failed")
		return
	}
	limit := g.maxBody
	if r.URL.Path == applyPath {
		limit = g.maxApp
	}
	if r.ContentLength > limit {
		apiError(w, http.StatusRequestEntityTooLarge, codes.ResourceExhausted,
			fmt.Sprintf("request body of %d bytes is over the %d-byte limit", r.ContentLength, limit))
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			apiError(w, http.StatusRequestEntityTooLarge, codes.ResourceExhausted,
				fmt.Sprintf("request body is over the %d-byte limit", limit))
			return
		case err != nil:
			apiError(w, http.StatusBadRequest, codes.InvalidArgument, "read request body: "+err.Error())
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
	}
	g.next.ServeHTTP(w, r)
}

// apiError writes the gateway's error shape ({"code","message","details"}).
func apiError(w http.ResponseWriter, httpCode int, code codes.Code, msg string) {
	b, _ := protojson.Marshal(status.New(code, msg).Proto())
	w.Header().Set("Content-Type", "application/json")
	if code == codes.Unauthenticated {
		w.Header().Set("WWW-Authenticate", `Bearer realm="posture"`)
	}
	w.WriteHeader(httpCode)
	w.Write(b)
}

// withWriteDeadline bounds a non-streaming route's response time.
func withWriteDeadline(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(httpWriteTimeout))
		h.ServeHTTP(w, r)
	})
}

// gatewayOptions make the REST gateway exact: unknown JSON fields are a 400
// that names the field (not silently dropped), and the HTTP client's address
// (resolved through the trusted proxies) reaches the gRPC server for the
// audit log and the portal's limits. A client's own Grpc-Metadata-X-Posture-
// Client-Addr header is dropped, not forwarded.
func gatewayOptions(proxies *clientip.Resolver) []runtime.ServeMuxOption {
	return []runtime.ServeMuxOption{
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.HTTPBodyMarshaler{Marshaler: &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{EmitUnpopulated: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}}),
		runtime.WithErrorHandler(gatewayError),
		runtime.WithIncomingHeaderMatcher(func(key string) (string, bool) {
			k, ok := runtime.DefaultHeaderMatcher(key)
			if ok && strings.EqualFold(k, clientip.Header) {
				return "", false
			}
			return k, ok
		}),
		runtime.WithMetadata(func(_ context.Context, r *http.Request) metadata.MD {
			return metadata.Pairs(clientip.Header, proxies.FromRequest(r))
		}),
	}
}

// gatewayError rewords protojson's decode errors ("proto: (line 1:15):
// unknown field \"x\"") into one a client can act on, then answers as the
// gateway does.
func gatewayError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if s, ok := status.FromError(err); ok && s.Code() == codes.InvalidArgument {
		msg := s.Message()
		if i := strings.Index(msg, "unknown field "); i >= 0 && strings.HasPrefix(msg, "proto:") {
			err = status.Errorf(codes.InvalidArgument, "request body: %s (check the spelling; unknown fields are refused, not ignored)", msg[i:])
		} else if strings.HasPrefix(msg, "proto:") {
			err = status.Errorf(codes.InvalidArgument, "request body: %s", strings.TrimPrefix(msg, "proto: "))
		}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

// plainHTTPBeyondLoopback reports whether addr listens on more than the
// loopback interface (":8080", "0.0.0.0:…", a routable address or name).
func plainHTTPBeyondLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return true
	}
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}
