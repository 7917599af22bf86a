package compliance

import (
	"reflect"
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

func claimant(id, reported, override string, revoked bool) store.Host {
	h := store.Host{ID: id, EntraDeviceID: reported, EntraDeviceIDOverride: override}
	if revoked {
		at := t0
		h.RevokedAt = &at
	}
	return h
}

func TestResolveDevice(t *testing.T) {
	const d = "dev-1"
	for _, c := range []struct {
		name   string
		host   store.Host
		others []store.Host
		want   DeviceClaim
	}{
		{"no device", claimant("a", "", "", false), nil, DeviceClaim{}},
		{"alone", claimant("a", d, "", false), []store.Host{claimant("a", d, "", false)}, DeviceClaim{DeviceID: d, State: ClaimOwner}},
		{"two reports conflict", claimant("a", d, "", false), []store.Host{claimant("b", d, "", false)},
			DeviceClaim{DeviceID: d, State: ClaimConflict, Others: []string{"b"}}},
		{"revoked claimant blocks", claimant("n", d, "", false), []store.Host{claimant("old", d, "", true)},
			DeviceClaim{DeviceID: d, State: ClaimRevoked, Others: []string{"old"}}},
		{"revoked beats conflict", claimant("n", d, "", false), []store.Host{claimant("old", d, "", true), claimant("b", d, "", false)},
			DeviceClaim{DeviceID: d, State: ClaimRevoked, Others: []string{"b", "old"}}},
		{"override owns over reports", claimant("a", "", d, false), []store.Host{claimant("b", d, "", false), claimant("old", d, "", true)},
			DeviceClaim{DeviceID: d, State: ClaimOwner, Others: []string{"b", "old"}}},
		{"report displaced by another's override", claimant("b", d, "", false), []store.Host{claimant("a", "x", d, false)},
			DeviceClaim{DeviceID: d, State: ClaimDisplaced, Others: []string{"a"}}},
		{"revoked host displaced by another's override", claimant("old", d, "", true), []store.Host{claimant("a", "", d, false)},
			DeviceClaim{DeviceID: d, State: ClaimDisplaced, Others: []string{"a"}}},
		{"two overrides conflict", claimant("a", "", d, false), []store.Host{claimant("b", "", d, false)},
			DeviceClaim{DeviceID: d, State: ClaimConflict, Others: []string{"b"}}},
		{"revoked host itself", claimant("old", d, "", true), []store.Host{claimant("b", d, "", false)},
			DeviceClaim{DeviceID: d, State: ClaimOwner, Others: []string{"b"}}},
		{"override elsewhere: report of other device ignored", claimant("a", d, "", false), []store.Host{claimant("b", d, "other", false)},
			DeviceClaim{DeviceID: d, State: ClaimOwner}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := ResolveDevice(c.host, c.others)
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
			if got.Writes() != (c.want.DeviceID != "" && c.want.State != ClaimDisplaced) {
				t.Fatal("Writes disagrees")
			}
		})
	}
}

func TestDeviceClaimVerdicts(t *testing.T) {
	runCases(t, []tcase{
		{name: "conflict fails closed though passing", state: Noncompliant, cause: CauseDeviceConflict, desire: DesiredNoncompliant,
			mod: func(in *Input) {
				in.Policies = []store.Policy{pol("p", "high")}
				in.Results = []store.Result{res("p", store.StatusPass, t0.Add(-time.Hour))}
				in.Device = DeviceClaim{DeviceID: "d", State: ClaimConflict, Others: []string{"h2"}}
			}},
		{name: "conflict beats conditional access off", state: Noncompliant, cause: CauseDeviceConflict, desire: DesiredNoncompliant,
			mod: func(in *Input) {
				in.Settings.ConditionalAccess = false
				in.Device = DeviceClaim{DeviceID: "d", State: ClaimConflict}
			}},
		{name: "revoked device beats conditional access off", state: Noncompliant, cause: CauseDeviceRevoked, desire: DesiredNoncompliant,
			mod: func(in *Input) {
				in.Settings.ConditionalAccess = false
				in.Device = DeviceClaim{DeviceID: "d", State: ClaimRevoked}
			}},
		{name: "revoked host stays revoked", state: Noncompliant, cause: CauseRevoked, desire: DesiredNoncompliant,
			mod: func(in *Input) {
				at := t0
				in.Host.RevokedAt = &at
				in.Device = DeviceClaim{DeviceID: "d", State: ClaimConflict}
			}},
		{name: "owner decides by results", state: Compliant, cause: CauseCADisabled, desire: DesiredCompliant,
			mod: func(in *Input) {
				in.Settings.ConditionalAccess = false
				in.Device = DeviceClaim{DeviceID: "d", State: ClaimOwner}
			}},
	})
}
