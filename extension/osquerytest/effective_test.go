package osquerytest

import (
	"context"
	"testing"
	"time"
)

// effectiveCase is a host state built from the healthy stand-in by a few
// statements, and what each named shipped policy must say about it.
type effectiveCase struct {
	name  string
	setup []string
	want  map[string]bool // policy id → PASS?
}

// noProfile removes every MDM profile setting from the healthy Mac: what is
// left is what the owner set by hand in System Settings (and pwpolicy).
const noProfile = "DELETE FROM managed_policies"

const (
	suPlist = "/Library/Preferences/com.apple.SoftwareUpdate.plist"
	lwPlist = "/Library/Preferences/com.apple.loginwindow.plist"
)

var effectiveCases = map[string][]effectiveCase{
	"darwin": {
		{
			name:  "owner set it by hand, no MDM profile",
			setup: []string{noProfile},
			want: map[string]bool{
				"macos-guest-account-off":  true,
				"macos-auto-updates":       true,
				"macos-security-responses": true,
				"macos-password-policy":    true,
				"macos-auto-login-off":     true,
			},
		},
		{
			name: "owner set it by hand, plist booleans written as true",
			setup: []string{noProfile,
				"UPDATE plist SET value = 'true' WHERE path = '" + suPlist + "' AND value = '1'",
				"UPDATE plist SET value = 'false' WHERE key = 'GuestEnabled'"},
			want: map[string]bool{"macos-auto-updates": true, "macos-security-responses": true, "macos-guest-account-off": true},
		},
		{
			name: "no profile, settings never touched (macOS defaults)",
			setup: []string{noProfile,
				"DELETE FROM plist WHERE path = '" + suPlist + "'",
				"DELETE FROM plist WHERE key = 'GuestEnabled'"},
			want: map[string]bool{
				"macos-security-responses": true,  // on by default
				"macos-auto-updates":       false, // installing macOS updates is off by default
				"macos-guest-account-off":  true,  // guest is off by default
			},
		},
		{
			name: "no profile, owner turned things off",
			setup: []string{noProfile,
				"UPDATE plist SET value = '0' WHERE key IN ('AutomaticallyInstallMacOSUpdates', 'ConfigDataInstall')",
				"UPDATE plist SET value = '1' WHERE key = 'GuestEnabled'",
				"INSERT INTO plist (key, subkey, value, path) VALUES ('autoLoginUser', '', 'alex', '" + lwPlist + "')",
				"UPDATE password_policy SET policy_content = 'policyAttributePassword matches ''.{8,}+''' WHERE policy_identifier = 'com.apple.policy.legacy.minChars'"},
			want: map[string]bool{
				"macos-auto-updates":       false,
				"macos-security-responses": false,
				"macos-guest-account-off":  false,
				"macos-auto-login-off":     false,
				"macos-password-policy":    false,
			},
		},
		{
			name: "profile wins over the file",
			setup: []string{
				"UPDATE managed_policies SET value = '0' WHERE name IN ('AutomaticallyInstallMacOSUpdates', 'CriticalUpdateInstall')",
				"UPDATE plist SET value = '1' WHERE key = 'GuestEnabled'",
				"INSERT INTO plist (key, subkey, value, path) VALUES ('autoLoginUser', '', 'alex', '" + lwPlist + "')",
				"UPDATE password_policy SET policy_content = 'policyAttributePassword matches ''.{4,}+''' WHERE policy_identifier = 'com.apple.policy.legacy.minChars'"},
			want: map[string]bool{
				"macos-auto-updates":       false, // file says on, profile says off
				"macos-security-responses": false,
				"macos-guest-account-off":  true, // profile disables guest whatever the file says
				"macos-auto-login-off":     true, // profile disables auto login
				"macos-password-policy":    true, // the profile's 12 still applies
			},
		},
		{
			name: "two profiles disagree: off wins",
			setup: []string{
				"INSERT INTO managed_policies VALUES ('com.apple.SoftwareUpdate', 'D4E5F6A7-0000-4B8C-9D0E-1F2A3B4C5D6E', 'ConfigDataInstall', 'false', '', 0)"},
			want: map[string]bool{"macos-security-responses": false},
		},
		{
			name: "profile minimum below 12, pwpolicy 14",
			setup: []string{
				"UPDATE managed_policies SET value = '8' WHERE name = 'minLength'",
				"UPDATE password_policy SET policy_content = 'policyAttributePassword matches ''.{14,}+''' WHERE policy_identifier = 'com.apple.policy.legacy.minChars'"},
			want: map[string]bool{"macos-password-policy": true},
		},
	},
	"windows": {
		{
			name: "policy value wins over a local 'off'",
			setup: []string{
				`UPDATE registry SET data = '0' WHERE key = 'HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Control\Terminal Server' AND name = 'fDenyTSConnections'`,
				`UPDATE registry SET data = '0' WHERE key LIKE 'HKEY_LOCAL_MACHINE\SYSTEM\%\FirewallPolicy\PublicProfile' AND name = 'EnableFirewall'`},
			want: map[string]bool{"windows-rdp-off": true, "windows-firewall-all-profiles": true},
		},
		{
			name: "policy 'off' wins over a local 'on'",
			setup: []string{
				`UPDATE registry SET data = '0' WHERE key LIKE 'HKEY_LOCAL_MACHINE\SOFTWARE\Policies\%' AND name IN ('fDenyTSConnections', 'UserAuthentication', 'EnableFirewall')`},
			want: map[string]bool{"windows-rdp-off": false, "windows-rdp-nla": false, "windows-firewall-all-profiles": false},
		},
		{
			name:  "no policy: the owner's local settings count",
			setup: []string{`DELETE FROM registry WHERE key LIKE 'HKEY_LOCAL_MACHINE\SOFTWARE\Policies\%'`},
			want:  map[string]bool{"windows-rdp-off": true, "windows-rdp-nla": true, "windows-firewall-all-profiles": true},
		},
		{
			name: "no policy, owner turned them off",
			setup: []string{`DELETE FROM registry WHERE key LIKE 'HKEY_LOCAL_MACHINE\SOFTWARE\Policies\%'`,
				`UPDATE registry SET data = '0' WHERE name IN ('fDenyTSConnections', 'UserAuthentication')`,
				`UPDATE registry SET data = '0' WHERE key LIKE '%\StandardProfile' AND name = 'EnableFirewall'`},
			want: map[string]bool{"windows-rdp-off": false, "windows-rdp-nla": false, "windows-firewall-all-profiles": false},
		},
	},
	"linux": {
		{
			name: "a drop-in is read before sshd_config",
			setup: []string{
				"UPDATE augeas SET value = 'yes' WHERE path = '/etc/ssh/sshd_config' AND label = 'PasswordAuthentication'",
				"INSERT INTO augeas VALUES ('/files/etc/ssh/sshd_config.d/10-hardening.conf/PermitRootLogin', 'yes', 'PermitRootLogin', '/etc/ssh/sshd_config.d/10-hardening.conf')"},
			want: map[string]bool{"linux-ssh-password-auth-off": true, "linux-ssh-root-login-off": false},
		},
		{
			name: "drop-ins in file-name order, keywords in any case, Match blocks skipped",
			setup: []string{
				"UPDATE augeas SET value = 'yes' WHERE label = 'PasswordAuthentication'",
				"INSERT INTO augeas VALUES ('/files/etc/ssh/sshd_config.d/05-site.conf/passwordauthentication', 'No', 'passwordauthentication', '/etc/ssh/sshd_config.d/05-site.conf')",
				"INSERT INTO augeas VALUES ('/files/etc/ssh/sshd_config/Match/Settings/PermitRootLogin', 'yes', 'PermitRootLogin', '/etc/ssh/sshd_config')"},
			want: map[string]bool{"linux-ssh-password-auth-off": true, "linux-ssh-root-login-off": true},
		},
		{
			name:  "sshd's defaults do not pass",
			setup: []string{"DELETE FROM augeas WHERE label IN ('PermitRootLogin', 'PasswordAuthentication')"},
			want:  map[string]bool{"linux-ssh-password-auth-off": false, "linux-ssh-root-login-off": false},
		},
		{
			name: "a later apt.conf.d file turns unattended upgrades off",
			setup: []string{
				"INSERT INTO augeas VALUES ('/files/etc/apt/apt.conf.d/99-local/APT/Periodic/Unattended-Upgrade', '0', 'Unattended-Upgrade', '/etc/apt/apt.conf.d/99-local')"},
			want: map[string]bool{"linux-auto-updates": false},
		},
		{
			name: "an earlier apt.conf.d file is overridden",
			setup: []string{
				"INSERT INTO augeas VALUES ('/files/etc/apt/apt.conf.d/10periodic/APT/Periodic/Unattended-Upgrade', '0', 'Unattended-Upgrade', '/etc/apt/apt.conf.d/10periodic')"},
			want: map[string]bool{"linux-auto-updates": true},
		},
		{
			name: "apt.conf is read last",
			setup: []string{
				"INSERT INTO augeas VALUES ('/files/etc/apt/apt.conf/APT/Periodic/Unattended-Upgrade', '0', 'Unattended-Upgrade', '/etc/apt/apt.conf')"},
			want: map[string]bool{"linux-auto-updates": false},
		},
	},
}

