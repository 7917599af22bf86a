// Package hostfacts reads the facts a host is enrolled and greeted with
// from osquery's os_version, system_info and osquery_info tables.
package hostfacts

import (
	"context"
	"fmt"
	"strings"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
)

// Querier runs one osquery query.
type Querier interface {
	Query(ctx context.Context, sql string) ([]map[string]string, error)
}

// Gather queries osquery. version is posture.ext's own version.
func Gather(ctx context.Context, q Querier, version string) (*posturev1.HostFacts, error) {
	one := func(sql string) (map[string]string, error) {
		rows, err := q.Query(ctx, sql)
		if err != nil {
			return nil, fmt.Errorf("host facts: %s: %w", sql, err)
		}
		if len(rows) == 0 {
			return map[string]string{}, nil
		}
		return rows[0], nil
	}
	osv, err := one("SELECT name, version, platform, platform_like FROM os_version")
	if err != nil {
		return nil, err
	}
	si, err := one("SELECT hostname, uuid, hardware_serial, hardware_model FROM system_info")
	if err != nil {
		return nil, err
	}
	oi, err := one("SELECT version FROM osquery_info")
	if err != nil {
		return nil, err
	}
	return &posturev1.HostFacts{
		Hostname:         si["hostname"],
		Platform:         Family(osv["platform"], osv["platform_like"]),
		OsPlatform:       osv["platform"],
		OsName:           osv["name"],
		OsVersion:        osv["version"],
		OsqueryVersion:   oi["version"],
		HardwareSerial:   si["hardware_serial"],
		HardwareUuid:     si["uuid"],
		HardwareModel:    si["hardware_model"],
		ExtensionVersion: version,
	}, nil
}

// Family maps os_version.platform (darwin, windows, ubuntu, rhel, ...) to
// the policy platform family: darwin, windows or linux.
func Family(platform, platformLike string) string {
	p := strings.ToLower(platform)
	switch {
	case p == "darwin":
		return "darwin"
	case p == "windows":
		return "windows"
	case p == "":
		return ""
	default:
		// Every other os_version.platform osquery reports is a Linux
		// distribution (ubuntu, debian, rhel, centos, amzn, arch, ...).
		_ = platformLike
		return "linux"
	}
}
