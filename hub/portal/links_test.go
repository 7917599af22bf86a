package portal

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDeviceLinks(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s, err := NewSigner([]byte(strings.Repeat("k", 32)), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	tok, exp := s.DeviceLink("dev-1", time.Hour)
	if !exp.Equal(now.Add(time.Hour)) {
		t.Fatalf("expiry %v", exp)
	}
	if err := s.CheckDeviceLink(tok, "dev-1"); err != nil {
		t.Fatalf("fresh link: %v", err)
	}
	// A link for one device does not open another.
	if err := s.CheckDeviceLink(tok, "dev-2"); !errors.Is(err, ErrTampered) {
		t.Fatalf("other device: %v", err)
	}
	// Flipping any byte of the token breaks it.
	for i := range tok {
		b := []byte(tok)
		b[i] ^= 1
		if err := s.CheckDeviceLink(string(b), "dev-1"); err == nil {
			t.Fatalf("tampered at %d accepted", i)
		}
	}
	// A session token is not a link, even for the same value.
	sess, _ := s.Sign(kindSession, "dev-1", time.Hour)
	if err := s.CheckDeviceLink(sess, "dev-1"); !errors.Is(err, ErrTampered) {
		t.Fatalf("session as link: %v", err)
	}
	// Another key does not verify it.
	other, _ := NewSigner([]byte(strings.Repeat("x", 32)), func() time.Time { return now })
	if err := other.CheckDeviceLink(tok, "dev-1"); !errors.Is(err, ErrTampered) {
		t.Fatalf("other key: %v", err)
	}
	now = now.Add(time.Hour)
	if err := s.CheckDeviceLink(tok, "dev-1"); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired link: %v", err)
	}
	for _, bad := range []string{"", ".", "abc", "a.b.c", strings.Repeat("a", 5000)} {
		if err := s.CheckDeviceLink(bad, "dev-1"); !errors.Is(err, ErrTampered) {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}

func TestLoadKeyCreatesOnce(t *testing.T) {
	t.Setenv(KeyEnv, "")
	dir := t.TempDir()
	a, err := LoadKey("", dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadKey("", dir)
	if err != nil || string(a) != string(b) || len(a) != 32 {
		t.Fatalf("second load: %v (same=%v)", err, string(a) == string(b))
	}
}
