package spool

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/store"
)

// hubSim applies batches exactly as both hub store backends do
// (store.PlanRecord): newest wins, history only on a change, results not
// newer than the stored one are stale.
type hubSim struct {
	stored  map[string]store.Result
	history map[string][]store.HistoryEntry
	stale   int
}

func newHubSim() *hubSim {
	return &hubSim{stored: map[string]store.Result{}, history: map[string][]store.HistoryEntry{}}
}

func (h *hubSim) apply(t testing.TB, b *posturev1.ResultBatch) {
	t.Helper()
	revisions := map[string]int64{}
	var rs []store.Result
	for _, r := range b.GetResults() {
		st := map[posturev1.ResultStatus]string{
			posturev1.ResultStatus_RESULT_STATUS_PASS:  store.StatusPass,
			posturev1.ResultStatus_RESULT_STATUS_FAIL:  store.StatusFail,
			posturev1.ResultStatus_RESULT_STATUS_ERROR: store.StatusError,
		}[r.GetStatus()]
		rs = append(rs, store.Result{PolicyID: r.GetPolicyId(), Revision: r.GetRevision(), Status: st, EvaluatedAt: r.GetEvaluatedAt().AsTime()})
		revisions[r.GetPolicyId()] = 1
	}
	plan, err := store.PlanRecord("h", rs, revisions, h.stored)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range plan.Upsert {
		h.stored[u.PolicyID] = u
	}
	for _, e := range plan.History {
		h.history[e.PolicyID] = append(h.history[e.PolicyID], e)
	}
	h.stale += plan.Outcome.Stale
}

// deliver sends every pending batch to a fresh hub, as hublink does after
// a reconnect.
func deliver(t testing.TB, s *Spool) *hubSim {
	t.Helper()
	h := newHubSim()
	for _, b := range pending(t, s) {
		h.apply(t, b)
	}
	return h
}

// diskBytes is what the spool's batch files take: their length and the
// 4 KiB blocks they occupy at least.
func diskBytes(t testing.TB, dir string) (length, blocks int64) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), suffix) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		length += fi.Size()
		blocks += charge(int(fi.Size()))
	}
	return length, blocks
}

type outage struct {
	policies int
	runs     int
	// status of policy p at run i
	status func(p, i int) posturev1.ResultStatus
	// errText goes with ERROR results
	errText string
}

var t0 = time.Unix(1700000000, 0)

// batch is what hublink appends after run i: one result per policy.
func (o outage) batch(i int) []*posturev1.PolicyResult {
	var rs []*posturev1.PolicyResult
	for p := range o.policies {
		r := res(fmt.Sprintf("policy-%02d", p), o.status(p, i), t0.Add(time.Duration(i)*time.Minute))
		if r.GetStatus() == posturev1.ResultStatus_RESULT_STATUS_ERROR {
			r.Error = o.errText
		}
		rs = append(rs, r)
	}
	return rs
}

