package scheduler

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/extension/clock"
	"github.com/posture-dev/posture/extension/osq"
	"google.golang.org/protobuf/types/known/durationpb"
)

// fakeQ answers by exact SQL text.
type fakeQ struct {
	mu         sync.Mutex
	rows       map[string][]map[string]string
	cols       map[string][]string
	queryErr   map[string]error
	colErr     map[string]error
	block      map[string]bool // block until the context ends
	queryCalls map[string]int
	colCalls   map[string]int
}

func newFakeQ() *fakeQ {
	return &fakeQ{
		rows: map[string][]map[string]string{}, cols: map[string][]string{},
		queryErr: map[string]error{}, colErr: map[string]error{}, block: map[string]bool{},
		queryCalls: map[string]int{}, colCalls: map[string]int{},
	}
}

func (f *fakeQ) Query(ctx context.Context, sql string) ([]map[string]string, error) {
	f.mu.Lock()
	f.queryCalls[sql]++
	block, err, rows := f.block[sql], f.queryErr[sql], f.rows[sql]
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return rows, err
}

func (f *fakeQ) QueryColumns(ctx context.Context, sql string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.colCalls[sql]++
	return f.cols[sql], f.colErr[sql]
}

func (f *fakeQ) set(fn func()) { f.mu.Lock(); fn(); f.mu.Unlock() }

func (f *fakeQ) calls(m map[string]int, sql string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return m[sql]
}

type sink struct {
	results chan *posturev1.PolicyResult
	facts   chan map[string]string
}

func newSink() *sink {
	return &sink{results: make(chan *posturev1.PolicyResult, 1000), facts: make(chan map[string]string, 100)}
}

func (s *sink) Results(_ context.Context, rs []*posturev1.PolicyResult) {
	for _, r := range rs {
		s.results <- r
	}
}
func (s *sink) Facts(_ context.Context, v map[string]string) { s.facts <- v }

type harness struct {
	t    *testing.T
	q    *fakeQ
	sink *sink
	clk  *clock.Fake
	s    *Scheduler
}

func start(t *testing.T, q *fakeQ, timeout time.Duration) *harness {
	t.Helper()
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	sk := newSink()
	s := New(q, sk, Options{Clock: clk, Rand: rand.New(rand.NewPCG(1, 2)), QueryTimeout: timeout})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &harness{t: t, q: q, sink: sk, clk: clk, s: s}
}

// next advances the fake clock in steps until a result arrives (real-time
// deadline 10 s: this polls, it does not time anything).
func (h *harness) next(step time.Duration) *posturev1.PolicyResult {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case r := <-h.sink.results:
			return r
		case <-time.After(5 * time.Millisecond):
			h.clk.Advance(step)
		}
	}
	h.t.Fatal("no result before the deadline")
	return nil
}

// collect gathers results until the fake clock has moved by d.
func (h *harness) collect(d, step time.Duration) []*posturev1.PolicyResult {
	var out []*posturev1.PolicyResult
	end := h.clk.Now().Add(d)
	for h.clk.Now().Before(end) {
		select {
		case r := <-h.sink.results:
			out = append(out, r)
		case <-time.After(5 * time.Millisecond):
			h.clk.Advance(step)
		}
	}
	for {
		select {
		case r := <-h.sink.results:
			out = append(out, r)
		default:
			return out
		}
	}
}

func policySet(interval time.Duration, ps ...*posturev1.AgentPolicy) *posturev1.PolicySet {
	return &posturev1.PolicySet{Version: "v1", Policies: ps, Interval: durationpb.New(interval)}
}

