package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func csrFor(t *testing.T, key any, uris ...string) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "evil-other-host"}, DNSNames: uris}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestLoadOrCreatePersistsAndReloads(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v, want 0600", st.Mode().Perm())
	}
	b, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Cert().Equal(b.Cert()) {
		t.Fatal("second start made a new CA instead of loading the stored one")
	}
}

func TestSignHostNamesHostAndIgnoresCSRNames(t *testing.T) {
	c, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	iss, err := c.SignHost(csrFor(t, key, "hub.example.com"), "host-123", 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(iss.CertPEM)
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	id, err := HostID(cert)
	if err != nil || id != "host-123" {
		t.Fatalf("HostID = %q, %v", id, err)
	}
	if len(cert.DNSNames) != 0 || cert.Subject.CommonName != "host-123" {
		t.Fatalf("CSR names leaked into the certificate: %v %q", cert.DNSNames, cert.Subject.CommonName)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: c.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("host cert does not verify as a client cert: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: c.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Fatal("host cert must not be usable as a server cert")
	}
}

func TestSignHostRejectsBadCSRs(t *testing.T) {
	c, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	good, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tampered := csrFor(t, good)
	tampered[len(tampered)-5] ^= 0xff
	for name, der := range map[string][]byte{
		"rsa":      csrFor(t, rsaKey),
		"p384":     csrFor(t, p384),
		"garbage":  []byte("not a csr"),
		"tampered": tampered,
	} {
		if _, err := c.SignHost(der, "h", time.Hour); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestParseRejectsMismatchedKey(t *testing.T) {
	a, _ := LoadOrCreate(t.TempDir())
	dir := t.TempDir()
	if _, err := LoadOrCreate(dir); err != nil {
		t.Fatal(err)
	}
	otherKey, _ := os.ReadFile(filepath.Join(dir, KeyFile))
	if _, err := Parse(a.CertPEM(), otherKey); err == nil {
		t.Fatal("a CA whose key does not match its certificate was accepted")
	}
}

// Hubs starting together on one empty dir all end up with the CA on disk.
func TestLoadOrCreateConcurrent(t *testing.T) {
	for round := range 10 {
		dir := filepath.Join(t.TempDir(), fmt.Sprint(round))
		const n = 6
		cas := make([]*CA, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				cas[i], errs[i] = LoadOrCreate(dir)
			}()
		}
		close(start)
		wg.Wait()
		onDisk, err := os.ReadFile(filepath.Join(dir, CertFile))
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("round %d: %v", round, errs[i])
			}
			if string(cas[i].CertPEM()) != string(onDisk) {
				t.Fatalf("round %d: process %d uses a CA that is not the one on disk", round, i)
			}
		}
	}
}