// A hub away for days (a run a minute), with policies that flap now and
// then: the spool stays under its cap, and once the hub is back it ends up
// with exactly the history and latest results it would have had if it had
// been up all along. Seqs only grow, across reopens too.
func TestOutageKeepsEveryTransitionWhileTheyFit(t *testing.T) {
	t.Parallel()
	rnd := rand.New(rand.NewPCG(1, 2))
	flips := map[[2]int]bool{} // (policy, run) where the status flips
	const policies, runs = 12, 1200
	for p := range policies {
		for i := range runs {
			// Policy 0 never changes; the others flip about every 40..200 runs.
			if p > 0 && rnd.IntN(40+p*15) == 0 {
				flips[[2]int{p, i}] = true
			}
		}
	}
	cur := map[int]posturev1.ResultStatus{}
	o := outage{policies: policies, runs: runs, status: func(p, i int) posturev1.ResultStatus {
		st, ok := cur[p]
		if !ok {
			st = posturev1.ResultStatus_RESULT_STATUS_PASS
		}
		if flips[[2]int{p, i}] {
			st = map[posturev1.ResultStatus]posturev1.ResultStatus{
				posturev1.ResultStatus_RESULT_STATUS_PASS:  posturev1.ResultStatus_RESULT_STATUS_FAIL,
				posturev1.ResultStatus_RESULT_STATUS_FAIL:  posturev1.ResultStatus_RESULT_STATUS_ERROR,
				posturev1.ResultStatus_RESULT_STATUS_ERROR: posturev1.ResultStatus_RESULT_STATUS_PASS,
			}[st]
		}
		cur[p] = st
		return st
	}}
	const maxBytes = 96 << 10
	opts := Options{MaxBytes: maxBytes, MaxBatchResults: 100, Logger: discard()}
	dir := t.TempDir()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	upAllAlong := newHubSim()
	var lastSeq uint64
	for i := range runs {
		if i > 0 && i%500 == 0 { // the extension restarts now and then
			if s, err = Open(dir, opts); err != nil {
				t.Fatal(err)
			}
			if s.LastSeq() != lastSeq {
				t.Fatalf("reopened at seq %d, last handed out %d", s.LastSeq(), lastSeq)
			}
		}
		b, err := s.Append(o.batch(i))
		if err != nil {
			t.Fatal(err)
		}
		upAllAlong.apply(t, b)
		if b.GetSeq() <= lastSeq {
			t.Fatalf("run %d: seq %d after %d", i, b.GetSeq(), lastSeq)
		}
		if got := s.Seqs(0); got[len(got)-1] != b.GetSeq() {
			t.Fatalf("run %d: newest pending seq %d, appended %d", i, got[len(got)-1], b.GetSeq())
		}
		lastSeq = s.LastSeq()
		length, blocks := diskBytes(t, dir)
		if blocks > maxBytes || length > maxBytes || s.Bytes() != blocks {
			t.Fatalf("run %d: spool files %d bytes (%d in blocks, spool counts %d), cap %d", i, length, blocks, s.Bytes(), maxBytes)
		}
	}
	if len(flips) < 100 {
		t.Fatalf("only %d flips: the test does not exercise transitions", len(flips))
	}
	batches := pending(t, s)
	for _, b := range batches {
		if n := len(b.GetResults()); n > 100 {
			t.Fatalf("batch %d holds %d results, over MaxBatchResults", b.GetSeq(), n)
		}
	}
	if d := s.Dropped(); d.Transitions != 0 || d.Results == 0 {
		t.Fatalf("dropped = %+v, want repeats only", d)
	}
	if runs*policies < 10*len(batches) {
		t.Fatalf("%d batches pending: nothing was compacted", len(batches))
	}
	back := deliver(t, s)
	for p := range policies {
		id := fmt.Sprintf("policy-%02d", p)
		if !slices.Equal(back.history[id], upAllAlong.history[id]) {
			t.Errorf("%s: history after the outage\n%v\nwant (hub up all along)\n%v", id, back.history[id], upAllAlong.history[id])
		}
		if back.stored[id] != upAllAlong.stored[id] {
			t.Errorf("%s: latest %+v, want %+v", id, back.stored[id], upAllAlong.stored[id])
		}
	}
}

