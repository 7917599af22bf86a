package entra

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"strings"
	"testing"
	"time"
)

const (
	deviceID = "5f1c3a9e-2b7d-4c11-9a2e-0d6b8f4e7c21"
	tenantID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
)

// entraCert makes a certificate shaped like Entra's device certificates:
// subject CN = device id, issuer CN = MS-Organization-Access, and the
// tenant id extension holding the tenant GUID as 16 raw bytes.
func entraCert(t *testing.T, cn, issuer string) []byte {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	raw, err := hex.DecodeString(strings.ReplaceAll(tenantID, "-", ""))
	if err != nil {
		t.Fatal(err)
	}
	// Microsoft GUID byte order: the first three fields are little-endian.
	tid := append([]byte{raw[3], raw[2], raw[1], raw[0], raw[5], raw[4], raw[7], raw[6]}, raw[8:]...)
	val, _ := asn1.Marshal(tid)
	tmpl := &x509.Certificate{
		SerialNumber:    big.NewInt(42),
		Subject:         pkix.Name{CommonName: cn},
		Issuer:          pkix.Name{CommonName: issuer},
		NotBefore:       time.Now().Add(-time.Hour),
		NotAfter:        time.Now().Add(time.Hour),
		ExtraExtensions: []pkix.Extension{{Id: tenantOID, Value: val}},
	}
	parent := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: issuer}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// appSSOOutput mirrors the layout of `app-sso platform --state` on macOS
// 14/15: titled sections, each followed by a JSON-ish dictionary dump.
func appSSOOutput(certB64 string, userSection string) string {
	return `Device Configuration:
 {
  "accountDisplayName" : "Contoso",
  "deviceEncryptionKeyReference" : "AAAA",
  "deviceSigningCertificate" : "` + certB64 + `",
  "deviceSigningKeyReference" : "BBBB",
  "extensionIdentifier" : "com.microsoft.CompanyPortalMac.ssoextension",
  "loginFrequency" : 64800,
  "registrationCompleted" : true,
  "sdkVersionString" : "2.0",
  "sharedDeviceKeys" : true
}

Login Configuration:
 {
  "clientID" : "29d9ed98-a469-4536-ade2-f981bc1d605e",
  "issuer" : "https://login.microsoftonline.com/` + tenantID + `/v2.0",
  "loginRequestEncryptionAlgorithm" : "ECDH-ES",
  "tokenEndpointURL" : "https://login.microsoftonline.com/` + tenantID + `/oauth2/v2.0/token"
}

User Configuration:
` + userSection + `

SSO Tokens:
 Received:
 2025-03-04T10:12:09Z
`
}

const userSection = ` {
  "_credentialStorage" : "keychain",
  "kerberosStatus" : [
    {
      "cacheName" : "API:6B6E3A1F",
      "importSuccessful" : true,
      "realm" : "KERBEROS.MICROSOFTONLINE.COM",
      "upn" : "alex.morgan\\@contoso.com@KERBEROS.MICROSOFTONLINE.COM"
    }
  ],
  "loginUserName" : "alex.morgan@contoso.com",
  "state" : "normal"
}`

func TestParseAppSSOState(t *testing.T) {
	der := entraCert(t, strings.ToUpper(deviceID), "MS-Organization-P2P-Access [2025]")
	out := appSSOOutput(base64.RawURLEncoding.EncodeToString(der), userSection)
	row, ok, err := ParseAppSSOState([]byte(out))
	if err != nil || !ok {
		t.Fatalf("ok=%v err=%v", ok, err)
	}
	want := Row{DeviceID: deviceID, UserPrincipalName: "alex.morgan@contoso.com", TenantID: tenantID, Source: SourcePlatformSSO}
	if row != want {
		t.Fatalf("row = %+v\nwant  %+v", row, want)
	}

	// No user signed in yet: device id, no UPN.
	row, ok, err = ParseAppSSOState([]byte(appSSOOutput(base64.StdEncoding.EncodeToString(der), " (null)")))
	if err != nil || !ok || row.DeviceID != deviceID || row.UserPrincipalName != "" {
		t.Fatalf("without user: row=%+v ok=%v err=%v", row, ok, err)
	}

	// Not registered: Device Configuration is (null).
	notReg := "Device Configuration:\n (null)\n\nLogin Configuration:\n (null)\n\nUser Configuration:\n (null)\n"
	if _, ok, err := ParseAppSSOState([]byte(notReg)); ok || err != nil {
		t.Fatalf("unregistered: ok=%v err=%v", ok, err)
	}
	// Garbage is an error, not a silent miss.
	if _, _, err := ParseAppSSOState([]byte("app-sso: command not found")); err == nil {
		t.Fatal("garbage parsed")
	}
	bad := appSSOOutput("!!!notbase64", userSection)
	if _, _, err := ParseAppSSOState([]byte(bad)); err == nil {
		t.Fatal("bad certificate parsed")
	}
}

func TestParseOrgAccessPEM(t *testing.T) {
	device := entraCert(t, deviceID, "MS-Organization-Access")
	caCert := entraCert(t, "MS-Organization-Access", "MS-Organization-Access")
	var b strings.Builder
	pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: caCert})
	pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: device})
	pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: device}) // login + system keychain
	rows, err := ParseOrgAccessPEM([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].DeviceID != deviceID || rows[0].TenantID != tenantID || rows[0].Source != SourceWorkplaceJoin {
		t.Fatalf("rows = %+v", rows)
	}
	if rows, err := ParseOrgAccessPEM(nil); err != nil || len(rows) != 0 {
		t.Fatalf("empty output: %v %v", rows, err)
	}
}

