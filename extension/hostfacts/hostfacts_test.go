package hostfacts

import (
	"context"
	"strings"
	"testing"
)

type fakeQ map[string]map[string]string

func (f fakeQ) Query(_ context.Context, sql string) ([]map[string]string, error) {
	for table, row := range f {
		if strings.Contains(sql, "FROM "+table) {
			return []map[string]string{row}, nil
		}
	}
	return nil, nil
}

func TestGather(t *testing.T) {
	q := fakeQ{
		"os_version":   {"name": "macOS", "version": "14.5", "platform": "darwin", "platform_like": "darwin"},
		"system_info":  {"hostname": "mbp", "uuid": "UUID-1", "hardware_serial": "C02X", "hardware_model": "MacBookPro18,3"},
		"osquery_info": {"version": "5.12.1"},
	}
	f, err := Gather(context.Background(), q, "0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	if f.GetPlatform() != "darwin" || f.GetHardwareUuid() != "UUID-1" || f.GetOsqueryVersion() != "5.12.1" || f.GetExtensionVersion() != "0.1.0" || f.GetHostname() != "mbp" {
		t.Fatalf("facts = %v", f)
	}
}

func TestFamily(t *testing.T) {
	for in, want := range map[string]string{"darwin": "darwin", "windows": "windows", "ubuntu": "linux", "rhel": "linux", "": ""} {
		if got := Family(in, ""); got != want {
			t.Errorf("Family(%q) = %q, want %q", in, got, want)
		}
	}
}