// A policy flapping on every run for days: its transitions alone exceed
// the cap. The oldest transitions go (counted, persisted), the spool stays
// under its cap, and the newest result of every policy is always there.
func TestFlappingBeyondTheCapDropsOldestTransitions(t *testing.T) {
	t.Parallel()
	const runs = 1000
	o := outage{policies: 5, runs: runs, status: func(p, i int) posturev1.ResultStatus {
		if p == 0 && i%2 == 1 { // policy-00 flaps every run
			return posturev1.ResultStatus_RESULT_STATUS_ERROR
		}
		return posturev1.ResultStatus_RESULT_STATUS_PASS
	}, errText: "query timed out after 30s: " + strings.Repeat("x", 150)}
	const maxBytes = MinMaxBytes
	opts := Options{MaxBytes: maxBytes, Logger: discard()}
	dir := t.TempDir()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range runs {
		if _, err := s.Append(o.batch(i)); err != nil {
			t.Fatal(err)
		}
		if _, blocks := diskBytes(t, dir); blocks > maxBytes {
			t.Fatalf("run %d: %d bytes on disk, cap %d", i, blocks, maxBytes)
		}
		if i%100 == 99 {
			// The newest result of every policy is always spooled.
			newest := map[string]int64{}
			for _, b := range pending(t, s) {
				for _, r := range b.GetResults() {
					newest[r.GetPolicyId()] = max(newest[r.GetPolicyId()], r.GetEvaluatedAt().GetSeconds())
				}
			}
			for p := range o.policies {
				if at := newest[fmt.Sprintf("policy-%02d", p)]; at != t0.Add(time.Duration(i)*time.Minute).Unix() {
					t.Fatalf("run %d: newest spooled result of policy-%02d is from %v", i, p, time.Unix(at, 0))
				}
			}
		}
	}
	d := s.Dropped()
	if d.Transitions == 0 || d.Results < d.Transitions {
		t.Fatalf("dropped = %+v, want transitions counted", d)
	}
	// What is left of the flapper is its newest results, contiguous: the
	// oldest transitions went first.
	var flapper []int64
	for _, b := range pending(t, s) {
		for _, r := range b.GetResults() {
			if r.GetPolicyId() == "policy-00" {
				flapper = append(flapper, r.GetEvaluatedAt().GetSeconds())
			}
		}
	}
	if len(flapper) < 100 {
		t.Fatalf("only %d results of the flapper kept under a %d-byte cap", len(flapper), maxBytes)
	}
	for k, at := range flapper {
		want := t0.Add(time.Duration(runs-len(flapper)+k) * time.Minute).Unix()
		if at != want {
			t.Fatalf("flapper result %d of %d kept is from %v, want %v (the newest, in order)", k, len(flapper), time.Unix(at, 0), time.Unix(want, 0))
		}
	}
	s2, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if s2.Dropped() != d {
		t.Fatalf("drop counters after reopen %+v, want %+v", s2.Dropped(), d)
	}
	back := deliver(t, s2)
	for p := range o.policies {
		id := fmt.Sprintf("policy-%02d", p)
		if got := back.stored[id].EvaluatedAt; !got.Equal(t0.Add((runs - 1) * time.Minute)) {
			t.Errorf("%s: hub's latest from %v, want the last run", id, got)
		}
	}
}

var errCrash = errors.New("simulated crash")

// A crash after the compacted batches are durable but before the old ones
// are removed loses nothing: reopened, the spool holds both, the hub ends
// up exactly where it would have, the duplicates counted stale, and the
// next compaction drops them.
func TestCompactionCrashLeavesOnlyDuplicates(t *testing.T) {
	o := outage{policies: 8, runs: 150, status: func(p, i int) posturev1.ResultStatus {
		if (i/(7+p))%2 == 1 {
			return posturev1.ResultStatus_RESULT_STATUS_FAIL
		}
		return posturev1.ResultStatus_RESULT_STATUS_PASS
	}}
	opts := Options{MaxBytes: 128 << 10, MaxBatchResults: 50, Logger: discard()}
	dir := t.TempDir()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	wantS, wantC := newHubSim(), newHubSim() // the hub up all along, per spool
	crashed := filepath.Join(t.TempDir(), "spool")
	didCrash := false
	i := 0
	for ; ; i++ {
		if i == o.runs {
			t.Fatal("never compacted")
		}
		if s.Bytes() > opts.MaxBytes-8<<10 {
			// The next append compacts: snapshot the directory at the
			// moment the new batches are durable, as a crash would leave it.
			s.beforeRemove = func() error {
				copyDir(t, dir, crashed)
				didCrash = true
				return errCrash
			}
		}
		b, err := s.Append(o.batch(i))
		if err != nil {
			t.Fatal(err)
		}
		wantS.apply(t, b)
		if didCrash {
			break // the crash copy never got this batch
		}
		wantC.apply(t, b)
	}
	c, err := Open(crashed, opts)
	if err != nil {
		t.Fatal(err)
	}
	oldN := 0
	for _, seq := range c.Seqs(0) {
		if seq <= uint64(i) { // appended batches had seqs 1..i before compacting
			oldN++
		}
	}
	if oldN == 0 || oldN == c.Depth() {
		t.Fatalf("crash copy holds %d old of %d batches: want old and new", oldN, c.Depth())
	}
	compare := func(what string, h, want *hubSim) {
		t.Helper()
		for p := range o.policies {
			id := fmt.Sprintf("policy-%02d", p)
			if !slices.Equal(h.history[id], want.history[id]) || h.stored[id] != want.stored[id] {
				t.Fatalf("%s, %s: history %v latest %+v\nwant %v %+v", what, id, h.history[id], h.stored[id], want.history[id], want.stored[id])
			}
		}
	}
	back := deliver(t, c)
	if back.stale == 0 {
		t.Fatal("no duplicates seen by the hub")
	}
	compare("crash copy delivered", back, wantC)

	// Both the crashed spool and the original (whose compaction failed)
	// keep going; later compactions clear the duplicates.
	for _, run := range []struct {
		sp   *Spool
		want *hubSim
	}{{c, wantC}, {s, wantS}} {
		run.sp.beforeRemove = nil
		for k := i + 1; k < o.runs; k++ {
			b, err := run.sp.Append(o.batch(k))
			if err != nil {
				t.Fatal(err)
			}
			run.want.apply(t, b)
			if run.sp.Bytes() > opts.MaxBytes {
				t.Fatalf("run %d: %d bytes, cap %d", k, run.sp.Bytes(), opts.MaxBytes)
			}
		}
		hub := deliver(t, run.sp)
		compare("after the crash", hub, run.want)
		if hub.stale != 0 {
			t.Fatalf("%d duplicates left after a later compaction", hub.stale)
		}
		if d := run.sp.Dropped(); d.Transitions != 0 {
			t.Fatalf("dropped %+v", d)
		}
	}
}

