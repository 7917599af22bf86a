// Package ca is the hub's certificate authority: it issues the short-lived
// client certificates hosts authenticate with (host id in a URI SAN) and the
// hub's own TLS server certificate.
package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// HostURIPrefix prefixes the host id in a client certificate's URI SAN.
const HostURIPrefix = "posture://host/"

// File names inside the data dir when the CA is created there.
const (
	CertFile = "ca.pem"
	KeyFile  = "ca-key.pem"
)

// CA signs host and server certificates.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
	pool    *x509.CertPool
	now     func() time.Time
}

// LoadOrCreate loads ca.pem/ca-key.pem from dir, creating an ECDSA P-256 CA
// there on first start. Replicas share the CA by sharing these files.
//
// Creation is race-safe even across hosts sharing the directory: each file
// is written to a temporary name and linked into place, and link fails if
// the name exists. The process whose key link wins writes the certificate;
// every other one discards its CA and reads the winner's.
func LoadOrCreate(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	if _, err := os.Stat(certPath); err == nil {
		return LoadFiles(certPath, keyPath)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("ca: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca: create dir: %w", err)
	}
	certPEM, keyPEM, err := generate(time.Now())
	if err != nil {
		return nil, err
	}
	// Key first, so a crash never leaves a cert without its key.
	won, err := writeFileExclusive(keyPath, keyPEM, 0o600)
	if err != nil {
		return nil, err
	}
	if !won {
		return awaitFiles(certPath, keyPath, 10*time.Second)
	}
	if _, err := writeFileExclusive(certPath, certPEM, 0o644); err != nil {
		return nil, err
	}
	return LoadFiles(certPath, keyPath)
}

// awaitFiles loads the CA another process is creating: its key exists, its
// certificate follows within moments.
func awaitFiles(certPath, keyPath string, wait time.Duration) (*CA, error) {
	deadline := time.Now().Add(wait)
	for {
		if _, err := os.Stat(certPath); err == nil {
			return LoadFiles(certPath, keyPath)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("ca: %s exists but %s did not appear within %s; if no other hub is starting, remove the key and start again", keyPath, certPath, wait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// LoadFiles loads a CA from PEM files (e.g. one made by an existing PKI).
func LoadFiles(certPath, keyPath string) (*CA, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("ca: read cert: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("ca: read key: %w", err)
	}
	return Parse(certPEM, keyPEM)
}

// Parse builds a CA from PEM-encoded certificate and private key.
func Parse(certPEM, keyPEM []byte) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, errors.New("ca: certificate: no PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca: certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("ca: certificate is not a CA")
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("ca: key: no PEM block")
	}
	var key any
	switch kb.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("ca: key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, errors.New("ca: key cannot sign")
	}
	if !publicKeysEqual(signer.Public(), cert.PublicKey) {
		return nil, errors.New("ca: key does not match certificate")
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{cert: cert, certPEM: pem.EncodeToMemory(cb), key: signer, pool: pool, now: time.Now}, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

func generate(now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "posture hub CA", Organization: []string{"posture"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: self-sign: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n.Add(n, big.NewInt(1))
}

// CertPEM is the CA certificate, the bundle agents trust.
func (c *CA) CertPEM() []byte { return c.certPEM }

// Pool holds the CA certificate, for verifying client certificates.
func (c *CA) Pool() *x509.CertPool { return c.pool }

// Cert is the CA certificate.
func (c *CA) Cert() *x509.Certificate { return c.cert }

// SetClock replaces time.Now (tests).
func (c *CA) SetClock(now func() time.Time) { c.now = now }

// Issued is a signed host certificate.
type Issued struct {
	CertPEM  []byte
	Serial   string
	NotAfter time.Time
}

// SignHost checks a host's CSR (signature, ECDSA P-256 key) and issues a
// client certificate naming hostID in a URI SAN. Whatever names the CSR asks
// for are ignored: the hub decides the identity.
func (c *CA) SignHost(csrDER []byte, hostID string, lifetime time.Duration) (Issued, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return Issued{}, fmt.Errorf("csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return Issued{}, fmt.Errorf("csr signature: %w", err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return Issued{}, errors.New("csr: key must be ECDSA P-256")
	}
	uri, err := url.Parse(HostURIPrefix + url.PathEscape(hostID))
	if err != nil {
		return Issued{}, fmt.Errorf("host uri: %w", err)
	}
	now := c.now()
	serial := randomSerial()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hostID, Organization: []string{"posture host"}},
		URIs:         []*url.URL{uri},
		NotBefore:    now.Add(-5 * time.Minute), // tolerate host clock skew
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, pub, c.key)
	if err != nil {
		return Issued{}, fmt.Errorf("sign host: %w", err)
	}
	return Issued{
		CertPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Serial:   serial.Text(16),
		NotAfter: tmpl.NotAfter,
	}, nil
}

// ServerCert issues the hub's TLS certificate for the given DNS names and IP
// addresses. A fresh key per start; nothing to store.
func (c *CA) ServerCert(names []string, lifetime time.Duration) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server key: %w", err)
	}
	now := c.now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: "posture hub"},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sign server: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse server cert: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, c.cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// HostID extracts the host id from a client certificate issued by SignHost.
func HostID(cert *x509.Certificate) (string, error) {
	for _, u := range cert.URIs {
		s := u.String()
		if id, ok := strings.CutPrefix(s, HostURIPrefix); ok && id != "" {
			return url.PathUnescape(id)
		}
	}
	return "", errors.New("certificate names no posture host")
}

// writeFileExclusive writes data to path unless path exists: false, nil if
// another writer got there first. The content is complete (and synced)
// before the name appears, so a reader never sees a partial file.
func writeFileExclusive(path string, data []byte, mode os.FileMode) (bool, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return false, nil
		}
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	return true, nil
}
