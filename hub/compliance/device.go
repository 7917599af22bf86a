package compliance

import (
	"sort"

	"github.com/posture-dev/posture/hub/store"
)

// Device claim states (DeviceClaim.State).
const (
	// ClaimNone: the host names no Entra device (unmapped).
	ClaimNone = ""
	// ClaimOwner: the host is the one host speaking for the device.
	ClaimOwner = "owner"
	// ClaimConflict: another live host names the same device and no admin
	// has picked one. Every claimant is NONCOMPLIANT (fail closed).
	ClaimConflict = "conflict"
	// ClaimRevoked: a revoked host named the device; it stays blocked for
	// any later claimant until an admin deletes the revoked host or sets
	// the id on the new one.
	ClaimRevoked = "revoked_device"
	// ClaimDisplaced: an admin gave the device to another host; this
	// host's own report is ignored and it writes nothing to the device.
	ClaimDisplaced = "displaced"
)

// DeviceClaim says whether a host may speak for the Entra device it names.
type DeviceClaim struct {
	DeviceID string
	State    string
	// Others are the ids of the other hosts naming the device, sorted.
	Others []string
}

// Writes reports whether the host's verdict is written to its device.
func (c DeviceClaim) Writes() bool {
	return c.DeviceID != "" && c.State != ClaimDisplaced
}

// ResolveDevice decides h's claim on its effective Entra device id, given
// every host naming that id (h itself may be among them; it is skipped).
//
// An admin's override is a decision: the host holding the device by
// override owns it, and hosts that merely report it are displaced. Two
// overrides on one device are a conflict. A report is checked against the
// others: a revoked host that named the device blocks it, and another live
// host reporting it makes a conflict.
func ResolveDevice(h store.Host, claimants []store.Host) DeviceClaim {
	dev := h.EffectiveEntraDeviceID()
	if dev == "" {
		return DeviceClaim{}
	}
	c := DeviceClaim{DeviceID: dev, State: ClaimOwner}
	mine := h.EntraDeviceIDOverride != ""
	var overrides, revoked, reports []string
	for _, o := range claimants {
		if o.ID == h.ID || o.EffectiveEntraDeviceID() != dev {
			continue
		}
		c.Others = append(c.Others, o.ID)
		switch {
		case o.EntraDeviceIDOverride == dev && !o.Revoked():
			overrides = append(overrides, o.ID)
		case o.Revoked():
			revoked = append(revoked, o.ID)
		default:
			reports = append(reports, o.ID)
		}
	}
	sort.Strings(c.Others)
	switch {
	case mine && len(overrides) > 0:
		c.State = ClaimConflict
	case mine:
		// The admin picked this host.
	case len(overrides) > 0:
		c.State = ClaimDisplaced
	case h.Revoked():
		// A revoked host's own verdict is already NONCOMPLIANT.
	case len(revoked) > 0:
		c.State = ClaimRevoked
	case len(reports) > 0:
		c.State = ClaimConflict
	}
	return c
}

// Reason explains a claim that is not plain ownership ("" otherwise).
func (c DeviceClaim) Reason() string {
	switch c.State {
	case ClaimConflict:
		return "Entra device " + c.DeviceID + " is also claimed by another host; it is written non-compliant until an admin picks one (hosts set-entra-id)"
	case ClaimRevoked:
		return "Entra device " + c.DeviceID + " belonged to a revoked host; it stays non-compliant until an admin deletes the revoked host or sets the id on this one (hosts set-entra-id)"
	case ClaimDisplaced:
		return "Entra device " + c.DeviceID + " was assigned to another host by an admin; this host's report is ignored"
	}
	return ""
}
