package tokens

import (
	"bytes"
	"strings"
	"testing"
)

func TestNewIsRandomAndHashMatches(t *testing.T) {
	a, ha := New(APITokenPrefix)
	b, hb := New(APITokenPrefix)
	if a == b || bytes.Equal(ha, hb) {
		t.Fatal("two tokens are equal")
	}
	if !strings.HasPrefix(a, APITokenPrefix) || len(a) < 40 {
		t.Fatalf("token %q lacks prefix or entropy", a)
	}
	if !bytes.Equal(Hash(a+"\n"), ha) {
		t.Fatal("a trailing newline from a secret file changes the hash")
	}
	if bytes.Equal(Hash(a[:len(a)-1]), ha) {
		t.Fatal("a truncated token hashes like the real one")
	}
}
