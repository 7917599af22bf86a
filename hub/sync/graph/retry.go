package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	khttp "github.com/microsoft/kiota-http-go"
)

// retryMiddleware re-sends throttled and failed requests. It replaces kiota's
// RetryHandler, which truncates fractional Retry-After values ("0.5" becomes
// an immediate retry) and relies on the body being seekable. This one keeps
// the body bytes it was given — already gzip-compressed when the compression
// handler runs before it — and re-sends exactly those.
type retryMiddleware struct {
	maxRetries int
	maxWait    time.Duration
	sleep      func(context.Context, time.Duration) error
}

func (m *retryMiddleware) Intercept(p khttp.Pipeline, idx int, req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
	}
	var waited time.Duration
	for attempt := 0; ; attempt++ {
		if body != nil {
			req.Body = io.NopCloser(bytes.NewReader(body))
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
			req.ContentLength = int64(len(body))
		}
		resp, err := p.Next(req, idx)
		if err != nil || !retryableStatus(resp.StatusCode) || attempt >= m.maxRetries {
			return resp, err
		}
		d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		if !ok {
			d = backoff(attempt)
		}
		if waited+d > m.maxWait || !fitsDeadline(req.Context(), d) {
			return resp, nil // the caller turns it into "retry later"
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		_ = resp.Body.Close()
		if err := m.sleep(req.Context(), d); err != nil {
			return nil, err
		}
		waited += d
		req.Header.Set("Retry-Attempt", strconv.Itoa(attempt+1))
	}
}

// retryableStatus: throttling and server errors. Every write this sink makes
// sets an attribute to an absolute value, so re-sending is idempotent.
func retryableStatus(code int) bool {
	return code == http.StatusTooManyRequests || code == http.StatusInternalServerError ||
		code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout
}

// backoff when the server gave no Retry-After: 0.5s, 1s, 2s, ...
func backoff(attempt int) time.Duration {
	if attempt > 6 {
		attempt = 6
	}
	return 500 * time.Millisecond << attempt
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// jsonErrors rewrites non-JSON error responses (a proxy's HTML page, a
// plain-text 404 or 502) into Graph's JSON error shape. Without it kiota
// fails with "content type text/plain does not have a factory" and the
// status code and Retry-After are lost to the caller.
type jsonErrors struct{}

func (jsonErrors) Intercept(p khttp.Pipeline, idx int, req *http.Request) (*http.Response, error) {
	resp, err := p.Next(req, idx)
	if err != nil || resp.StatusCode < 400 || strings.Contains(strings.ToLower(resp.Header.Get("Content-Type")), "json") {
		return resp, err
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_ = resp.Body.Close()
	msg := strings.TrimSpace(string(raw))
	if msg == "" {
		msg = resp.Status
	}
	body, _ := json.Marshal(map[string]any{"error": map[string]string{"code": "http_" + strconv.Itoa(resp.StatusCode), "message": msg}})
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Type", "application/json")
	resp.Header.Del("Content-Encoding")
	return resp, nil
}