func TestStatusMapping(t *testing.T) {
	q := newFakeQ()
	q.rows["pass"] = []map[string]string{{"1": "1"}}
	q.queryErr["err"] = &osq.QueryError{Code: 1, Message: "no such table: bitlocker_info"}
	q.block["slow"] = true
	h := start(t, q, 50*time.Millisecond)
	h.s.Apply(policySet(time.Hour,
		&posturev1.AgentPolicy{Id: "p-pass", Revision: 1, Query: "pass"},
		&posturev1.AgentPolicy{Id: "p-fail", Revision: 1, Query: "fail"},
		&posturev1.AgentPolicy{Id: "p-err", Revision: 2, Query: "err"},
		&posturev1.AgentPolicy{Id: "p-slow", Revision: 1, Query: "slow"},
	))
	got := map[string]*posturev1.PolicyResult{}
	for len(got) < 4 {
		r := h.next(time.Second)
		got[r.GetPolicyId()] = r
	}
	want := map[string]posturev1.ResultStatus{
		"p-pass": posturev1.ResultStatus_RESULT_STATUS_PASS,
		"p-fail": posturev1.ResultStatus_RESULT_STATUS_FAIL,
		"p-err":  posturev1.ResultStatus_RESULT_STATUS_ERROR,
		"p-slow": posturev1.ResultStatus_RESULT_STATUS_ERROR,
	}
	for id, st := range want {
		if got[id].GetStatus() != st {
			t.Errorf("%s: status %v, want %v", id, got[id].GetStatus(), st)
		}
	}
	if e := got["p-err"].GetError(); e != "no such table: bitlocker_info" {
		t.Errorf("p-err error = %q, want osquery's message", e)
	}
	if got["p-err"].GetRevision() != 2 {
		t.Errorf("revision = %d, want 2", got["p-err"].GetRevision())
	}
	if e := got["p-slow"].GetError(); !strings.Contains(e, "timed out") {
		t.Errorf("p-slow error = %q, want a timeout message", e)
	}
	if got["p-pass"].GetError() != "" || got["p-pass"].GetEvaluatedAt() == nil || got["p-pass"].GetDuration() == nil {
		t.Errorf("p-pass result incomplete: %v", got["p-pass"])
	}
}

func TestValidationErrorReportedOnce(t *testing.T) {
	q := newFakeQ()
	q.rows["good"] = []map[string]string{{"x": "1"}}
	q.colErr["bad"] = &osq.QueryError{Code: 1, Message: "no such table: alf"}
	h := start(t, q, time.Second)
	interval := 10 * time.Minute
	h.s.Apply(policySet(interval,
		&posturev1.AgentPolicy{Id: "good", Revision: 1, Query: "good"},
		&posturev1.AgentPolicy{Id: "bad", Revision: 1, Query: "bad"},
	))
	rs := h.collect(4*interval, 30*time.Second)
	count := map[string]int{}
	for _, r := range rs {
		count[r.GetPolicyId()]++
		if r.GetPolicyId() == "bad" && (r.GetStatus() != posturev1.ResultStatus_RESULT_STATUS_ERROR || r.GetError() != "no such table: alf") {
			t.Fatalf("bad policy result = %v", r)
		}
	}
	if count["bad"] != 1 {
		t.Fatalf("invalid policy reported %d times over 4 intervals, want once", count["bad"])
	}
	if count["good"] < 3 {
		t.Fatalf("good policy ran %d times over 4 intervals, want >= 3", count["good"])
	}
	if n := q.calls(q.queryCalls, "bad"); n != 0 {
		t.Fatalf("invalid policy was run %d times", n)
	}
	if n := q.calls(q.colCalls, "good"); n != 1 {
		t.Fatalf("valid policy validated %d times, want once per revision", n)
	}

	// A recheck validates again and reports again.
	h.s.Recheck([]string{"bad"}, false)
	if r := h.next(time.Second); r.GetPolicyId() != "bad" || r.GetStatus() != posturev1.ResultStatus_RESULT_STATUS_ERROR {
		t.Fatalf("after recheck got %v", r)
	}
	// A new revision that osquery accepts runs normally.
	q.set(func() { q.rows["bad-fixed"] = []map[string]string{{"x": "1"}} })
	h.s.Apply(policySet(interval,
		&posturev1.AgentPolicy{Id: "good", Revision: 1, Query: "good"},
		&posturev1.AgentPolicy{Id: "bad", Revision: 2, Query: "bad-fixed"},
	))
	for {
		r := h.next(time.Second)
		if r.GetPolicyId() == "bad" {
			if r.GetRevision() != 2 || r.GetStatus() != posturev1.ResultStatus_RESULT_STATUS_PASS {
				t.Fatalf("fixed revision result = %v", r)
			}
			break
		}
	}
	if n := q.calls(q.colCalls, "good"); n != 1 {
		t.Fatalf("unchanged policy re-validated on a new policy set (%d calls)", n)
	}
}

func TestRecheckRunsAtOnceAndSplaySpreadsRuns(t *testing.T) {
	q := newFakeQ()
	var ps []*posturev1.AgentPolicy
	for i := 0; i < 8; i++ {
		sql := fmt.Sprintf("q%d", i)
		q.rows[sql] = []map[string]string{{"x": "1"}}
		ps = append(ps, &posturev1.AgentPolicy{Id: sql, Revision: 1, Query: sql})
	}
	h := start(t, q, time.Second)
	h.s.Apply(policySet(time.Hour, ps...))
	first := map[string]time.Time{}
	for len(first) < 8 {
		r := h.next(100 * time.Millisecond)
		first[r.GetPolicyId()] = r.GetEvaluatedAt().AsTime()
	}
	distinct := map[time.Time]bool{}
	for _, at := range first {
		distinct[at] = true
	}
	if len(distinct) < 2 {
		t.Fatalf("all first runs at the same instant: %v", first)
	}
	// Nothing is due for most of an hour; a recheck runs at once without
	// advancing the clock.
	before := h.clk.Now()
	h.s.Recheck(nil, true)
	got := map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 8 && time.Now().Before(deadline) {
		select {
		case r := <-h.sink.results:
			got[r.GetPolicyId()] = true
		case <-time.After(10 * time.Millisecond):
		}
	}
	if len(got) != 8 || !h.clk.Now().Equal(before) {
		t.Fatalf("recheck ran %d of 8 policies (clock moved: %v)", len(got), !h.clk.Now().Equal(before))
	}
}

