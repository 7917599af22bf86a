package secrets

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpenRoundTrip(t *testing.T) {
	k, err := NewKeyring(newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("s3cr3t~value")
	a, err := k.Seal(secret, []byte("integration/1/client_secret"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.Seal(secret, []byte("integration/1/client_secret"))
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatal("two seals of one value are identical: nonce is not random")
	}
	if strings.Contains(a, "s3cr3t") || !strings.HasPrefix(a, "pv1:"+k.PrimaryID()+":") || !IsSealed(a) {
		t.Fatalf("unexpected sealed form %q", a)
	}
	got, err := k.Open(a, []byte("integration/1/client_secret"))
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
}

func TestTamperAndContextDetected(t *testing.T) {
	k, err := NewKeyring(newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	s, err := k.Seal([]byte("value"), []byte("integration/1/client_secret"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Open(s, []byte("integration/2/client_secret")); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("value moved to another row opened: %v", err)
	}
	id, data, err := split(s)
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		bad := append([]byte(nil), data...)
		bad[i] ^= 0x01
		tampered := "pv1:" + id + ":" + base64.RawURLEncoding.EncodeToString(bad)
		if _, err := k.Open(tampered, []byte("integration/1/client_secret")); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("flipping byte %d was not detected: %v", i, err)
		}
	}
	for _, bad := range []string{"", "plain", "pv1:zz:abc", "pv1:" + id + ":!!", "pv1:" + id + ":" + base64.RawURLEncoding.EncodeToString([]byte("short"))} {
		if _, err := k.Open(bad, nil); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("Open(%q) = %v, want ErrDecrypt", bad, err)
		}
	}
}

func TestRotation(t *testing.T) {
	oldKey, newK := newKey(t), newKey(t)
	old, err := NewKeyring(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	s, err := old.Seal([]byte("v"), nil)
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := NewKeyring(newK, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	if !rotated.NeedsReseal(s) {
		t.Fatal("value sealed by the old key should need re-sealing")
	}
	if got, err := rotated.Open(s, nil); err != nil || string(got) != "v" {
		t.Fatalf("old value after rotation: %q, %v", got, err)
	}
	s2, err := rotated.Seal([]byte("v"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rotated.NeedsReseal(s2) {
		t.Fatal("fresh value should not need re-sealing")
	}
	if _, err := old.Open(s2, nil); !errors.Is(err, ErrDecrypt) || !strings.Contains(err.Error(), "not configured") {
		t.Fatalf("old keyring opening new value: %v", err)
	}
	if _, err := NewKeyring(oldKey, oldKey); err == nil {
		t.Fatal("duplicate key accepted")
	}
}

func TestLoad(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	t.Setenv(EnvKey, base64.StdEncoding.EncodeToString(k1)+","+base64.StdEncoding.EncodeToString(k2))
	kr, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if kr.PrimaryID() != KeyID(k1) || len(kr.ids) != 2 {
		t.Fatalf("env keyring: primary %s, %d keys", kr.PrimaryID(), len(kr.ids))
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	if err := GenerateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	if err := GenerateKeyFile(path); err == nil {
		t.Fatal("GenerateKeyFile overwrote an existing key")
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", st.Mode().Perm(), err)
	}
	fromFile, err := Load(path) // the file wins over the environment
	if err != nil {
		t.Fatal(err)
	}
	if fromFile.PrimaryID() == KeyID(k1) {
		t.Fatal("file key ignored in favour of the environment")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key file accepted: %v", err)
	}

	t.Setenv(EnvKey, "")
	if _, err := Load(""); err == nil || !strings.Contains(err.Error(), EnvKey) {
		t.Fatalf("missing key error should name %s: %v", EnvKey, err)
	}
	t.Setenv(EnvKey, base64.StdEncoding.EncodeToString([]byte("short")))
	if _, err := Load(""); err == nil || !strings.Contains(err.Error(), "want 32") {
		t.Fatalf("short key accepted: %v", err)
	}
}
