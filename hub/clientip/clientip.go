// Package clientip decides who a request came from: the peer address, or -
// only when the peer is a configured trusted proxy - the address that proxy
// names in X-Forwarded-For (or RFC 7239 Forwarded). Every place that keys on
// or records a client address (portal rate limits, audit source, logs) asks
// here, so a forged header never counts unless a trusted hop vouches for it.
package clientip

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// Header is the gRPC metadata key by which the hub's own REST gateway and
// portal pages pass the resolved client address to the gRPC server. It is
// believed only on calls over the gateway's private unix socket; Strip
// removes it from every other call.
const Header = "x-posture-client-addr"

// Resolver holds the trusted proxy ranges. The zero value and nil trust no
// one: the peer address is the client.
type Resolver struct {
	trusted []netip.Prefix
}

// ParseList parses a comma-separated list of CIDRs and IP addresses (an IP
// is a /32 or /128). Empty entries are skipped; anything else that does not
// parse is an error naming the entry.
func ParseList(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: not a CIDR (e.g. 10.0.0.0/8, fd00::/8): %w", f, err)
			}
			if p.Addr().Zone() != "" {
				return nil, fmt.Errorf("trusted proxy %q: zones are not allowed", f)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: not an IP address or CIDR: %w", f, err)
		}
		a = a.WithZone("").Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// New returns a resolver trusting the given ranges (none: today's
// behaviour, the peer is the client).
func New(trusted []netip.Prefix) *Resolver {
	return &Resolver{trusted: append([]netip.Prefix(nil), trusted...)}
}

// Trusts reports whether ip is inside a trusted proxy range.
func (r *Resolver) Trusts(ip netip.Addr) bool {
	if r == nil || !ip.IsValid() {
		return false
	}
	ip = ip.WithZone("").Unmap()
	for _, p := range r.trusted {
		// An IPv4 range also covers IPv4-mapped IPv6 peers (Unmap above).
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// FromRequest is the HTTP client's address. The direct peer keeps its port
// (ip:port, as the audit log has always shown it); an address taken from
// the forwarding headers is what the proxy wrote, normalised to an IP
// (with its port when the proxy gave one).
func (r *Resolver) FromRequest(req *http.Request) string {
	return r.Resolve(req.RemoteAddr, req.Header.Values("X-Forwarded-For"), req.Header.Values("Forwarded"))
}

// Resolve picks the client address given the direct peer (host:port or a
// bare IP) and the X-Forwarded-For and Forwarded header values in the order
// received. The headers count only when the peer is trusted; then the hops
// are walked right to left (each proxy appends its own peer), skipping
// trusted ones: the first untrusted hop is the client. An entry that is not
// an address stops the walk at the trusted hop that passed it on, since
// nothing further left can be believed. X-Forwarded-For wins when both
// headers are present.
func (r *Resolver) Resolve(peerAddr string, xff, forwarded []string) string {
	ip, ok := parseHop(peerAddr)
	if !ok || !r.Trusts(ip) {
		return peerAddr
	}
	var hops []string
	if len(xff) > 0 {
		for _, v := range xff {
			hops = append(hops, strings.Split(v, ",")...)
		}
	} else {
		for _, v := range forwarded {
			hops = append(hops, forwardedFor(v)...)
		}
	}
	client := peerAddr
	for i := len(hops) - 1; i >= 0; i-- {
		h := strings.TrimSpace(hops[i])
		a, ok := parseHop(h)
		if !ok {
			return client
		}
		client = normalise(h, a)
		if !r.Trusts(a) {
			return client
		}
	}
	// Every hop is trusted: the leftmost one is the client.
	return client
}

// Host is addr without its port (what rate limits key on).
func Host(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// parseHop reads an IP, an ip:port or a [v6]:port / [v6].
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Addr{}, false
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().WithZone("").Unmap(), true
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.WithZone("").Unmap(), true
}

// normalise writes a hop as the hub records it: the IP, with the port when
// the hop carried one (so no proxy-supplied text reaches logs verbatim).
func normalise(hop string, a netip.Addr) string {
	if ap, err := netip.ParseAddrPort(strings.TrimSpace(hop)); err == nil {
		return netip.AddrPortFrom(a, ap.Port()).String()
	}
	return a.String()
}

// forwardedFor extracts the for= value of each element of one RFC 7239
// Forwarded header value; an element without one yields "" (not an address).
func forwardedFor(v string) []string {
	var out []string
	for _, elem := range strings.Split(v, ",") {
		val := ""
		for _, pair := range strings.Split(elem, ";") {
			k, x, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "for") {
				val = strings.Trim(strings.TrimSpace(x), `"`)
			}
		}
		out = append(out, val)
	}
	return out
}

// FromContext is a gRPC caller's address. On the gateway's private unix
// socket it is what the gateway or the portal pages resolved and passed in
// Header; on TCP it is the peer, or - when the peer is a trusted proxy (an
// L7 gRPC load balancer) - the client its x-forwarded-for names.
func (r *Resolver) FromContext(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if p.Addr.Network() == "unix" {
		// The gateway's value is the last: gRPC-Gateway adds metadata from
		// the annotator after any taken from the HTTP headers.
		if v := md.Get(Header); len(v) > 0 {
			return v[len(v)-1]
		}
		return "unix"
	}
	return r.Resolve(p.Addr.String(), md.Get("x-forwarded-for"), md.Get("forwarded"))
}

// fromGateway reports whether the call came over a unix socket, which only
// the hub's own gateway and pages can reach.
func fromGateway(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	return ok && p.Addr != nil && p.Addr.Network() == "unix"
}

// strip removes Header from a call that did not come over the gateway
// socket, so no handler can ever read a client-supplied value.
func strip(ctx context.Context) context.Context {
	if fromGateway(ctx) {
		return ctx
	}
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok || len(md.Get(Header)) == 0 {
		return ctx
	}
	md = md.Copy()
	md.Delete(Header)
	return metadata.NewIncomingContext(ctx, md)
}

// StripUnary is the interceptor form of strip; put it first in the chain.
func StripUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	return h(strip(ctx), req)
}

// StripStream is StripUnary for streams.
func StripStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx := strip(ss.Context())
	if ctx == ss.Context() {
		return h(srv, ss)
	}
	return h(srv, &ctxStream{ServerStream: ss, ctx: ctx})
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }
