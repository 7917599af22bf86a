// Package entra serves the posture_entra osquery table: the host's Entra
// (Azure AD) device id and user principal name, which core osquery cannot
// see for every registration kind.
//
// Sources, in order:
//   - macOS platform SSO: `app-sso platform --state` run as the console user;
//     the device id is the subject CN of the Device Configuration's
//     deviceSigningCertificate, the UPN comes from the User Configuration's
//     kerberosStatus (or loginUserName).
//   - macOS legacy workplace join: the MS-Organization-Access certificate in
//     the keychain, whose subject CN is the device id.
//   - Windows: `dsregcmd /status` (DeviceId, TenantId, Executing Account Name).
//
// The parsers are pure functions; the commands run behind Runner.
package entra

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Source names, as reported in the table's source column.
const (
	SourcePlatformSSO   = "platform_sso"
	SourceWorkplaceJoin = "workplace_join"
	SourceDsregcmd      = "dsregcmd"
)

// Row is one registration found on the host.
type Row struct {
	DeviceID          string
	UserPrincipalName string
	TenantID          string
	Source            string
}

var guidRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// tenantOID is the extension in Entra device certificates that carries the
// tenant id (best effort: absent on some certificates).
var tenantOID = asn1.ObjectIdentifier{1, 2, 840, 113556, 1, 5, 284, 5}

// section returns the text following "name:" up to the next blank line
// followed by another "Xxx:" header, trimmed. ok is false if absent.
func section(out, name string) (string, bool) {
	i := strings.Index(out, "\n"+name+":")
	if i < 0 {
		if !strings.HasPrefix(out, name+":") {
			return "", false
		}
		i = -1
	}
	rest := out[i+1+len(name)+1:]
	return strings.TrimSpace(rest), true
}

// jsonObject returns the balanced {...} at the start of s (after spaces),
// or "" when s starts with "(null)".
func jsonObject(s string) (string, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "(null)") {
		return "", nil
	}
	if !strings.HasPrefix(s, "{") {
		return "", errors.New("no JSON object")
	}
	depth, inStr, esc := 0, false, false
	for i, c := range s {
		switch {
		case esc:
			esc = false
		case inStr && c == '\\':
			esc = true
		case c == '"':
			inStr = !inStr
		case inStr:
		case c == '{':
			depth++
		case c == '}':
			depth--
			if depth == 0 {
				return s[:i+1], nil
			}
		}
	}
	return "", errors.New("unterminated JSON object")
}

