package sqlrow

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/store"
	hubsync "github.com/posture-dev/posture/hub/sync"
)

func TestTimeScansBothBackends(t *testing.T) {
	want := time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)
	east := time.FixedZone("east", 3*3600)
	for name, src := range map[string]any{
		"sqlite micros":       want.UnixMicro(),
		"postgres in UTC":     want,
		"postgres other zone": want.In(east),
	} {
		var got Time
		if err := got.Scan(src); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !got.T().Equal(want) || got.T().Location() != time.UTC {
			t.Errorf("%s: got %v, want %v in UTC", name, got.T(), want)
		}
		var n NullTime
		if err := n.Scan(src); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if p := n.Ptr(); p == nil || !p.Equal(want) || p.Location() != time.UTC {
			t.Errorf("%s: null time got %v, want %v in UTC", name, p, want)
		}
	}
}

func TestTimeScanRejectsNullAndOtherTypes(t *testing.T) {
	var tm Time
	if err := tm.Scan(nil); err == nil {
		t.Error("NULL scanned into a NOT NULL time")
	}
	if err := tm.Scan("2026-01-01"); err == nil {
		t.Error("string scanned into a time")
	}
	n := NullTime{Time: time.Now(), Valid: true}
	if err := n.Scan(nil); err != nil {
		t.Fatal(err)
	}
	if n.Valid || n.Ptr() != nil || !n.Time.IsZero() {
		t.Errorf("NULL scanned as %+v", n)
	}
	if err := n.Scan(3.5); err == nil {
		t.Error("float scanned into a null time")
	}
}

func TestDialectsBindTimes(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.FixedZone("x", -7200))
	stored := store.StoredTime(at)
	if got := SQLite.Time(at); got != stored.UnixMicro() {
		t.Errorf("micros: %v, want %v", got, stored.UnixMicro())
	}
	if got := FromUnixMicro(UnixMicro(at)); !got.Equal(stored) || got.Location() != time.UTC {
		t.Errorf("micros round trip: %v, want %v", got, stored)
	}
	// PostgreSQL gets what it is given: callers pass stored times.
	if got := Postgres.Time(at); got != any(at) {
		t.Errorf("timestamptz: %v, want %v", got, at)
	}
	for _, d := range []Dialect{SQLite, Postgres} {
		if v := d.NullTime(time.Time{}); v != nil {
			t.Errorf("zero time bound as %v, want NULL", v)
		}
		if v := d.TimePtr(nil); v != nil {
			t.Errorf("nil time bound as %v, want NULL", v)
		}
		if v, want := d.NullTime(at), d.Time(stored); v != want {
			t.Errorf("null time %v, want %v", v, want)
		}
		if v, want := d.TimePtr(&stored), d.Time(stored); v != want {
			t.Errorf("time pointer %v, want %v", v, want)
		}
	}
}

func TestIntegrationArgsMatchColumns(t *testing.T) {
	in := store.Integration{ID: "i", Teams: nil}
	args, err := IntegrationArgs(in, SQLite)
	if err != nil {
		t.Fatal(err)
	}
	if n := countCols(IntegrationCols); len(args) != n {
		t.Fatalf("%d args for %d columns", len(args), n)
	}
	if args[17] != "[]" || args[12] != nil || args[20] != nil {
		t.Errorf("teams %v, secret expiry %v, health checked %v", args[17], args[12], args[20])
	}
	for name, c := range map[string]struct {
		cols string
		n    int
	}{
		"policy":             {PolicyCols, len(must(PolicyArgs(store.Policy{}, SQLite)))},
		"integration insert": {IntegrationCols, strings.Count(InsertIntegration, "$")},
		"policy insert":      {PolicyCols, strings.Count(InsertPolicy, "$")},
		"secret insert":      {SecretCols, strings.Count(InsertSecret, "$")},
		"token insert":       {TokenCols, strings.Count(InsertToken, "$")},
		"verdict insert":     {VerdictCols, strings.Count(InsertVerdict, "$")},
		"exemption insert":   {ExemptionCols, strings.Count(InsertExemption, "$")},
		"host":               {HostCols, len(HostArgs(store.Host{}, SQLite)) + 6}, // + revoked_at, identity_at, duplicate_of, reenrolled_at, reenroll_count, user_principal_name_override
		"secret":             {SecretCols, len(SecretArgs(store.EnrollSecret{}, SQLite))},
		"token":              {TokenCols, len(TokenArgs(store.APIToken{}, SQLite))},
		"verdict":            {VerdictCols, len(VerdictArgs(store.Verdict{}, SQLite))},
		"exemption":          {ExemptionCols, len(ExemptionArgs(store.Exemption{}, SQLite))},
	} {
		if n := countCols(c.cols); c.n != n {
			t.Errorf("%s: %d args for %d columns", name, c.n, n)
		}
	}
}