// TestEffectiveState runs the shipped policies on hosts whose settings come
// from different sources: an MDM profile or the owner's own settings, a
// policy key or a local one, a drop-in or the main file. A policy must
// pass when the setting is in force, whoever set it, and fail when it is not.
func TestEffectiveState(t *testing.T) {
	all := loadPacks(t)
	for platform, cases := range effectiveCases {
		t.Run(platform, func(t *testing.T) {
			queries := map[string]string{}
			for _, p := range all[platform] {
				queries[p.ID] = p.Query
			}
			s := startServer(t, platform)
			c := newClient(t, s, 10*time.Second)
			ctx := context.Background()
			for _, tc := range cases {
				if err := s.Reset(ctx); err != nil {
					t.Fatal(err)
				}
				for _, q := range tc.setup {
					if err := s.Exec(ctx, q); err != nil {
						t.Fatalf("%s: %v", tc.name, err)
					}
				}
				for id, pass := range tc.want {
					q, ok := queries[id]
					if !ok {
						t.Errorf("%s: no shipped policy %s", tc.name, id)
						continue
					}
					rows, err := c.QueryRows(q)
					if err != nil {
						t.Errorf("%s: %s: %v", tc.name, id, err)
						continue
					}
					if got := len(rows) > 0; got != pass {
						t.Errorf("%s: %s: PASS=%v, want PASS=%v", tc.name, id, got, pass)
					}
				}
			}
		})
	}
}
