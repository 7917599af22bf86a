package admin

import (
	"bytes"
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/tokens"
)

type memTokens struct {
	toks    []store.APIToken
	touched int
}

func (m *memTokens) CreateAPIToken(_ context.Context, t store.APIToken) error {
	m.toks = append(m.toks, t)
	return nil
}
func (m *memTokens) FindAPIToken(_ context.Context, h []byte) (store.APIToken, error) {
	for _, t := range m.toks {
		if bytes.Equal(t.Hash, h) {
			return t, nil
		}
	}
	return store.APIToken{}, store.ErrNotFound
}
func (m *memTokens) ListAPITokens(context.Context) ([]store.APIToken, error) { return m.toks, nil }
func (m *memTokens) RevokeAPIToken(context.Context, string, time.Time) (store.APIToken, error) {
	return store.APIToken{}, nil
}
func (m *memTokens) TouchAPIToken(_ context.Context, id string, at time.Time) error {
	m.touched++
	for i := range m.toks {
		if m.toks[i].ID == id {
			m.toks[i].LastUsedAt = &at
		}
	}
	return nil
}

func TestEveryAdminMethodHasAnAccessRule(t *testing.T) {
	for _, m := range posturev1.AdminService_ServiceDesc.Methods {
		if _, ok := required[m.MethodName]; !ok {
			t.Errorf("AdminService.%s has no entry in required: it would be refused to everyone", m.MethodName)
		}
	}
}

func TestAuthorizeRolesAndTokenStates(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	past := now.Add(-time.Hour)
	mt := &memTokens{}
	mk := func(name, role string, expires, revoked *time.Time) string {
		nt, err := NewAPIToken(name, role, now.Add(-48*time.Hour), nil)
		if err != nil {
			t.Fatal(err)
		}
		nt.Stored.ExpiresAt, nt.Stored.RevokedAt = expires, revoked
		mt.toks = append(mt.toks, nt.Stored)
		return nt.Plain
	}
	observer := mk("obs", store.RoleObserver, nil, nil)
	maintainer := mk("maint", store.RoleMaintainer, nil, nil)
	adminTok := mk("root", store.RoleAdmin, nil, nil)
	expired := mk("old", store.RoleAdmin, &past, nil)
	revoked := mk("gone", store.RoleAdmin, nil, &past)
	a := &Authenticator{Tokens: mt, Now: func() time.Time { return now }}

	call := func(token, method string) codes.Code {
		ctx := context.Background()
		if token != "" {
			ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+token))
		}
		_, err := a.Unary(ctx, nil, &grpc.UnaryServerInfo{FullMethod: servicePrefix + method},
			func(ctx context.Context, _ any) (any, error) {
				if _, ok := Caller(ctx); !ok {
					t.Fatal("handler ran without a caller in its context")
				}
				return nil, nil
			})
		return status.Code(err)
	}
	cases := []struct {
		name, token, method string
		want                codes.Code
	}{
		{"no token", "", "ListHosts", codes.Unauthenticated},
		{"garbage", "pst_nope", "ListHosts", codes.Unauthenticated},
		{"expired", expired, "ListHosts", codes.Unauthenticated},
		{"revoked", revoked, "ListHosts", codes.Unauthenticated},
		{"observer reads", observer, "ListHosts", codes.OK},
		{"observer cannot apply", observer, "ApplyPolicies", codes.PermissionDenied},
		{"observer cannot see secrets", observer, "ListEnrollSecrets", codes.PermissionDenied},
		{"maintainer applies", maintainer, "ApplyPolicies", codes.OK},
		{"maintainer revokes hosts", maintainer, "RevokeHost", codes.OK},
		{"maintainer cannot mint tokens", maintainer, "CreateApiToken", codes.PermissionDenied},
		{"admin mints tokens", adminTok, "CreateApiToken", codes.OK},
		{"unknown method fails closed", adminTok, "DropEverything", codes.PermissionDenied},
	}
	for _, c := range cases {
		if got := call(c.token, c.method); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
	// Agent calls are not the admin interceptor's business.
	_, err := a.Unary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/posture.v1.AgentService/Enroll"},
		func(context.Context, any) (any, error) { return nil, nil })
	if err != nil {
		t.Fatalf("agent call blocked by admin auth: %v", err)
	}
	// Last-used is coalesced: many calls within a minute touch once.
	before := mt.touched
	for range 5 {
		call(observer, "ListHosts")
	}
	if mt.touched-before > 1 {
		t.Fatalf("last-used written %d times in one minute", mt.touched-before)
	}
	if !bytes.Equal(tokens.Hash(observer), mt.toks[0].Hash) {
		t.Fatal("stored hash is not the hash of the token")
	}
}
