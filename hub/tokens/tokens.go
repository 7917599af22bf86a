// Package tokens makes and hashes the hub's opaque bearer secrets (API tokens
// and enroll secrets). They carry 256 random bits, so a plain SHA-256 is a
// sound at-rest hash: nothing to brute-force, and lookups stay indexable.
package tokens

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// Prefixes make leaked secrets recognisable by secret scanners.
const (
	APITokenPrefix     = "pst_"
	EnrollSecretPrefix = "pes_"
)

// New returns a fresh secret with the given prefix and its hash.
func New(prefix string) (plain string, hash []byte) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	plain = prefix + base64.RawURLEncoding.EncodeToString(b)
	return plain, Hash(plain)
}

// Hash is the stored form of a secret. Surrounding white space (a trailing
// newline from a secret file) is not part of the secret.
func Hash(plain string) []byte {
	h := sha256.Sum256([]byte(strings.TrimSpace(plain)))
	return h[:]
}
