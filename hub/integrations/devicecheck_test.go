package integrations

import (
	"strings"
	"testing"

	"github.com/posture-dev/posture/hub/store"
	hubsync "github.com/posture-dev/posture/hub/sync"
)

func TestDeviceMismatch(t *testing.T) {
	mac := store.Host{Hostname: "adas-mbp.local", Platform: "darwin"}
	for _, c := range []struct {
		h    store.Host
		info hubsync.DeviceInfo
		want []string // substrings; none = no mismatch
	}{
		{mac, hubsync.DeviceInfo{DisplayName: "ADAS-MBP", OperatingSystem: "MacMDM"}, nil},
		{mac, hubsync.DeviceInfo{DisplayName: "adas-mbp.corp.example", OperatingSystem: "macOS"}, nil},
		{mac, hubsync.DeviceInfo{}, nil},
		{mac, hubsync.DeviceInfo{DisplayName: "DESKTOP-7Q2", OperatingSystem: "Windows"}, []string{`names the device "DESKTOP-7Q2"`, `runs "Windows", the host reports darwin`}},
		{store.Host{Hostname: "build-01", Platform: "linux"}, hubsync.DeviceInfo{DisplayName: "build-01", OperatingSystem: "Ubuntu"}, nil},
		{store.Host{Hostname: "pc", Platform: "windows"}, hubsync.DeviceInfo{DisplayName: "pc", OperatingSystem: "MacMDM"}, []string{"runs \"MacMDM\""}},
	} {
		got := DeviceMismatch(c.h, c.info)
		if len(c.want) == 0 && got != "" {
			t.Errorf("%+v vs %+v: mismatch %q, want none", c.h, c.info, got)
		}
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%+v vs %+v: %q lacks %q", c.h, c.info, got, w)
			}
		}
	}
}