func copyDir(t testing.TB, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		src, err := os.Open(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.Create(filepath.Join(to, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(dst, src); err != nil {
			t.Fatal(err)
		}
		src.Close()
		if err := dst.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// A compaction that cannot write (disk full) leaves the old batches as they
// were and does not cost the new results.
func TestCompactionFailureKeepsOldBatches(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{MaxBytes: MinMaxBytes, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	o := outage{policies: 3, runs: 100, status: func(p, i int) posturev1.ResultStatus { return posturev1.ResultStatus(1 + i%2) }}
	for i := 0; s.Bytes() < MinMaxBytes-4<<10; i++ {
		if _, err := s.Append(o.batch(i)); err != nil {
			t.Fatal(err)
		}
	}
	before := pending(t, s)
	s.beforeRemove = func() error { return errCrash }
	b, err := s.Append(o.batch(50))
	if err != nil {
		t.Fatalf("append with a failing compaction: %v", err)
	}
	if b.GetSeq() <= before[len(before)-1].GetSeq() {
		t.Fatalf("seq %d not above %d", b.GetSeq(), before[len(before)-1].GetSeq())
	}
	after := pending(t, s)
	if len(after) != len(before)+1 || !slices.Equal(seqs(after[:len(before)]), seqs(before)) {
		t.Fatalf("pending %v, want %v and the new batch", seqs(after), seqs(before))
	}
}

func TestSeqsLoadAndAck(t *testing.T) {
	s, err := Open(t.TempDir(), Options{Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if _, err := s.Append([]*posturev1.PolicyResult{res("p", posturev1.ResultStatus_RESULT_STATUS_PASS, t0.Add(time.Duration(i)*time.Minute))}); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Seqs(2); !slices.Equal(got, []uint64{3, 4}) {
		t.Fatalf("Seqs(2) = %v", got)
	}
	if err := s.Ack(3); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(3); !errors.Is(err, ErrNotPending) {
		t.Fatalf("load of an acked batch: %v", err)
	}
	b, err := s.Load(4)
	if err != nil || b.GetSeq() != 4 || !b.GetResults()[0].GetEvaluatedAt().AsTime().Equal(t0.Add(3*time.Minute)) {
		t.Fatalf("load 4: %v %v", b, err)
	}
	// A batch damaged after Open is set aside when it is loaded.
	if err := os.WriteFile(filepath.Join(s.dir, fileName(4)), []byte("PSB1garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(4); !errors.Is(err, ErrNotPending) {
		t.Fatalf("load of a damaged batch: %v", err)
	}
	if got := s.Seqs(0); !slices.Equal(got, []uint64{1, 2}) || len(s.Quarantined()) != 1 {
		t.Fatalf("after the damaged load: seqs %v quarantined %v", got, s.Quarantined())
	}
}

func TestOpenRejectsATinyCap(t *testing.T) {
	_, err := Open(t.TempDir(), Options{MaxBytes: 1000})
	if err == nil || !strings.Contains(err.Error(), "minimum") {
		t.Fatalf("cap of 1000 bytes: %v", err)
	}
}