// dsregcmdSample follows the layout of `dsregcmd /status` on Windows 11.
const dsregcmdSample = `
+----------------------------------------------------------------------+
| Device State                                                         |
+----------------------------------------------------------------------+

             AzureAdJoined : YES
          EnterpriseJoined : NO
              DomainJoined : NO
               Device Name : CONTOSO-LT-042

+----------------------------------------------------------------------+
| Device Details                                                       |
+----------------------------------------------------------------------+

                  DeviceId : 5F1C3A9E-2B7D-4C11-9A2E-0D6B8F4E7C21
                Thumbprint : 8A1F0C3B5D7E9A2C4B6D8F0A1C3E5B7D9F2A4C6E
 DeviceCertificateValidity : [ 2024-11-02 08:12:44.000 UTC -- 2034-11-02 08:42:44.000 UTC ]
            KeyContainerId : 1d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d
               KeyProvider : Microsoft Platform Crypto Provider
              TpmProtected : YES
          DeviceAuthStatus : SUCCESS

+----------------------------------------------------------------------+
| Tenant Details                                                       |
+----------------------------------------------------------------------+

                TenantName : Contoso
                  TenantId : 72F988BF-86F1-41AF-91AB-2D7CD011DB47
                       Idp : login.windows.net

+----------------------------------------------------------------------+
| User State                                                           |
+----------------------------------------------------------------------+

                    NgcSet : YES
           WorkplaceJoined : NO
             WamDefaultSet : YES

+----------------------------------------------------------------------+
| Diagnostic Data                                                      |
+----------------------------------------------------------------------+

        AadRecoveryEnabled : NO
    Executing Account Name : AzureAD\AlexMorgan, alex.morgan@contoso.com
               KeySignTest : PASSED
`

func TestParseDsregcmd(t *testing.T) {
	row, ok := ParseDsregcmd([]byte(strings.ReplaceAll(dsregcmdSample, "\n", "\r\n")))
	want := Row{DeviceID: deviceID, TenantID: tenantID, UserPrincipalName: "alex.morgan@contoso.com", Source: SourceDsregcmd}
	if !ok || row != want {
		t.Fatalf("row = %+v ok=%v\nwant %+v", row, ok, want)
	}
	notJoined := "+---+\n| Device State |\n+---+\n  AzureAdJoined : NO\n  EnterpriseJoined : NO\n  DomainJoined : NO\n"
	if _, ok := ParseDsregcmd([]byte(notJoined)); ok {
		t.Fatal("a device that is not joined has no row")
	}
}

type fakeRunner map[string]string // "name args..." -> output; missing: error

func (f fakeRunner) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	key := strings.TrimSpace(name + " " + strings.Join(args, " "))
	out, ok := f[key]
	if !ok {
		return nil, errors.New("exit status 44")
	}
	return []byte(out), nil
}

func TestLookupByPlatform(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	der := entraCert(t, deviceID, "MS-Organization-P2P-Access [2025]")
	mac := fakeRunner{
		"/usr/bin/stat -f %Su %u /dev/console":                                "alex 501\n",
		"launchctl asuser 501 sudo -u alex /usr/bin/app-sso platform --state": appSSOOutput(base64.RawURLEncoding.EncodeToString(der), userSection),
	}
	rows, err := Lookup(ctx, "darwin", mac, log)
	if err != nil || len(rows) != 1 || rows[0].Source != SourcePlatformSSO || rows[0].UserPrincipalName != "alex.morgan@contoso.com" {
		t.Fatalf("darwin: rows=%+v err=%v", rows, err)
	}
	// Legacy workplace join only, nobody at the console.
	var b strings.Builder
	pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: entraCert(t, deviceID, "MS-Organization-Access")})
	legacy := fakeRunner{
		"/usr/bin/stat -f %Su %u /dev/console":                               "root 0\n",
		"/usr/bin/security find-certificate -a -c MS-Organization-Access -p": b.String(),
	}
	rows, err = Lookup(ctx, "darwin", legacy, log)
	if err != nil || len(rows) != 1 || rows[0].Source != SourceWorkplaceJoin {
		t.Fatalf("legacy: rows=%+v err=%v", rows, err)
	}
	win := fakeRunner{"dsregcmd /status": dsregcmdSample}
	rows, err = Lookup(ctx, "windows", win, log)
	if err != nil || len(rows) != 1 || rows[0].DeviceID != deviceID {
		t.Fatalf("windows: rows=%+v err=%v", rows, err)
	}
	rows, err = Lookup(ctx, "linux", fakeRunner{}, log)
	if err != nil || len(rows) != 0 {
		t.Fatalf("linux: rows=%+v err=%v", rows, err)
	}
	// app-sso missing (macOS 12) and no keychain match: no rows, no error.
	rows, err = Lookup(ctx, "darwin", fakeRunner{"/usr/bin/stat -f %Su %u /dev/console": "alex 501\n"}, log)
	if err != nil || len(rows) != 0 {
		t.Fatalf("old mac: rows=%+v err=%v", rows, err)
	}
	// Unparseable app-sso output is an error the table reports.
	rows, err = Lookup(ctx, "darwin", fakeRunner{
		"/usr/bin/stat -f %Su %u /dev/console":                                "alex 501\n",
		"launchctl asuser 501 sudo -u alex /usr/bin/app-sso platform --state": "Device Configuration:\n {\"deviceSigningCertificate\" : \"@@@\"}\n",
	}, log)
	if err == nil {
		t.Fatalf("broken app-sso output: rows=%+v, want an error", rows)
	}
	// Nothing registered on a Mac: no rows, no error.
	rows, err = Lookup(ctx, "darwin", fakeRunner{"/usr/bin/stat -f %Su %u /dev/console": "root 0\n"}, log)
	if err != nil || len(rows) != 0 {
		t.Fatalf("unregistered mac: rows=%+v err=%v", rows, err)
	}
}