func must(a []any, err error) []any {
	if err != nil {
		panic(err)
	}
	return a
}

func countCols(cols string) int {
	n := 1
	for _, r := range cols {
		if r == ',' {
			n++
		}
	}
	return n
}

func TestWorkFilesRowsUnderTheirDevice(t *testing.T) {
	until := time.Unix(100, 0).UTC()
	w := NewWork([]Claimed{{IntegrationID: "a", DeviceID: "2", Written: "Compliant"}, {IntegrationID: "a", DeviceID: "1"}}, until)
	w.Add([]Outbox{
		{ID: 1, IntegrationID: "a", DeviceID: "1"},
		{ID: 2, IntegrationID: "a", DeviceID: "2"},
		{ID: 3, IntegrationID: "a", DeviceID: "1"},
	})
	if len(w.Out) != 2 || w.Out[0].Key.DeviceID != "2" || w.Out[1].Key.DeviceID != "1" {
		t.Fatalf("claim order lost: %+v", w.Out)
	}
	if w.Out[0].LastWritten != "Compliant" || !w.Out[0].LeaseUntil.Equal(until) {
		t.Errorf("device 2: %+v", w.Out[0])
	}
	ids := func(cs []hubsync.Change) []int64 {
		var out []int64
		for _, c := range cs {
			out = append(out, c.OutboxID)
		}
		return out
	}
	if got := ids(w.Out[1].Changes); len(got) != 2 || got[0] != 1 || got[1] != 3 {
		t.Errorf("device 1 rows %v, want [1 3]", got)
	}
	if got := ids(w.Out[0].Changes); len(got) != 1 || got[0] != 2 {
		t.Errorf("device 2 rows %v, want [2]", got)
	}
}

func TestSettleHeldSkipsLostLeases(t *testing.T) {
	k1 := hubsync.DeviceKey{IntegrationID: "a", DeviceID: "1"}
	k2 := hubsync.DeviceKey{IntegrationID: "a", DeviceID: "2"}
	var settled []hubsync.DeviceKey
	lost, err := SettleHeld([]hubsync.Settlement{{Key: k1}, {Key: k2}},
		func(k hubsync.DeviceKey) (bool, error) { return k == k2, nil },
		func(st hubsync.Settlement) error { settled = append(settled, st.Key); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(settled) != 1 || settled[0] != k2 || len(lost) != 1 || lost[0] != k1 {
		t.Fatalf("settled %v, lost %v", settled, lost)
	}
	if err := LeaseLost(lost); !errors.Is(err, hubsync.ErrLeaseLost) {
		t.Errorf("lease lost error: %v", err)
	}
	if err := LeaseLost(nil); err != nil {
		t.Errorf("no device lost, got %v", err)
	}
	boom := errors.New("boom")
	if _, err := SettleHeld([]hubsync.Settlement{{Key: k1}}, func(hubsync.DeviceKey) (bool, error) { return true, nil },
		func(hubsync.Settlement) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("settle error lost: %v", err)
	}
}

func TestRowsConvert(t *testing.T) {
	at := Time(time.Unix(5, 0).UTC())
	p, err := Policy{ID: "p", Platforms: `[]`, CreatedAt: at, UpdatedAt: at, GracePeriodNS: int64(time.Hour)}.Policy()
	if err != nil {
		t.Fatal(err)
	}
	if p.Platforms != nil || p.GracePeriod != time.Hour || !p.CreatedAt.Equal(at.T()) {
		t.Errorf("policy %+v", p)
	}
	if _, err := (Policy{ID: "p", Platforms: `{`}).Policy(); err == nil {
		t.Error("bad platforms JSON accepted")
	}
	it := Outbox{State: store.SyncDead, LastError: "old", DeadReason: "gone"}.Item()
	if it.Error != "gone" {
		t.Errorf("dead item shows %q, want the dead reason", it.Error)
	}
	h := Host{ID: "h"}.Host()
	if !h.CertNotAfter.IsZero() || h.RevokedAt != nil {
		t.Errorf("host NULL times: %+v", h)
	}
}

func TestLimitMeansAllAtZeroOrBelow(t *testing.T) {
	for _, n := range []int{0, -3} {
		if got := SQLite.Limit(n); got != -1 {
			t.Errorf("sqlite limit %d: %v, want -1", n, got)
		}
		if got := Postgres.Limit(n); got != nil {
			t.Errorf("postgres limit %d: %v, want NULL", n, got)
		}
	}
	if got := Postgres.Limit(5); got != 5 {
		t.Errorf("limit 5: %v", got)
	}
}