// ParseAppSSOState reads `app-sso platform --state`. It returns ok=false
// (and no error) when the device is not registered with platform SSO.
func ParseAppSSOState(out []byte) (Row, bool, error) {
	text := "\n" + strings.ReplaceAll(string(out), "\r\n", "\n")
	dev, found := section(text, "Device Configuration")
	if !found {
		return Row{}, false, errors.New(`app-sso: no "Device Configuration" section`)
	}
	devJSON, err := jsonObject(dev)
	if err != nil {
		return Row{}, false, fmt.Errorf("app-sso: Device Configuration: %w", err)
	}
	if devJSON == "" {
		return Row{}, false, nil
	}
	var dc struct {
		DeviceSigningCertificate string `json:"deviceSigningCertificate"`
	}
	if err := json.Unmarshal([]byte(devJSON), &dc); err != nil {
		return Row{}, false, fmt.Errorf("app-sso: Device Configuration: %w", err)
	}
	if dc.DeviceSigningCertificate == "" {
		return Row{}, false, nil
	}
	der, err := decodeB64(dc.DeviceSigningCertificate)
	if err != nil {
		return Row{}, false, fmt.Errorf("app-sso: deviceSigningCertificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return Row{}, false, fmt.Errorf("app-sso: deviceSigningCertificate: %w", err)
	}
	if cert.Subject.CommonName == "" {
		return Row{}, false, errors.New("app-sso: deviceSigningCertificate has no subject CN")
	}
	row := Row{DeviceID: strings.ToLower(cert.Subject.CommonName), TenantID: certTenant(cert), Source: SourcePlatformSSO}
	if usr, found := section(text, "User Configuration"); found {
		if uj, err := jsonObject(usr); err == nil && uj != "" {
			var uc struct {
				LoginUserName  string `json:"loginUserName"`
				KerberosStatus []struct {
					UPN   string `json:"upn"`
					Realm string `json:"realm"`
				} `json:"kerberosStatus"`
			}
			if err := json.Unmarshal([]byte(uj), &uc); err == nil {
				for _, k := range uc.KerberosStatus {
					if upn := kerberosUPN(k.UPN, k.Realm); upn != "" {
						row.UserPrincipalName = upn
						break
					}
				}
				if row.UserPrincipalName == "" && strings.Contains(uc.LoginUserName, "@") {
					row.UserPrincipalName = uc.LoginUserName
				}
			}
		}
	}
	return row, true, nil
}

// kerberosUPN turns a Kerberos principal such as
// `user\@contoso.com@KERBEROS.MICROSOFTONLINE.COM` into `user@contoso.com`.
func kerberosUPN(principal, realm string) string {
	p := principal
	if realm != "" {
		p = strings.TrimSuffix(p, "@"+realm)
	}
	p = strings.ReplaceAll(p, `\@`, "@")
	if !strings.Contains(p, "@") {
		return ""
	}
	return p
}

func decodeB64(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}

// certTenant reads the tenant id extension of an Entra device certificate.
func certTenant(c *x509.Certificate) string {
	for _, ext := range c.Extensions {
		if !ext.Id.Equal(tenantOID) {
			continue
		}
		v := ext.Value
		var raw asn1.RawValue
		if _, err := asn1.Unmarshal(v, &raw); err == nil && raw.Tag == asn1.TagOctetString {
			v = raw.Bytes
		}
		if len(v) == 16 {
			return guidString(v)
		}
		if s := strings.TrimSpace(string(v)); guidRe.MatchString(s) {
			return strings.ToLower(s)
		}
	}
	return ""
}

// guidString formats a Microsoft GUID (first three fields little-endian).
func guidString(b []byte) string {
	return fmt.Sprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15])
}

// ParseOrgAccessPEM reads `security find-certificate -a -c
// MS-Organization-Access -p`: PEM certificates. Entra's workplace-join
// certificate is issued by MS-Organization-Access and its subject CN is the
// device id. The keychain search also matches the issuing CA itself, whose
// CN is not a GUID; it is skipped.
func ParseOrgAccessPEM(out []byte) ([]Row, error) {
	var rows []Row
	seen := map[string]bool{}
	rest := out
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("keychain certificate: %w", err)
		}
		cn := strings.ToLower(c.Subject.CommonName)
		if !guidRe.MatchString(cn) || seen[cn] {
			continue
		}
		if c.Issuer.CommonName != "MS-Organization-Access" && !strings.Contains(c.Issuer.String(), "MS-Organization-Access") {
			continue
		}
		seen[cn] = true
		rows = append(rows, Row{DeviceID: cn, TenantID: certTenant(c), Source: SourceWorkplaceJoin})
	}
	return rows, nil
}

// ParseDsregcmd reads `dsregcmd /status`. ok is false when the output shows
// no device id (not joined or registered).
func ParseDsregcmd(out []byte) (Row, bool) {
	kv := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "+") || strings.HasPrefix(line, "|") {
			continue
		}
		k, v, found := strings.Cut(line, " : ")
		if !found {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if _, dup := kv[k]; !dup { // the first (device) section wins
			kv[k] = v
		}
	}
	id := strings.ToLower(kv["DeviceId"])
	if !guidRe.MatchString(id) {
		return Row{}, false
	}
	row := Row{DeviceID: id, TenantID: strings.ToLower(kv["TenantId"]), Source: SourceDsregcmd}
	// "Executing Account Name : AzureAD\JohnSmith, john.smith@contoso.com"
	for _, part := range strings.Split(kv["Executing Account Name"], ",") {
		part = strings.TrimSpace(part)
		if i := strings.LastIndex(part, `\`); i >= 0 {
			part = part[i+1:]
		}
		if strings.Contains(part, "@") {
			row.UserPrincipalName = part
			break
		}
	}
	return row, true
}