func TestUnavailableOsqueryIsRetriedWithoutAResult(t *testing.T) {
	q := newFakeQ()
	q.rows["p"] = []map[string]string{{"x": "1"}}
	q.queryErr["p"] = fmt.Errorf("%w: connection refused", osq.ErrUnavailable)
	h := start(t, q, time.Second)
	h.s.Apply(policySet(time.Hour, &posturev1.AgentPolicy{Id: "p", Revision: 1, Query: "p"}))
	deadline := time.Now().Add(10 * time.Second)
	for q.calls(q.queryCalls, "p") < 2 && time.Now().Before(deadline) {
		select {
		case r := <-h.sink.results:
			t.Fatalf("result while osquery unavailable: %v", r)
		case <-time.After(5 * time.Millisecond):
			h.clk.Advance(time.Second)
		}
	}
	q.set(func() { delete(q.queryErr, "p") })
	if r := h.next(time.Second); r.GetStatus() != posturev1.ResultStatus_RESULT_STATUS_PASS {
		t.Fatalf("after osquery came back: %v", r)
	}
}

func TestFactsFirstColumnOfFirstRow(t *testing.T) {
	q := newFakeQ()
	q.cols["dev"] = []string{"device_id", "source"}
	q.rows["dev"] = []map[string]string{{"device_id": "abc", "source": "x"}, {"device_id": "other", "source": "y"}}
	q.cols["none"] = []string{"upn"}
	q.colErr["winonly"] = &osq.QueryError{Code: 1, Message: "no such table: registry"}
	h := start(t, q, time.Second)
	h.s.Apply(&posturev1.PolicySet{Version: "v", Facts: []*posturev1.FactQuery{
		{Name: "entra_device_id", Query: "dev"},
		{Name: "user_principal_name", Query: "none"},
		{Name: "win", Query: "winonly"},
	}})
	select {
	case v := <-h.sink.facts:
		want := map[string]string{"entra_device_id": "abc", "user_principal_name": ""}
		for k, w := range want {
			if got, ok := v[k]; !ok || got != w {
				t.Fatalf("facts = %v, want %v", v, want)
			}
		}
		// A fact whose query errored is not known to be empty: absent.
		if got, ok := v["win"]; ok {
			t.Fatalf("errored fact reported as %q; want it left out", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no facts")
	}
}

// Identity facts read the extension's own table: until it is registered
// (ReleaseFacts) no fact query runs, so none can report the identity as gone.
func TestHeldFactsWaitForRelease(t *testing.T) {
	q := newFakeQ()
	q.cols["dev"] = []string{"device_id"}
	q.rows["dev"] = []map[string]string{{"device_id": "abc"}}
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	sk := newSink()
	s := New(q, sk, Options{Clock: clk, Rand: rand.New(rand.NewPCG(1, 2)), HoldFacts: true})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	s.Apply(&posturev1.PolicySet{Version: "v", Facts: []*posturev1.FactQuery{{Name: "entra_device_id", Query: "dev"}},
		Policies: []*posturev1.AgentPolicy{{Id: "p", Revision: 1, Query: "p"}}})
	// Policies still run while facts are held.
	deadline := time.Now().Add(10 * time.Second)
	for got := false; !got; {
		select {
		case <-sk.results:
			got = true
		case <-time.After(5 * time.Millisecond):
			clk.Advance(time.Second)
		}
		if time.Now().After(deadline) {
			t.Fatal("policy did not run while facts were held")
		}
	}
	if n := q.calls(q.colCalls, "dev"); n != 0 {
		t.Fatalf("fact query ran %d times before release", n)
	}
	select {
	case v := <-sk.facts:
		t.Fatalf("facts reported before release: %v", v)
	default:
	}
	s.ReleaseFacts()
	select {
	case v := <-sk.facts:
		if v["entra_device_id"] != "abc" {
			t.Fatalf("facts = %v", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no facts after release")
	}
}
