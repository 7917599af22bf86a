package integrations

import (
	"fmt"
	"strings"

	"github.com/posture-dev/posture/hub/store"
	hubsync "github.com/posture-dev/posture/hub/sync"
)

// DeviceMismatch compares what Graph says about a host's Entra device
// (display name, operating system) with the host's own facts and says what
// disagrees ("" when nothing does, or when Graph gave nothing to compare).
// A mismatch does not prove a forgery (devices get renamed) but is what an
// admin should look at: a host speaking for a device that is not itself.
func DeviceMismatch(h store.Host, info hubsync.DeviceInfo) string {
	var out []string
	if dn := strings.TrimSpace(info.DisplayName); dn != "" && h.Hostname != "" && !sameName(dn, h.Hostname) {
		out = append(out, fmt.Sprintf("Entra names the device %q, the host calls itself %q", dn, h.Hostname))
	}
	if os := strings.TrimSpace(info.OperatingSystem); os != "" && h.Platform != "" && !samePlatform(os, h.Platform) {
		out = append(out, fmt.Sprintf("Entra says the device runs %q, the host reports %s", os, h.Platform))
	}
	return strings.Join(out, "; ")
}

// sameName compares computer names the way they drift in practice: case,
// a DNS suffix on either side, and macOS's ".local".
func sameName(a, b string) bool {
	short := func(s string) string {
		s = strings.ToLower(strings.TrimSpace(s))
		if i := strings.IndexByte(s, '.'); i > 0 {
			s = s[:i]
		}
		return s
	}
	return short(a) == short(b)
}

// samePlatform maps Entra's operatingSystem values onto osquery platforms.
func samePlatform(entraOS, platform string) bool {
	os := strings.ToLower(entraOS)
	switch strings.ToLower(platform) {
	case "darwin":
		return strings.Contains(os, "mac") || strings.Contains(os, "os x")
	case "windows":
		return strings.HasPrefix(os, "windows")
	case "linux", "ubuntu", "debian", "rhel", "centos", "fedora":
		return strings.Contains(os, "linux") || strings.Contains(os, "ubuntu") || strings.Contains(os, "red hat") ||
			strings.Contains(os, "debian") || strings.Contains(os, "fedora") || strings.Contains(os, "centos")
	}
	return true // a platform without a mapping is not called a mismatch
}
