package storetest

import (
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

var secretTests = []suiteTest{
	{"EnrollSecrets/Lifecycle", testEnrollSecrets},
	{"EnrollSecrets/RejectsBadInput", testEnrollSecretsInvalid},
	{"Tokens/Lifecycle", testTokens},
	{"Tokens/RejectsBadInput", testTokensInvalid},
}

func testEnrollSecrets(t *testing.T, s store.Store) {
	exp := at(24 * time.Hour)
	a := store.EnrollSecret{ID: "s1", Team: "eng", Description: "laptops", Hash: hash("secret-1"), CreatedAt: t0, ExpiresAt: &exp}
	noErr(t, s.CreateEnrollSecret(ctx(t), a))
	noErr(t, s.CreateEnrollSecret(ctx(t), store.EnrollSecret{ID: "s2", Hash: hash("secret-2"), CreatedAt: at(time.Minute)}))

	got := must(s.FindEnrollSecret(ctx(t), hash("secret-1")))(t)
	want := a
	want.CreatedAt = micro(t0)
	e := micro(exp)
	want.ExpiresAt = &e
	eq(t, "found by hash", got, want)
	utcTime(t, "ExpiresAt", *got.ExpiresAt)
	if !got.Usable(at(time.Hour)) || got.Usable(at(25*time.Hour)) {
		t.Fatal("expiry not honoured by the stored secret")
	}
	eq(t, "default team", must(s.FindEnrollSecret(ctx(t), hash("secret-2")))(t).Team, store.DefaultTeam)
	_, err := s.FindEnrollSecret(ctx(t), hash("wrong"))
	wantErr(t, err, store.ErrNotFound)

	list := must(s.ListEnrollSecrets(ctx(t)))(t)
	eq(t, "list oldest first", []string{list[0].ID, list[1].ID}, []string{"s1", "s2"})

	noErr(t, s.MarkEnrollSecretUsed(ctx(t), "s1", at(2*time.Hour)))
	noErr(t, s.MarkEnrollSecretUsed(ctx(t), "s1", at(time.Hour)))
	eq(t, "last used never backwards", *must(s.FindEnrollSecret(ctx(t), hash("secret-1")))(t).LastUsedAt, micro(at(2*time.Hour)))
	wantErr(t, s.MarkEnrollSecretUsed(ctx(t), "missing", t0), store.ErrNotFound)

	r := must(s.RevokeEnrollSecret(ctx(t), "s1", at(3*time.Hour)))(t)
	eq(t, "revoked at", *r.RevokedAt, micro(at(3*time.Hour)))
	r = must(s.RevokeEnrollSecret(ctx(t), "s1", at(4*time.Hour)))(t)
	eq(t, "second revoke keeps the first time", *r.RevokedAt, micro(at(3*time.Hour)))
	found := must(s.FindEnrollSecret(ctx(t), hash("secret-1")))(t)
	if found.Usable(at(time.Hour)) {
		t.Fatal("revoked secret still usable")
	}
	_, err = s.RevokeEnrollSecret(ctx(t), "missing", t0)
	wantErr(t, err, store.ErrNotFound)
}

func testEnrollSecretsInvalid(t *testing.T, s store.Store) {
	noErr(t, s.CreateEnrollSecret(ctx(t), store.EnrollSecret{ID: "s1", Hash: hash("x")}))
	wantErr(t, s.CreateEnrollSecret(ctx(t), store.EnrollSecret{ID: "s2", Hash: hash("x")}), store.ErrConflict)
	wantErr(t, s.CreateEnrollSecret(ctx(t), store.EnrollSecret{ID: "s1", Hash: hash("y")}), store.ErrConflict)
	wantErr(t, s.CreateEnrollSecret(ctx(t), store.EnrollSecret{ID: "s3", Hash: []byte("plaintext")}), store.ErrInvalid)
	wantErr(t, s.CreateEnrollSecret(ctx(t), store.EnrollSecret{Hash: hash("z")}), store.ErrInvalid)
	eq(t, "only the first stored", len(must(s.ListEnrollSecrets(ctx(t)))(t)), 1)
	if c := must(s.FindEnrollSecret(ctx(t), hash("x")))(t).CreatedAt; c.IsZero() {
		t.Fatal("created-at not defaulted")
	}
}

func testTokens(t *testing.T, s store.Store) {
	exp := at(time.Hour)
	a := store.APIToken{ID: "t1", Name: "ci", Role: store.RoleMaintainer, Hash: hash("tok-1"), CreatedAt: t0, ExpiresAt: &exp}
	noErr(t, s.CreateAPIToken(ctx(t), a))
	noErr(t, s.CreateAPIToken(ctx(t), store.APIToken{ID: "t2", Name: "root", Role: store.RoleAdmin, Hash: hash("tok-2"), CreatedAt: at(time.Second)}))

	got := must(s.FindAPIToken(ctx(t), hash("tok-1")))(t)
	want := a
	want.CreatedAt = micro(t0)
	e := micro(exp)
	want.ExpiresAt = &e
	eq(t, "found by hash", got, want)
	if !got.Usable(t0) || got.Usable(at(2*time.Hour)) {
		t.Fatal("expiry not honoured by the stored token")
	}
	_, err := s.FindAPIToken(ctx(t), hash("tok-3"))
	wantErr(t, err, store.ErrNotFound)
	list := must(s.ListAPITokens(ctx(t)))(t)
	eq(t, "list", []string{list[0].ID, list[1].ID}, []string{"t1", "t2"})

	noErr(t, s.TouchAPIToken(ctx(t), "t1", at(2*time.Minute)))
	noErr(t, s.TouchAPIToken(ctx(t), "t1", at(time.Minute)))
	eq(t, "last used never backwards", *must(s.FindAPIToken(ctx(t), hash("tok-1")))(t).LastUsedAt, micro(at(2*time.Minute)))
	wantErr(t, s.TouchAPIToken(ctx(t), "missing", t0), store.ErrNotFound)

	r := must(s.RevokeAPIToken(ctx(t), "t2", at(time.Minute)))(t)
	eq(t, "revoked", *r.RevokedAt, micro(at(time.Minute)))
	r = must(s.RevokeAPIToken(ctx(t), "t2", at(time.Hour)))(t)
	eq(t, "second revoke keeps the first time", *r.RevokedAt, micro(at(time.Minute)))
	if must(s.FindAPIToken(ctx(t), hash("tok-2")))(t).Usable(at(2 * time.Minute)) {
		t.Fatal("revoked token still usable")
	}
	_, err = s.RevokeAPIToken(ctx(t), "missing", t0)
	wantErr(t, err, store.ErrNotFound)
}

func testTokensInvalid(t *testing.T, s store.Store) {
	noErr(t, s.CreateAPIToken(ctx(t), store.APIToken{ID: "t1", Role: store.RoleObserver, Hash: hash("x")}))
	wantErr(t, s.CreateAPIToken(ctx(t), store.APIToken{ID: "t2", Role: store.RoleObserver, Hash: hash("x")}), store.ErrConflict)
	wantErr(t, s.CreateAPIToken(ctx(t), store.APIToken{ID: "t3", Role: "root", Hash: hash("y")}), store.ErrInvalid)
	wantErr(t, s.CreateAPIToken(ctx(t), store.APIToken{ID: "t4", Role: store.RoleAdmin, Hash: hash("y")[:16]}), store.ErrInvalid)
	eq(t, "only the first stored", len(must(s.ListAPITokens(ctx(t)))(t)), 1)
}
