package portal

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// KeyEnv holds the base64 portal signing key (replicas must share it).
const KeyEnv = "POSTURE_PORTAL_KEY"

// KeyFile is the default key file in the data dir.
const KeyFile = "portal.key"

// Errors a signed value can fail with. They are told apart on the page
// (an expired link asks for a fresh one; a broken one says so).
var (
	ErrExpired  = errors.New("portal: link expired")
	ErrTampered = errors.New("portal: link is not valid")
)

// Signer signs and checks the portal's tokens: per-device links, sessions
// and the sign-in state. Each kind signs under its own label, so a token of
// one kind never passes as another.
type Signer struct {
	key []byte
	now func() time.Time
}

// NewSigner returns a Signer for a key of at least 32 bytes.
func NewSigner(key []byte, now func() time.Time) (*Signer, error) {
	if len(key) < 32 {
		return nil, fmt.Errorf("portal: signing key is %d bytes, want at least 32", len(key))
	}
	if now == nil {
		now = time.Now
	}
	return &Signer{key: append([]byte(nil), key...), now: now}, nil
}

// LoadKey reads the signing key: the file, else $POSTURE_PORTAL_KEY, else
// portal.key in dataDir, created (0600) on first start.
func LoadKey(file, dataDir string) ([]byte, error) {
	if file == "" {
		if v := strings.TrimSpace(os.Getenv(KeyEnv)); v != "" {
			return decodeKey(v)
		}
		file = filepath.Join(dataDir, KeyFile)
		if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
			k := make([]byte, 32)
			if _, err := rand.Read(k); err != nil {
				return nil, fmt.Errorf("portal key: %w", err)
			}
			if err := os.MkdirAll(dataDir, 0o700); err != nil {
				return nil, fmt.Errorf("portal key: %w", err)
			}
			// O_EXCL: two processes starting at once agree on one key.
			f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err == nil {
				_, err = f.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					return nil, fmt.Errorf("portal key: %w", err)
				}
			} else if !errors.Is(err, os.ErrExist) {
				return nil, fmt.Errorf("portal key: %w", err)
			}
		}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("portal key: %w", err)
	}
	return decodeKey(strings.TrimSpace(string(b)))
}

func decodeKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("portal key: not base64: %w", err)
	}
	if len(k) < 32 {
		return nil, fmt.Errorf("portal key: %d bytes, want at least 32", len(k))
	}
	return k, nil
}

// Sign returns "<base64url(value|expiry)>.<base64url(mac)>" for a kind.
func (s *Signer) Sign(kind, value string, ttl time.Duration) (string, time.Time) {
	exp := s.now().Add(ttl).Truncate(time.Second)
	payload := value + "|" + strconv.FormatInt(exp.Unix(), 10)
	return base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." +
		base64.RawURLEncoding.EncodeToString(s.mac(kind, payload)), exp
}

// Verify checks a token of a kind and returns its value and expiry.
func (s *Signer) Verify(kind, token string) (string, time.Time, error) {
	p64, m64, ok := strings.Cut(token, ".")
	if !ok || len(token) > 4096 {
		return "", time.Time{}, ErrTampered
	}
	payload, err1 := base64.RawURLEncoding.DecodeString(p64)
	mac, err2 := base64.RawURLEncoding.DecodeString(m64)
	if err1 != nil || err2 != nil || !hmac.Equal(mac, s.mac(kind, string(payload))) {
		return "", time.Time{}, ErrTampered
	}
	i := strings.LastIndexByte(string(payload), '|')
	if i < 0 {
		return "", time.Time{}, ErrTampered
	}
	sec, err := strconv.ParseInt(string(payload[i+1:]), 10, 64)
	if err != nil {
		return "", time.Time{}, ErrTampered
	}
	exp := time.Unix(sec, 0)
	if !s.now().Before(exp) {
		return "", exp, ErrExpired
	}
	return string(payload[:i]), exp, nil
}

func (s *Signer) mac(kind, payload string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("posture-portal-v1\x00" + kind + "\x00" + payload))
	return m.Sum(nil)
}

// Token kinds.
const (
	kindLink    = "device-link"
	kindSession = "session"
	kindSignIn  = "signin"
)

// DeviceLink signs a link token for one device.
func (s *Signer) DeviceLink(deviceID string, ttl time.Duration) (string, time.Time) {
	return s.Sign(kindLink, deviceID, ttl)
}

// CheckDeviceLink verifies a link token for the device it is used with.
func (s *Signer) CheckDeviceLink(token, deviceID string) error {
	v, _, err := s.Verify(kindLink, token)
	if err != nil {
		return err
	}
	if !hmac.Equal([]byte(v), []byte(deviceID)) {
		return ErrTampered
	}
	return nil
}
