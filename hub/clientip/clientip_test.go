package clientip

import (
	"context"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

func mustResolver(t *testing.T, list string) *Resolver {
	t.Helper()
	p, err := ParseList(list)
	if err != nil {
		t.Fatal(err)
	}
	return New(p)
}

func TestParseList(t *testing.T) {
	p, err := ParseList(" 10.0.0.0/8, 192.168.1.7 ,,fd00::/8, ::1, 10.1.2.3/16")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, x := range p {
		got = append(got, x.String())
	}
	if want := "10.0.0.0/8 192.168.1.7/32 fd00::/8 ::1/128 10.1.0.0/16"; strings.Join(got, " ") != want {
		t.Fatalf("parsed %v, want %s", got, want)
	}
	for _, bad := range []string{"10.0.0.0/33", "10.0.0.", "proxy.example.com", "10.0.0.0/8,nope", "fe80::1%eth0/64"} {
		if _, err := ParseList(bad); err == nil {
			t.Errorf("ParseList(%q) accepted", bad)
		}
	}
	if p, err := ParseList(""); err != nil || len(p) != 0 {
		t.Fatalf("empty list: %v %v", p, err)
	}
}

func TestResolve(t *testing.T) {
	r := mustResolver(t, "10.0.0.0/8,192.168.1.1,fd00::/8")
	for _, tc := range []struct {
		name     string
		r        *Resolver
		peer     string
		xff, fwd []string
		want     string
	}{
		{name: "no proxies configured: header ignored", r: New(nil), peer: "10.0.0.5:1234", xff: []string{"1.2.3.4"}, want: "10.0.0.5:1234"},
		{name: "nil resolver", r: nil, peer: "10.0.0.5:1234", xff: []string{"1.2.3.4"}, want: "10.0.0.5:1234"},
		{name: "spoofed XFF from an untrusted peer", r: r, peer: "203.0.113.9:5555", xff: []string{"1.2.3.4"}, want: "203.0.113.9:5555"},
		{name: "spoofed Forwarded from an untrusted peer", r: r, peer: "203.0.113.9:5555", fwd: []string{"for=1.2.3.4"}, want: "203.0.113.9:5555"},
		{name: "trusted peer, no header", r: r, peer: "10.0.0.5:1234", want: "10.0.0.5:1234"},
		{name: "one trusted hop", r: r, peer: "10.0.0.5:1234", xff: []string{"198.51.100.7"}, want: "198.51.100.7"},
		{name: "client's forged prefix is skipped", r: r, peer: "10.0.0.5:1234", xff: []string{"6.6.6.6, 198.51.100.7"}, want: "198.51.100.7"},
		{name: "several trusted hops", r: r, peer: "10.0.0.5:1234", xff: []string{"6.6.6.6, 198.51.100.7, 192.168.1.1, 10.9.9.9"}, want: "198.51.100.7"},
		{name: "hops split over header lines", r: r, peer: "10.0.0.5:1234", xff: []string{"6.6.6.6, 198.51.100.7", "10.9.9.9"}, want: "198.51.100.7"},
		{name: "all hops trusted: leftmost", r: r, peer: "10.0.0.5:1234", xff: []string{"10.1.1.1, 10.2.2.2"}, want: "10.1.1.1"},
		{name: "hop with a port", r: r, peer: "10.0.0.5:1234", xff: []string{"198.51.100.7:4711"}, want: "198.51.100.7:4711"},
		{name: "garbage right of the client stops at the trusted hop", r: r, peer: "10.0.0.5:1234", xff: []string{"198.51.100.7, not-an-ip"}, want: "10.0.0.5:1234"},
		{name: "garbage behind a trusted hop", r: r, peer: "10.0.0.5:1234", xff: []string{"<script>, 10.2.2.2"}, want: "10.2.2.2"},
		{name: "garbage left of the client is never reached", r: r, peer: "10.0.0.5:1234", xff: []string{"x'; DROP, 198.51.100.7"}, want: "198.51.100.7"},
		{name: "empty header", r: r, peer: "10.0.0.5:1234", xff: []string{""}, want: "10.0.0.5:1234"},
		{name: "IPv6 client via IPv6 proxy", r: r, peer: "[fd00::1]:443", xff: []string{"2001:db8::17"}, want: "2001:db8::17"},
		{name: "IPv6 client bracketed with port", r: r, peer: "[fd00::1]:443", xff: []string{"[2001:db8::17]:4711"}, want: "[2001:db8::17]:4711"},
		{name: "IPv6 untrusted peer", r: r, peer: "[2001:db8::99]:443", xff: []string{"198.51.100.7"}, want: "[2001:db8::99]:443"},
		{name: "IPv4-mapped peer is the IPv4 range", r: r, peer: "[::ffff:10.0.0.5]:1234", xff: []string{"198.51.100.7"}, want: "198.51.100.7"},
		{name: "IPv4-mapped hop normalised", r: r, peer: "10.0.0.5:1234", xff: []string{"::ffff:198.51.100.7"}, want: "198.51.100.7"},
		{name: "zone dropped", r: r, peer: "10.0.0.5:1234", xff: []string{"fe80::1%eth0"}, want: "fe80::1"},
		{name: "Forwarded", r: r, peer: "10.0.0.5:1234", fwd: []string{`for=6.6.6.6, for=198.51.100.7;proto=https;by=10.0.0.5`}, want: "198.51.100.7"},
		{name: "Forwarded IPv6 quoted", r: r, peer: "10.0.0.5:1234", fwd: []string{`for="[2001:db8:cafe::17]:4711"`}, want: "[2001:db8:cafe::17]:4711"},
		{name: "Forwarded obfuscated", r: r, peer: "10.0.0.5:1234", fwd: []string{`for=unknown`}, want: "10.0.0.5:1234"},
		{name: "Forwarded element without for", r: r, peer: "10.0.0.5:1234", fwd: []string{`for=198.51.100.7, proto=https`}, want: "10.0.0.5:1234"},
		{name: "XFF wins over Forwarded", r: r, peer: "10.0.0.5:1234", xff: []string{"198.51.100.7"}, fwd: []string{"for=198.51.100.8"}, want: "198.51.100.7"},
		{name: "unparsable peer", r: r, peer: "pipe", xff: []string{"198.51.100.7"}, want: "pipe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.Resolve(tc.peer, tc.xff, tc.fwd); got != tc.want {
				t.Fatalf("Resolve(%q, %q, %q) = %q, want %q", tc.peer, tc.xff, tc.fwd, got, tc.want)
			}
		})
	}
}

