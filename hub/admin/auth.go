package admin

import (
	"context"
	"errors"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/tokens"
)

// servicePrefix marks the methods the interceptors guard; agent and health
// calls pass through untouched.
const servicePrefix = "/posture.v1.AdminService/"

// roleRank orders roles: a token may call what its role or a weaker one may.
var roleRank = map[string]int{store.RoleObserver: 1, store.RoleMaintainer: 2, store.RoleAdmin: 3}

// required is the weakest role allowed to call each method. A method missing
// here is refused (fail closed when the API grows).
var required = map[string]string{
	"ListHosts":          store.RoleObserver,
	"GetHost":            store.RoleObserver,
	"ListPolicies":       store.RoleObserver,
	"GetPolicy":          store.RoleObserver,
	"ListTeams":          store.RoleObserver,
	"RevokeHost":         store.RoleMaintainer,
	"DeleteHost":         store.RoleMaintainer,
	"RecheckHost":        store.RoleMaintainer,
	"ApplyPolicies":      store.RoleMaintainer,
	"DeletePolicy":       store.RoleMaintainer,
	"ListEnrollSecrets":  store.RoleMaintainer,
	"CreateEnrollSecret": store.RoleMaintainer,
	"RevokeEnrollSecret": store.RoleMaintainer,
	"ListUnmappedHosts":  store.RoleObserver,
	"ListExemptions":     store.RoleObserver,
	"ListIntegrations":   store.RoleObserver,
	"GetIntegration":     store.RoleObserver,
	"ListSyncItems":      store.RoleObserver,
	"PutTeam":            store.RoleMaintainer,
	// An exemption lets a failing host pass: admin only (and audited).
	"CreateExemption":      store.RoleAdmin,
	"DeleteExemption":      store.RoleMaintainer,
	"SetHostEntraDeviceId": store.RoleMaintainer,
	"RetrySyncItem":        store.RoleMaintainer,
	"ResumeIntegration":    store.RoleMaintainer,
	// Integrations hold Microsoft credentials: admin only.
	"CreateIntegration":      store.RoleAdmin,
	"UpdateIntegration":      store.RoleAdmin,
	"DeleteIntegration":      store.RoleAdmin,
	"TestIntegration":        store.RoleAdmin,
	"DeprovisionIntegration": store.RoleAdmin,
	"GetAdminConsentUrl":     store.RoleAdmin,
	"ListApiTokens":          store.RoleAdmin,
	"CreateApiToken":         store.RoleAdmin,
	"RevokeApiToken":         store.RoleAdmin,
	// Changes that relax a team (conditional access off, a laxer severity
	// threshold, errors no longer failures, a longer stale_after, ...) or
	// a policy (out of conditional access, lower severity, longer grace)
	// also need admin: the handlers check that (teams.go, needAdmin).
	"UpdateTeam": store.RoleMaintainer,
	// The audit log names tokens and client addresses.
	"ListAuditEvents": store.RoleAdmin,
	// Like the device id override: who the device belongs to.
	"SetHostUserPrincipalName": store.RoleMaintainer,
}

type callerKey struct{}

// Caller returns the token that authenticated the call.
func Caller(ctx context.Context) (store.APIToken, bool) {
	t, ok := ctx.Value(callerKey{}).(store.APIToken)
	return t, ok
}

// WithCaller returns ctx as the Authenticator leaves it for token t: for
// servers that authenticate by other means (and tests).
func WithCaller(ctx context.Context, t store.APIToken) context.Context {
	return context.WithValue(ctx, callerKey{}, t)
}

// Authenticator checks bearer tokens on AdminService calls.
type Authenticator struct {
	Tokens store.Tokens
	Now    func() time.Time
}

// touchEvery coalesces last-used writes: one per token per minute at most.
const touchEvery = time.Minute

func (a *Authenticator) authorize(ctx context.Context, fullMethod string) (context.Context, error) {
	method, ok := strings.CutPrefix(fullMethod, servicePrefix)
	if !ok {
		return ctx, nil
	}
	need, ok := required[method]
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "method %s has no access rule", method)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	var raw string
	for _, v := range md.Get("authorization") {
		if t, ok := cutBearer(v); ok {
			raw = t
			break
		}
	}
	if raw == "" {
		return nil, status.Error(codes.Unauthenticated, `missing "authorization: Bearer <token>"`)
	}
	now := a.Now()
	tok, err := a.Tokens.FindAPIToken(ctx, tokens.Hash(raw))
	if errors.Is(err, store.ErrNotFound) || (err == nil && !tok.Usable(now)) {
		return nil, status.Error(codes.Unauthenticated, "API token is not valid (unknown, revoked or expired)")
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "look up token: %v", err)
	}
	noteCaller(ctx, tok)
	if roleRank[tok.Role] < roleRank[need] {
		return nil, status.Errorf(codes.PermissionDenied, "%s needs role %s; token %q has %s", method, need, tok.Name, tok.Role)
	}
	if tok.LastUsedAt == nil || now.Sub(*tok.LastUsedAt) >= touchEvery {
		// Best effort: a failed touch must not fail the call.
		_ = a.Tokens.TouchAPIToken(ctx, tok.ID, now)
	}
	return context.WithValue(ctx, callerKey{}, tok), nil
}

func cutBearer(v string) (string, bool) {
	if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		t := strings.TrimSpace(v[7:])
		return t, t != ""
	}
	return "", false
}

// Unary is the unary server interceptor.
func (a *Authenticator) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := a.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// Stream is the stream server interceptor.
func (a *Authenticator) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := a.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }
