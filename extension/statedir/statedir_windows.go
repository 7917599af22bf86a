//go:build windows

package statedir

import (
	"fmt"
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/windows"
)

// Prepare creates dir if it is missing and sets its DACL to WindowsSDDL,
// protected from inheritance, then reads it back and refuses to go on if any
// other account is still granted access. SetNamedSecurityInfo propagates the
// new inheritable entries to the files already inside (key.pem, the spool);
// entries set explicitly on such a file stay, which the key check in
// package identity does not cover on Windows. It returns a note for the log.
func Prepare(dir string) (string, error) {
	// Only an elevated process (LocalSystem, as osqueryd runs, or an
	// elevated administrator) keeps access once the DACL names SYSTEM and
	// Administrators alone; anyone else would lock themselves out.
	if !windows.GetCurrentProcessToken().IsElevated() {
		return "", fmt.Errorf("state dir %s: posture.ext must run as LocalSystem or an elevated administrator on Windows", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("state dir: %w", err)
	}
	before, _ := readACEs(dir)
	sd, err := windows.SecurityDescriptorFromString(WindowsSDDL)
	if err != nil {
		return "", fmt.Errorf("state dir: parse %s: %w", WindowsSDDL, err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return "", fmt.Errorf("state dir: %w", err)
	}
	owner, _, err := sd.Owner()
	if err != nil {
		return "", fmt.Errorf("state dir: %w", err)
	}
	// The owner may always rewrite the DACL, so it is Administrators too
	// (an elevated token holds that group with the right to own objects).
	err = windows.SetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT,
		windows.OWNER_SECURITY_INFORMATION|windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION,
		owner, nil, dacl, nil)
	if err != nil {
		return "", fmt.Errorf("state dir %s: set ACL (SYSTEM and Administrators only): %w", dir, err)
	}
	after, err := readACEs(dir)
	if err != nil {
		return "", fmt.Errorf("state dir %s: read back ACL: %w", dir, err)
	}
	if s := Strangers(after, AllowedSIDs); len(s) > 0 {
		return "", fmt.Errorf("state dir %s: ACL still grants access to %s", dir, strings.Join(s, ", "))
	}
	if s := Strangers(before, AllowedSIDs); len(s) > 0 {
		return "ACL reset to SYSTEM and Administrators (it also granted " + strings.Join(s, ", ") + ")", nil
	}
	return "", nil
}

// Exposed reports the broad groups (Everyone, Users, …) the file's DACL lets
// read it, or "" when there are none.
func Exposed(path string) (string, error) {
	aces, err := readACEs(path)
	if err != nil {
		return "", err
	}
	if r := BroadReaders(aces); len(r) > 0 {
		return "its ACL lets " + strings.Join(r, ", ") + " read it; restrict it to SYSTEM and Administrators", nil
	}
	return "", nil
}

// Access-allowed ACE types that x/sys/windows does not name (winnt.h).
const (
	accessAllowedCompoundACEType       = 4
	accessAllowedObjectACEType         = 5
	accessAllowedCallbackACEType       = 9
	accessAllowedCallbackObjectACEType = 11
)

// readACEs returns the entries of path's DACL. A NULL DACL grants everyone
// everything, and is reported as such.
func readACEs(path string) ([]ACE, error) {
	sd, err := windows.GetNamedSecurityInfo(path, windows.SE_FILE_OBJECT, windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		return nil, err
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return nil, err
	}
	if dacl == nil {
		return []ACE{{Allow: true, SID: "S-1-1-0", Mask: uint32(windows.GENERIC_ALL)}}, nil
	}
	var out []ACE
	for i := uint32(0); i < uint32(dacl.AceCount); i++ {
		var ace *windows.ACCESS_ALLOWED_ACE
		if err := windows.GetAce(dacl, i, &ace); err != nil {
			return nil, err
		}
		t := ace.Header.AceType
		e := ACE{Mask: uint32(ace.Mask)}
		switch t {
		case windows.ACCESS_ALLOWED_ACE_TYPE, accessAllowedCallbackACEType:
			// These types carry the SID at SidStart.
			e.Allow, e.SID = true, (*windows.SID)(unsafe.Pointer(&ace.SidStart)).String()
		case accessAllowedCompoundACEType, accessAllowedObjectACEType, accessAllowedCallbackObjectACEType:
			// They grant something to someone, laid out differently: never
			// expected on the state directory, so count them as strangers.
			e.Allow, e.SID = true, fmt.Sprintf("(ACE type %d)", t)
		}
		out = append(out, e)
	}
	return out, nil
}
