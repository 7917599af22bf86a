package statedir

import (
	"slices"
	"testing"
)

// The Windows ACL logic is compile-checked only here; its decisions are
// pure and tested on every OS.
func TestStrangers(t *testing.T) {
	const users, everyone = "S-1-5-32-545", "S-1-1-0"
	cases := []struct {
		name string
		aces []ACE
		want []string
	}{
		{"only SYSTEM and Administrators", []ACE{{true, "S-1-5-18", 0x1f01ff}, {true, "S-1-5-32-544", 0x1f01ff}}, nil},
		{"inherited Users read", []ACE{{true, "S-1-5-18", 0x1f01ff}, {true, users, 0x1200a9}, {true, users, 0x1}}, []string{users}},
		{"a deny grants nothing", []ACE{{false, everyone, 0x1f01ff}}, nil},
		{"an empty mask grants nothing", []ACE{{true, everyone, 0}}, nil},
		{"object ACE counted", []ACE{{true, "(ACE type 5)", 0x1}}, []string{"(ACE type 5)"}},
	}
	for _, c := range cases {
		if got := Strangers(c.aces, AllowedSIDs); !slices.Equal(got, c.want) {
			t.Errorf("%s: Strangers = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestBroadReaders(t *testing.T) {
	aces := []ACE{
		{true, "S-1-5-18", 0x1f01ff},       // SYSTEM: fine
		{true, "S-1-5-11", 0x100000},       // Authenticated Users: SYNCHRONIZE only
		{true, "S-1-5-32-545", 0x1200a9},   // Users: read and execute
		{false, "S-1-1-0", 0x1f01ff},       // Everyone denied
		{true, "S-1-5-4", 0x80000000},      // Interactive: GENERIC_READ
		{true, "S-1-5-21-1-2-3-1001", 0x1}, // one named user: not broad
	}
	if got, want := BroadReaders(aces), []string{"Users", "Interactive"}; !slices.Equal(got, want) {
		t.Fatalf("BroadReaders = %v, want %v", got, want)
	}
}

func TestWindowsSDDLGrantsOnlySystemAndAdministrators(t *testing.T) {
	// Protected ("P"), inherited by files and folders (OICI), full control
	// (FA) for SY and BA, nothing else; owner Administrators.
	if WindowsSDDL != "O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)" {
		t.Fatalf("WindowsSDDL changed: %s (update docs/extension-service.md and this test)", WindowsSDDL)
	}
}
