// Package statedir creates posture.ext's state directory and keeps it
// private to the account the extension runs as: it holds the host's private
// key, and whoever can replace the certificate, CA bundle or policy cache
// there can speak for the host or change what it checks.
//
// On Unix the directory is mode 0700 and owned by the extension's user: a
// directory that is more open is tightened (and that is reported), one owned
// by another user is refused. On Windows, file modes mean nothing; the
// directory gets a protected DACL (inheritance from its parent off) that
// grants full control to SYSTEM and the Administrators group only, inherited
// by everything created inside it.
package statedir

import "fmt"

// WindowsSDDL is the security descriptor put on the state directory on
// Windows: owner (O:) the Administrators group; in the DACL (D:), "P" protects it from the parent's inheritable
// entries; each "(A;OICI;FA;;;X)" allows full file access (FA) to X, inherited
// by files (OI) and subdirectories (CI): SY = LocalSystem, BA = the built-in
// Administrators group.
const WindowsSDDL = "O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"

// AllowedSIDs are the only accounts an access-allowed entry on the state
// directory may name on Windows (S-1-5-18 LocalSystem, S-1-5-32-544
// Administrators).
var AllowedSIDs = []string{"S-1-5-18", "S-1-5-32-544"}

// ACE is one access-control entry, reduced to what Strangers needs.
type ACE struct {
	Allow bool   // access-allowed (false: denied, audit or other types)
	SID   string // the trustee, e.g. "S-1-5-32-545"
	Mask  uint32 // the access granted
}

// Strangers lists the SIDs that entries grant any access to beyond allowed;
// deny entries grant nothing and are ignored.
func Strangers(aces []ACE, allowed []string) []string {
	ok := map[string]bool{}
	for _, s := range allowed {
		ok[s] = true
	}
	var out []string
	seen := map[string]bool{}
	for _, a := range aces {
		if !a.Allow || a.Mask == 0 || ok[a.SID] || seen[a.SID] {
			continue
		}
		seen[a.SID] = true
		out = append(out, a.SID)
	}
	return out
}

// Broad SIDs that cover ordinary users (Everyone, Authenticated Users,
// Users, Interactive): a secret readable by any of them is not a secret.
var broadSIDs = map[string]string{
	"S-1-1-0":      "Everyone",
	"S-1-5-11":     "Authenticated Users",
	"S-1-5-32-545": "Users",
	"S-1-5-4":      "Interactive",
}

// BroadReaders names the broad groups entries grant read access to
// (FILE_READ_DATA, GENERIC_READ, GENERIC_ALL or MAXIMUM_ALLOWED).
func BroadReaders(aces []ACE) []string {
	const readBits = 0x1 | 0x80000000 | 0x10000000 | 0x02000000
	var out []string
	for _, a := range aces {
		if name, ok := broadSIDs[a.SID]; ok && a.Allow && a.Mask&readBits != 0 {
			out = append(out, name)
		}
	}
	return out
}

// errOwner is wrapped by Prepare when the directory belongs to someone else.
type errOwner struct {
	dir        string
	owner, uid int
}

func (e errOwner) Error() string {
	return fmt.Sprintf("state dir %s is owned by uid %d, not by this process (uid %d): that account could replace the key or certificate; chown it or choose another --state-dir", e.dir, e.owner, e.uid)
}
