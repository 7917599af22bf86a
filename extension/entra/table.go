package entra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/osquery/osquery-go/plugin/table"
)

// TableName is the osquery table this package serves.
const TableName = "posture_entra"

// Runner runs a command and returns its standard output.
type Runner interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// ExecRunner runs real commands.
type ExecRunner struct{}

// Run executes name with args.
func (ExecRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			return out, fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(string(ee.Stderr)))
		}
		return out, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// Lookup finds the host's Entra registrations for goos ("darwin",
// "windows"; anything else finds nothing).
func Lookup(ctx context.Context, goos string, r Runner, log *slog.Logger) ([]Row, error) {
	switch goos {
	case "darwin":
		return lookupDarwin(ctx, r, log)
	case "windows":
		out, err := r.Run(ctx, "dsregcmd", "/status")
		if err != nil {
			return nil, err
		}
		if row, ok := ParseDsregcmd(out); ok {
			return []Row{row}, nil
		}
		return nil, nil
	default:
		return nil, nil
	}
}

var findOrgAccessCert = []string{"/usr/bin/security", "find-certificate", "-a", "-c", "MS-Organization-Access", "-p"}

func lookupDarwin(ctx context.Context, r Runner, log *slog.Logger) ([]Row, error) {
	var rows []Row
	var errs []error
	seen := map[string]bool{}
	add := func(rs ...Row) {
		for _, row := range rs {
			if key := row.Source + "/" + row.DeviceID; !seen[key] {
				seen[key] = true
				rows = append(rows, row)
			}
		}
	}
	// Platform SSO state and the login keychain belong to the console user.
	user, uid, err := consoleUser(ctx, r)
	if err != nil {
		log.Debug("posture_entra: no console user", "err", err)
	}
	asUser := func(cmd ...string) ([]byte, error) {
		return r.Run(ctx, "launchctl", append([]string{"asuser", uid, "sudo", "-u", user}, cmd...)...)
	}
	if user != "" {
		// app-sso is missing before macOS 13 and fails where platform SSO
		// was never configured: that is "not registered", not an error.
		if out, err := asUser("/usr/bin/app-sso", "platform", "--state"); err != nil {
			log.Debug("posture_entra: app-sso", "err", err)
		} else if row, ok, err := ParseAppSSOState(out); err != nil {
			errs = append(errs, err)
		} else if ok {
			add(row)
		}
	}
	// Workplace join: the system keychain (we run as root), then the
	// user's login keychain. security exits non-zero when nothing matches.
	keychains := []func() ([]byte, error){func() ([]byte, error) { return r.Run(ctx, findOrgAccessCert[0], findOrgAccessCert[1:]...) }}
	if user != "" {
		keychains = append(keychains, func() ([]byte, error) { return asUser(findOrgAccessCert...) })
	}
	for _, search := range keychains {
		out, err := search()
		if err != nil {
			log.Debug("posture_entra: keychain search", "err", err)
			continue
		}
		found, err := ParseOrgAccessPEM(out)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		add(found...)
	}
	if len(rows) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, e := range errs {
		log.Debug("posture_entra: source failed", "err", e)
	}
	return rows, nil
}

// consoleUser returns the user logged in at the console and their uid.
func consoleUser(ctx context.Context, r Runner) (string, string, error) {
	out, err := r.Run(ctx, "/usr/bin/stat", "-f", "%Su %u", "/dev/console")
	if err != nil {
		return "", "", err
	}
	f := strings.Fields(string(out))
	if len(f) != 2 || f[0] == "root" || f[0] == "loginwindow" || f[0] == "_mbsetupuser" {
		return "", "", fmt.Errorf("no user at the console (%q)", strings.TrimSpace(string(out)))
	}
	return f[0], f[1], nil
}

// NewTable returns the osquery table plugin. goos is normally runtime.GOOS.
func NewTable(r Runner, goos string, log *slog.Logger) *table.Plugin {
	if goos == "" {
		goos = runtime.GOOS
	}
	cols := []table.ColumnDefinition{
		table.TextColumn("device_id"),
		table.TextColumn("user_principal_name"),
		table.TextColumn("tenant_id"),
		table.TextColumn("source"),
	}
	return table.NewPlugin(TableName, cols, func(ctx context.Context, _ table.QueryContext) ([]map[string]string, error) {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		rows, err := Lookup(ctx, goos, r, log)
		if err != nil {
			return nil, err
		}
		out := make([]map[string]string, 0, len(rows))
		for _, row := range rows {
			out = append(out, map[string]string{
				"device_id":           row.DeviceID,
				"user_principal_name": row.UserPrincipalName,
				"tenant_id":           row.TenantID,
				"source":              row.Source,
			})
		}
		return out, nil
	}, table.WithDescription("Entra ID device registrations of this host (platform SSO, workplace join, dsregcmd)."))
}
