package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

func issue(t *testing.T, csrDER []byte, hostID string, nb, na time.Time) (certPEM, caPEM []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: nb.Add(-time.Hour), NotAfter: na.Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(URIPrefix + hostID)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: csr.Subject, URIs: []*url.URL{u}, NotBefore: nb, NotAfter: na}
	ca, _ := x509.ParseCertificate(caDER)
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, csr.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
}

func TestKeyCSRSaveLoad(t *testing.T) {
	s := Store{Dir: filepath.Join(t.TempDir(), "state")}
	key, err := s.Key()
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(s.Dir, KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	again, err := s.Key()
	if err != nil || !again.Equal(key) {
		t.Fatalf("reloaded key differs: %v", err)
	}
	if _, err := s.Load(key); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("Load before enrollment: %v", err)
	}
	csr, err := CSR(key, "UUID-1")
	if err != nil {
		t.Fatal(err)
	}
	nb := time.Now().Add(-time.Minute)
	certPEM, caPEM := issue(t, csr, "h-42", nb, nb.Add(30*24*time.Hour))
	id, err := s.Save("ignored-when-san-present", certPEM, caPEM, key)
	if err != nil {
		t.Fatal(err)
	}
	if id.HostID != "h-42" {
		t.Fatalf("host id %q, want the URI SAN's h-42", id.HostID)
	}
	loaded, err := s.Load(key)
	if err != nil || loaded.HostID != "h-42" || loaded.Leaf.SerialNumber.Int64() != 2 {
		t.Fatalf("Load = %+v, %v", loaded, err)
	}
	// A certificate for another key is refused, and nothing is overwritten.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr2, _ := CSR(other, "x")
	wrongPEM, _ := issue(t, csr2, "h-43", nb, nb.Add(time.Hour))
	if _, err := s.Save("", wrongPEM, caPEM, key); err == nil {
		t.Fatal("certificate of another key accepted")
	}
	if l, _ := s.Load(key); l.HostID != "h-42" {
		t.Fatal("refused certificate overwrote the stored one")
	}
}

func TestRenewAtAndExpiry(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	life := 30 * 24 * time.Hour
	id := &Identity{Leaf: &x509.Certificate{NotBefore: nb, NotAfter: nb.Add(life)}}
	for _, j := range []float64{0, 0.3, 0.999} {
		at := id.RenewAt(j)
		lo, hi := nb.Add(life*7/12), nb.Add(life*2/3)
		if at.Before(lo) || at.After(hi) {
			t.Fatalf("jitter %v: renew at %v outside [%v, %v]", j, at, lo, hi)
		}
	}
	if id.Expired(nb.Add(life-time.Second)) || !id.Expired(nb.Add(life)) {
		t.Fatal("expiry boundary wrong")
	}
}

func TestHolderSwap(t *testing.T) {
	var h Holder
	c, err := h.GetClientCertificate(nil)
	if err != nil || len(c.Certificate) != 0 {
		t.Fatalf("empty holder: %v %v", c, err)
	}
	a := &Identity{HostID: "a"}
	a.Cert.Certificate = [][]byte{{1}}
	b := &Identity{HostID: "b"}
	b.Cert.Certificate = [][]byte{{2}}
	h.Set(a)
	c1, _ := h.GetClientCertificate(nil)
	h.Set(b)
	c2, _ := h.GetClientCertificate(nil)
	if c1.Certificate[0][0] != 1 || c2.Certificate[0][0] != 2 {
		t.Fatal("holder did not hand out the swapped certificate")
	}
}

// A key restored with a loose mode (a backup, a copy by hand) is set back
// to 0600 when it is loaded; it used to be left readable by every local user.
func TestKeyLoadTightensALooseKeyFile(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the state directory's DACL protects the key on Windows")
	}
	s := Store{Dir: t.TempDir()}
	k1, err := s.Key()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(s.Dir, KeyFile)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	k2, err := s.Key()
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equal(k2) {
		t.Fatal("a different key came back")
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Fatalf("key mode %04o after load, want 0600", m)
	}
}
