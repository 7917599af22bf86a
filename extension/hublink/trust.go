package hublink

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// PinPrefix starts a --hub-ca-pin value: sha256/<base64 of the SHA-256 of a
// certificate's DER SubjectPublicKeyInfo>, as in HPKP and curl's --pinnedpubkey.
const PinPrefix = "sha256/"

// ParsePin decodes a "sha256/<base64>" pin.
func ParsePin(pin string) ([]byte, error) {
	if !strings.HasPrefix(pin, PinPrefix) {
		return nil, fmt.Errorf("hub CA pin %q: must start with %q", pin, PinPrefix)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(pin, PinPrefix))
	if err != nil {
		return nil, fmt.Errorf("hub CA pin: %w", err)
	}
	if len(raw) != sha256.Size {
		return nil, fmt.Errorf("hub CA pin: %d bytes, want %d", len(raw), sha256.Size)
	}
	return raw, nil
}

// SPKIPin returns the pin of a certificate.
func SPKIPin(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return PinPrefix + base64.StdEncoding.EncodeToString(sum[:])
}

// LoadCAFile reads a PEM bundle into a pool.
func LoadCAFile(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("hub CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("hub CA %s: no PEM certificate", path)
	}
	return pool, nil
}

// BootstrapTLS is the server-only TLS used for the first Enroll, before the
// hub has handed over its CA bundle. Exactly one of roots or pin is used:
// roots verifies the chain as usual; pin accepts the server when some
// certificate in its chain has that SPKI hash and the leaf chains to it and
// names the server.
func BootstrapTLS(roots *x509.CertPool, pin []byte) (*tls.Config, error) {
	switch {
	case roots != nil:
		return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, nil
	case pin != nil:
		return &tls.Config{
			MinVersion: tls.VersionTLS12,
			// Chain and name are verified in VerifyConnection against the
			// pinned key instead of the system roots.
			InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				return verifyPinned(cs, pin)
			},
		}, nil
	default:
		return nil, errors.New("no trust for the hub: give --hub-ca or --hub-ca-pin")
	}
}

func verifyPinned(cs tls.ConnectionState, pin []byte) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("hub presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	for i, c := range cs.PeerCertificates {
		sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		if string(sum[:]) != string(pin) {
			continue
		}
		if i == 0 {
			return leaf.VerifyHostname(cs.ServerName)
		}
		roots := x509.NewCertPool()
		roots.AddCert(c)
		inter := x509.NewCertPool()
		for _, ic := range cs.PeerCertificates[1:i] {
			inter.AddCert(ic)
		}
		_, err := leaf.Verify(x509.VerifyOptions{DNSName: cs.ServerName, Roots: roots, Intermediates: inter})
		if err != nil {
			return fmt.Errorf("hub certificate does not chain to the pinned key: %w", err)
		}
		return nil
	}
	return errors.New("no certificate in the hub's chain matches --hub-ca-pin (the pinned CA must be sent in the chain, or pin the server key itself)")
}
