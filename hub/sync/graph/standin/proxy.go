package standin

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
)

// Proxy is an egress proxy or private endpoint in front of the Graph
// stand-in: Graph answers under another host, port and path
// (https://127.0.0.1:P/<prefix>/v1.0), while tokens must still name the
// Graph resource. It forwards requests unchanged, Authorization included.
type Proxy struct {
	srv    *httptest.Server
	prefix string

	mu    sync.Mutex
	count int
}

// NewProxy starts a TLS proxy (certificate from ca) that serves target
// under /<prefix>.
func NewProxy(ca *CA, target *Graph, prefix string, log *slog.Logger) (*Proxy, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	prefix = "/" + strings.Trim(prefix, "/")
	up, err := url.Parse(target.Root())
	if err != nil {
		return nil, err
	}
	p := &Proxy{prefix: prefix}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(up)
			r.Out.URL.Path = strings.TrimPrefix(r.In.URL.Path, prefix)
			r.Out.URL.RawPath = ""
			r.Out.Host = up.Host
		},
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}},
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, prefix+"/") {
			http.Error(w, "not behind this proxy path", http.StatusNotFound)
			return
		}
		p.mu.Lock()
		p.count++
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	})
	srv, err := startTLS(ca, "", h, log)
	if err != nil {
		return nil, err
	}
	p.srv = srv
	return p, nil
}

// URL is the Graph base URL through the proxy (https://host:port/<prefix>/v1.0).
func (p *Proxy) URL() string { return p.srv.URL + p.prefix + "/v1.0" }

// Requests counts requests forwarded.
func (p *Proxy) Requests() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count
}

// Close stops the proxy.
func (p *Proxy) Close() { p.srv.Close() }
