// Package identity keeps the host's key and hub-issued certificate in the
// state directory and hands the current certificate to TLS, so a renewed
// certificate is used by the next handshake without dropping open streams.
//
// Files in the state directory:
//
//	key.pem   ECDSA P-256 private key (PKCS#8, mode 0600), made on this host, never sent
//	cert.pem  client certificate from the hub (leaf first)
//	ca.pem    CA bundle the hub returned; trusted for the hub from then on
//	host_id   the host id the hub assigned (also in the certificate's URI SAN)
package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/posture-dev/posture/extension/atomicfile"
)

// File names inside the state directory.
const (
	KeyFile    = "key.pem"
	CertFile   = "cert.pem"
	CAFile     = "ca.pem"
	HostIDFile = "host_id"
)

// URIPrefix is how the hub names the host in the certificate's URI SAN.
const URIPrefix = "posture://host/"

// ErrNotEnrolled means the state directory holds no certificate yet.
var ErrNotEnrolled = errors.New("identity: not enrolled")

// Identity is one issued certificate with its key and the hub's CA bundle.
type Identity struct {
	HostID string
	Cert   tls.Certificate
	Leaf   *x509.Certificate
	CAPEM  []byte
	CAs    *x509.CertPool
}

// Expired reports whether the certificate is no longer valid at now.
func (id *Identity) Expired(now time.Time) bool { return !now.Before(id.Leaf.NotAfter) }

// RenewAt is when renewal is due: at 2/3 of the certificate's lifetime, made
// earlier by up to 1/12 of the lifetime at random (jitter in [0,1)) so that a
// fleet enrolled together does not renew together.
func (id *Identity) RenewAt(jitter float64) time.Time {
	life := id.Leaf.NotAfter.Sub(id.Leaf.NotBefore)
	at := id.Leaf.NotBefore.Add(life * 2 / 3)
	return at.Add(-time.Duration(jitter * float64(life) / 12))
}

// Store reads and writes the identity files in Dir.
type Store struct {
	Dir string
}

// Key loads the host key, creating it (mode 0600) on first use.
func (s Store) Key() (*ecdsa.PrivateKey, error) {
	path := filepath.Join(s.Dir, KeyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("identity: generate key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("identity: encode key: %w", err)
		}
		if err := os.MkdirAll(s.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("identity: create state dir: %w", err)
		}
		if err := atomicfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, fmt.Errorf("identity: write key: %w", err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("identity: read key: %w", err)
	}
	if err := keepPrivate(path); err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("identity: %s: no PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("identity: parse key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("identity: %s is not an ECDSA key", path)
	}
	return key, nil
}

// keepPrivate sets an existing key file that others may read (restored from
// a backup, copied by hand) back to 0600. On Windows the state directory's
// DACL protects it instead (package statedir).
func keepPrivate(path string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return fmt.Errorf("identity: %s is mode %04o and could not be set to 0600: %w", path, perm, err)
		}
	}
	return nil
}

// CSR returns a DER PKCS#10 request for key, with cn as subject common name.
func CSR(key *ecdsa.PrivateKey, cn string) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:            pkix.Name{CommonName: cn},
		SignatureAlgorithm: x509.ECDSAWithSHA256,
	}, key)
	if err != nil {
		return nil, fmt.Errorf("identity: create CSR: %w", err)
	}
	return der, nil
}

// Load returns the stored identity, or ErrNotEnrolled.
func (s Store) Load(key *ecdsa.PrivateKey) (*Identity, error) {
	certPEM, err := os.ReadFile(filepath.Join(s.Dir, CertFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotEnrolled
	}
	if err != nil {
		return nil, fmt.Errorf("identity: read certificate: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(s.Dir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("identity: read CA bundle: %w", err)
	}
	hostID, _ := os.ReadFile(filepath.Join(s.Dir, HostIDFile))
	return Parse(strings.TrimSpace(string(hostID)), certPEM, caPEM, key)
}

// Save checks an issued certificate against key and stores it. The CA
// bundle is written before the certificate, so a crash in between leaves the
// old certificate with the new bundle, which the hub still accepts.
func (s Store) Save(hostID string, certPEM, caPEM []byte, key *ecdsa.PrivateKey) (*Identity, error) {
	id, err := Parse(hostID, certPEM, caPEM, key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("identity: create state dir: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(s.Dir, CAFile), caPEM, 0o644); err != nil {
		return nil, fmt.Errorf("identity: write CA bundle: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(s.Dir, CertFile), certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("identity: write certificate: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(s.Dir, HostIDFile), []byte(id.HostID+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("identity: write host id: %w", err)
	}
	return id, nil
}

// Parse builds an Identity from PEM and checks that the certificate belongs
// to key. The host id comes from the URI SAN when present, else hostID.
func Parse(hostID string, certPEM, caPEM []byte, key *ecdsa.PrivateKey) (*Identity, error) {
	var chain [][]byte
	rest := certPEM
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			chain = append(chain, blk.Bytes)
		}
	}
	if len(chain) == 0 {
		return nil, errors.New("identity: no certificate in PEM")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("identity: parse certificate: %w", err)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(key.Public()) {
		return nil, errors.New("identity: certificate does not match the host key")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("identity: CA bundle holds no certificate")
	}
	for _, u := range leaf.URIs {
		if s := u.String(); strings.HasPrefix(s, URIPrefix) {
			hostID = strings.TrimPrefix(s, URIPrefix)
		}
	}
	if hostID == "" {
		return nil, errors.New("identity: no host id (no posture://host/ URI SAN)")
	}
	return &Identity{
		HostID: hostID,
		Cert:   tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf},
		Leaf:   leaf,
		CAPEM:  caPEM,
		CAs:    pool,
	}, nil
}

// Holder is the current identity, swapped atomically on renewal.
type Holder struct {
	p atomic.Pointer[Identity]
}

// Get returns the current identity (nil before enrollment).
func (h *Holder) Get() *Identity { return h.p.Load() }

// Set installs id for every later TLS handshake.
func (h *Holder) Set(id *Identity) { h.p.Store(id) }

// GetClientCertificate is a tls.Config hook: each handshake picks up the
// latest certificate, so renewal needs no reconnect.
func (h *Holder) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	id := h.p.Load()
	if id == nil {
		return &tls.Certificate{}, nil // no certificate: the hub will refuse
	}
	c := id.Cert
	return &c, nil
}
