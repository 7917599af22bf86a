package graph

import (
	"context"
	"io"
	"net/http"
	gosync "sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	khttp "github.com/microsoft/kiota-http-go"
)

// renewableCredential is an azidentity credential that can be replaced by a
// fresh one. azidentity caches access tokens inside the credential and has
// no way to drop one, so after Graph rejects a token (401) the only way to
// a new token before the old one expires is a new credential.
type renewableCredential struct {
	build func() (azcore.TokenCredential, error)

	mu    gosync.Mutex
	inner azcore.TokenCredential
}

func newRenewableCredential(build func() (azcore.TokenCredential, error)) (*renewableCredential, error) {
	c, err := build()
	if err != nil {
		return nil, err
	}
	return &renewableCredential{build: build, inner: c}, nil
}

func (r *renewableCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	r.mu.Lock()
	c := r.inner
	r.mu.Unlock()
	return c.GetToken(ctx, opts)
}

// renew replaces the credential, dropping its cached tokens. A credential
// that was renewed by another request since `seen` was read is kept.
func (r *renewableCredential) renew(seen azcore.TokenCredential) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inner != seen {
		return nil
	}
	c, err := r.build()
	if err != nil {
		return err
	}
	r.inner = c
	return nil
}

func (r *renewableCredential) current() azcore.TokenCredential {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inner
}

// tokenRetry answers a Graph 401 (InvalidAuthenticationToken: revoked,
// signing key rolled, clock skew) by dropping the cached token and sending
// the request once more with a new one. A second 401 is returned as is and
// counts as a failure.
type tokenRetry struct {
	cred  *renewableCredential
	scope string
}

func (m *tokenRetry) Intercept(p khttp.Pipeline, idx int, req *http.Request) (*http.Response, error) {
	seen := m.cred.current()
	resp, err := p.Next(req, idx)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return resp, nil // cannot re-send the body
	}
	if err := m.cred.renew(seen); err != nil {
		return resp, nil
	}
	// EnableCAE as kiota's token provider asks: azidentity caches CAE and
	// non-CAE tokens apart, and the next request must find this token.
	tok, err := m.cred.GetToken(req.Context(), policy.TokenRequestOptions{Scopes: []string{m.scope}, EnableCAE: true})
	if err != nil {
		// The credential itself now fails (expired secret...): report that,
		// not the 401, so health says what to fix.
		_ = drain(resp)
		return nil, err
	}
	_ = drain(resp)
	if req.GetBody != nil {
		b, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		req.Body = b
	}
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	return p.Next(req, idx)
}

func drain(resp *http.Response) error {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.Body.Close()
}
