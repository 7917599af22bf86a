// Package secrets encrypts integration secrets (client secrets, private keys)
// at rest with AES-256-GCM.
//
// A sealed value is the text "pv1:<key id>:<base64url(nonce || ciphertext)>".
// The key id is derived from the key itself (first 8 hex digits of its
// SHA-256), so a keyring can hold several keys: the first one seals, all of
// them open. Rotating means putting the new key first, re-sealing (see
// NeedsReseal) and later dropping the old key.
//
// Callers pass associated data naming where the value lives (for example
// "integration/42/client_secret"), so a ciphertext copied into another row or
// field fails to open instead of being silently accepted.
package secrets

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// EnvKey is the environment variable holding base64 keys (comma separated,
// first one primary).
const EnvKey = "POSTURE_SECRETS_KEY"

const (
	prefix  = "pv1"
	keySize = 32
)

// ErrDecrypt means a sealed value was tampered with, sealed with other
// associated data, or sealed by a key that is not in the keyring.
var ErrDecrypt = errors.New("secrets: cannot decrypt value")

// Keyring holds AES-256 keys; the first seals, all open.
type Keyring struct {
	ids   []string
	aeads map[string]cipher.AEAD
}

// NewKeyring builds a keyring from raw 32-byte keys, primary first.
func NewKeyring(keys ...[]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("secrets: no key given")
	}
	k := &Keyring{aeads: map[string]cipher.AEAD{}}
	for i, key := range keys {
		if len(key) != keySize {
			return nil, fmt.Errorf("secrets: key %d is %d bytes, want %d (AES-256)", i+1, len(key), keySize)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("secrets: key %d: %w", i+1, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("secrets: key %d: %w", i+1, err)
		}
		id := KeyID(key)
		if _, dup := k.aeads[id]; dup {
			return nil, fmt.Errorf("secrets: key %d repeats key %s", i+1, id)
		}
		k.ids = append(k.ids, id)
		k.aeads[id] = aead
	}
	return k, nil
}

// KeyID is the public identifier of a key.
func KeyID(key []byte) string {
	s := sha256.Sum256(append([]byte("posture-secrets-key-id:"), key...))
	return hex.EncodeToString(s[:4])
}

// ParseKeys parses base64 keys separated by commas, whitespace or newlines;
// lines starting with '#' are comments.
func ParseKeys(text string) (*Keyring, error) {
	var keys [][]byte
	sc := bufio.NewScanner(strings.NewReader(text))
	n := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for _, f := range strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			n++
			key, err := decodeKey(f)
			if err != nil {
				return nil, fmt.Errorf("secrets: key %d: %w", n, err)
			}
			keys = append(keys, key)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	return NewKeyring(keys...)
}

func decodeKey(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != keySize {
				return nil, fmt.Errorf("decodes to %d bytes, want %d (generate one with: head -c 32 /dev/urandom | base64)", len(b), keySize)
			}
			return b, nil
		}
	}
	return nil, errors.New("not valid base64")
}

// Load reads the keyring from file (when non-empty) or else from the
// POSTURE_SECRETS_KEY environment variable. A key file readable by group or
// others is refused.
func Load(file string) (*Keyring, error) {
	if file != "" {
		return LoadFile(file)
	}
	if v := os.Getenv(EnvKey); v != "" {
		k, err := ParseKeys(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvKey, err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("secrets: no encryption key: set %s (base64 of 32 random bytes) or pass --secrets-key-file", EnvKey)
}

// LoadFile reads a key file (mode 0600 or stricter).
func LoadFile(path string) (*Keyring, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("secrets: key file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("secrets: key file %s has mode %04o; it must not be readable by group or others (chmod 600)", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secrets: key file: %w", err)
	}
	k, err := ParseKeys(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// GenerateKeyFile writes a new random key to path with mode 0600. It refuses
// to overwrite an existing file, which would orphan everything sealed with it.
func GenerateKeyFile(path string) error {
	key := make([]byte, keySize)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("secrets: create key file: %w", err)
	}
	line := "# posture secrets key " + KeyID(key) + "; keep it safe, losing it loses every stored secret\n" +
		base64.StdEncoding.EncodeToString(key) + "\n"
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return fmt.Errorf("secrets: write key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("secrets: write key file: %w", err)
	}
	return nil
}

// PrimaryID is the id of the key that seals.
func (k *Keyring) PrimaryID() string { return k.ids[0] }

// Seal encrypts plaintext bound to associatedData.
func (k *Keyring) Seal(plaintext, associatedData []byte) (string, error) {
	id := k.ids[0]
	aead := k.aeads[id]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("secrets: nonce: %w", err)
	}
	out := aead.Seal(nonce, nonce, plaintext, aad(id, associatedData))
	return prefix + ":" + id + ":" + base64.RawURLEncoding.EncodeToString(out), nil
}

// Open decrypts a value produced by Seal with the same associated data.
func (k *Keyring) Open(sealed string, associatedData []byte) ([]byte, error) {
	id, data, err := split(sealed)
	if err != nil {
		return nil, err
	}
	aead, ok := k.aeads[id]
	if !ok {
		return nil, fmt.Errorf("%w: sealed with key %s, which is not configured", ErrDecrypt, id)
	}
	if len(data) < aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("%w: value too short", ErrDecrypt)
	}
	pt, err := aead.Open(nil, data[:aead.NonceSize()], data[aead.NonceSize():], aad(id, associatedData))
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed (tampered, or sealed for another field)", ErrDecrypt)
	}
	return pt, nil
}

// NeedsReseal reports whether a sealed value was made by a key other than
// the primary one (so it should be re-sealed after a rotation).
func (k *Keyring) NeedsReseal(sealed string) bool {
	id, _, err := split(sealed)
	return err == nil && id != k.ids[0]
}

// IsSealed reports whether s looks like a sealed value.
func IsSealed(s string) bool {
	_, _, err := split(s)
	return err == nil
}

func split(sealed string) (string, []byte, error) {
	parts := strings.SplitN(sealed, ":", 3)
	if len(parts) != 3 || parts[0] != prefix || len(parts[1]) != 8 {
		return "", nil, fmt.Errorf("%w: not a sealed value (want %s:<key id>:<data>)", ErrDecrypt, prefix)
	}
	data, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return "", nil, fmt.Errorf("%w: bad encoding", ErrDecrypt)
	}
	return parts[1], data, nil
}

// aad binds the format version and key id as well as the caller's context.
func aad(id string, associatedData []byte) []byte {
	var b bytes.Buffer
	b.WriteString(prefix + ":" + id + ":")
	b.Write(associatedData)
	return b.Bytes()
}
