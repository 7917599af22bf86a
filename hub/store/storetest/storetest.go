// Package storetest is the conformance suite every hub/store backend must
// pass. A backend's test calls Run with a function that opens a fresh, empty
// store (and closes it in t.Cleanup); BenchmarkRecordResults measures the
// hot path the same way for every backend.
//
//	go test ./hub/store/...                        # SQLite, and PostgreSQL from a throw-away server
//	POSTURE_TEST_DATABASE_URL=postgres://... go test ./hub/store/postgres/
//	go test -bench . -run XXX ./hub/store/...
//
// Adding a method to a store interface means adding its tests here, so both
// backends are held to one behaviour.
package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

// Opener opens a fresh, empty store for one test and registers its Close
// with t.Cleanup.
type Opener func(t *testing.T) store.Store

type suiteTest struct {
	name string
	fn   func(t *testing.T, s store.Store)
}

// Run runs every conformance test against stores from open, in parallel
// (each on its own store).
func Run(t *testing.T, open Opener) {
	var tests []suiteTest
	tests = append(tests, hostTests...)
	tests = append(tests, policyTests...)
	tests = append(tests, resultTests...)
	tests = append(tests, secretTests...)
	tests = append(tests, concurrencyTests...)
	tests = append(tests, syncTests...)
	tests = append(tests, reportingTests...)
	tests = append(tests, auditTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // every test has its own store
			s := open(t)
			tc.fn(t, s)
		})
	}
}

// t0 has nanoseconds on purpose: stores keep microseconds.
var t0 = time.Date(2026, 11, 2, 9, 30, 0, 123456789, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func micro(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func hash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func ctx(t *testing.T) context.Context { return t.Context() }

// must(s.Call(...))(t) fails t when the call failed and returns its value.
func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return v
	}
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
}

func eq[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got  %+v\n want %+v", what, got, want)
	}
}

func utcTime(t *testing.T, what string, v time.Time) {
	t.Helper()
	if v.Location() != time.UTC {
		t.Fatalf("%s returned in %v, want UTC", what, v.Location())
	}
}

// enroll creates a host with a unique hardware uuid.
func enroll(t *testing.T, s store.Store, name, team string) store.Host {
	t.Helper()
	return must(s.EnrollHost(ctx(t), store.Host{
		Team: team, Hostname: name, Platform: "darwin", HardwareUUID: "hw-" + name,
		EnrolledAt: t0,
	}))(t)
}

// pol is a valid policy.
func pol(id, query string) store.Policy {
	return store.Policy{ID: id, Name: "Policy " + id, Query: query, Severity: "high",
		Platforms: []string{"darwin"}}
}

func apply(t *testing.T, s store.Store, req store.ApplyRequest) []store.PolicyChange {
	t.Helper()
	if req.At.IsZero() {
		req.At = t0
	}
	return must(s.ApplyPolicies(ctx(t), req))(t)
}

func res(policy string, rev int64, status string, evaluated time.Time) store.Result {
	r := store.Result{PolicyID: policy, Revision: rev, Status: status, EvaluatedAt: evaluated,
		Duration: 1500 * time.Microsecond}
	if status == store.StatusError {
		r.Error = "no such table: " + policy
	}
	return r
}

func record(t *testing.T, s store.Store, host string, rs ...store.Result) store.RecordOutcome {
	t.Helper()
	return must(s.RecordResults(ctx(t), host, rs, t0))(t)
}

// counts returns the maintained counts as a map.
func counts(t *testing.T, s store.Store) map[string]store.PolicyCounts {
	t.Helper()
	m := map[string]store.PolicyCounts{}
	for _, c := range must(s.PolicyCounts(ctx(t)))(t) {
		m[c.PolicyID] = c
	}
	return m
}

// checkCounts compares the maintained counts with counts computed from the
// latest results of every host.
func checkCounts(t *testing.T, s store.Store) {
	t.Helper()
	want := map[string]store.PolicyCounts{}
	for _, p := range must(s.ListPolicies(ctx(t)))(t) {
		want[p.ID] = store.PolicyCounts{PolicyID: p.ID}
	}
	for _, h := range must(s.ListHosts(ctx(t), store.HostFilter{}))(t) {
		for _, r := range must(s.LatestResults(ctx(t), h.ID))(t) {
			c := want[r.PolicyID]
			switch r.Status {
			case store.StatusPass:
				c.Passing++
			case store.StatusFail:
				c.Failing++
			case store.StatusError:
				c.Errors++
			}
			want[r.PolicyID] = c
		}
	}
	eq(t, "policy counts vs latest results", counts(t, s), want)
}

func pc(id string, pass, fail, errs int) store.PolicyCounts {
	return store.PolicyCounts{PolicyID: id, Passing: pass, Failing: fail, Errors: errs}
}

func version(t *testing.T, s store.Store) string {
	t.Helper()
	v := must(s.PolicySetVersion(ctx(t)))(t)
	if v == "" {
		t.Fatal("empty policy set version")
	}
	return v
}

func name(prefix string, i int) string { return fmt.Sprintf("%s-%02d", prefix, i) }
