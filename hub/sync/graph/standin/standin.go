package standin

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
)

// Pair is an Entra and a Graph stand-in sharing one CA.
type Pair struct {
	CA    *CA
	Entra *Entra
	Graph *Graph
}

// Options for Start.
type Options struct {
	Tenant    string // default "00000000-0000-0000-0000-0000000000aa"
	EntraAddr string // "" = 127.0.0.1:0
	GraphAddr string
	Log       *slog.Logger
}

// DefaultTenant is the tenant id used when Options.Tenant is empty.
const DefaultTenant = "00000000-0000-0000-0000-0000000000aa"

// Start starts both stand-ins. Close the pair when done.
func Start(opts Options) (*Pair, error) {
	if opts.Tenant == "" {
		opts.Tenant = DefaultTenant
	}
	ca, err := NewCA()
	if err != nil {
		return nil, err
	}
	e, err := NewEntra(ca, opts.Tenant, opts.EntraAddr, opts.Log)
	if err != nil {
		return nil, err
	}
	g, err := NewGraph(ca, e, opts.GraphAddr, opts.Log)
	if err != nil {
		e.Close()
		return nil, err
	}
	return &Pair{CA: ca, Entra: e, Graph: g}, nil
}

// Close stops both servers.
func (p *Pair) Close() {
	p.Graph.Close()
	p.Entra.Close()
}

func startTLS(ca *CA, addr string, h http.Handler, log *slog.Logger) (*httptest.Server, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("standin: address %q: %w", addr, err)
	}
	cert, err := ca.ServerCertificate(host)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("standin: listen %s: %w", addr, err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	// TLS handshake failures (a client without the CA) are expected in tests.
	srv.Config.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	return srv, nil
}