func TestFromRequest(t *testing.T) {
	r := mustResolver(t, "127.0.0.1")
	req := httptest.NewRequest("GET", "/", nil)
	req.RemoteAddr = "127.0.0.1:9999"
	req.Header.Add("X-Forwarded-For", "6.6.6.6")
	req.Header.Add("X-Forwarded-For", "198.51.100.7")
	if got := r.FromRequest(req); got != "198.51.100.7" {
		t.Fatalf("trusted: %q", got)
	}
	req.RemoteAddr = "192.0.2.1:9999"
	if got := r.FromRequest(req); got != "192.0.2.1:9999" {
		t.Fatalf("untrusted: %q", got)
	}
	if Host("192.0.2.1:9999") != "192.0.2.1" || Host("[::1]:1") != "::1" || Host("198.51.100.7") != "198.51.100.7" {
		t.Fatal("Host")
	}
}

// The client-address metadata is believed only over the gateway's unix
// socket; from any other peer it is stripped and the peer counts.
func TestFromContextAndStrip(t *testing.T) {
	r := mustResolver(t, "10.0.0.0/8")
	tcp := &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP("203.0.113.9"), Port: 4000}}
	trustedTCP := &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP("10.0.0.5"), Port: 4000}}
	unix := &peer.Peer{Addr: &net.UnixAddr{Name: "/tmp/gw.sock", Net: "unix"}}
	md := metadata.Pairs(Header, "6.6.6.6:1", "x-forwarded-for", "6.6.6.6")
	call := func(p *peer.Peer, md metadata.MD) string {
		ctx := metadata.NewIncomingContext(peer.NewContext(context.Background(), p), md)
		var got string
		_, _ = StripUnary(ctx, nil, &grpc.UnaryServerInfo{}, func(ctx context.Context, _ any) (any, error) {
			if v := metadata.ValueFromIncomingContext(ctx, Header); len(v) > 0 && p.Addr.Network() != "unix" {
				t.Errorf("%s: header not stripped: %v", p.Addr, v)
			}
			got = r.FromContext(ctx)
			return nil, nil
		})
		return got
	}
	if got := call(tcp, md); got != "203.0.113.9:4000" {
		t.Errorf("untrusted TCP peer: %q", got)
	}
	if got := call(trustedTCP, md); got != "6.6.6.6" {
		t.Errorf("trusted TCP proxy: %q", got)
	}
	if got := call(unix, metadata.Pairs(Header, "6.6.6.6:1", Header, "198.51.100.7")); got != "198.51.100.7" {
		t.Errorf("gateway socket: %q (want the gateway's, last, value)", got)
	}
	if got := call(unix, metadata.MD{}); got != "unix" {
		t.Errorf("gateway socket without header: %q", got)
	}
}
