package spool

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// fillSpool writes enveloped batches of 100 realistic results straight
// into dir until they hold at least total bytes, as a hub outage of days
// would leave them. It returns the number of files.
func fillSpool(tb testing.TB, dir string, total int64) int {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	t0 := time.Unix(1700000000, 0)
	var written int64
	seq := uint64(0)
	for written < total {
		seq++
		b := &posturev1.ResultBatch{Seq: seq}
		for p := range 100 {
			r := &posturev1.PolicyResult{
				PolicyId:    fmt.Sprintf("macos-policy-%03d-setting-enforced", p),
				Revision:    3,
				Status:      posturev1.ResultStatus(1 + (int(seq)+p)%3),
				EvaluatedAt: timestamppb.New(t0.Add(time.Duration(seq) * time.Minute)),
				Duration:    durationpb.New(time.Duration(p+1) * time.Millisecond),
			}
			if r.Status == posturev1.ResultStatus_RESULT_STATUS_ERROR {
				r.Error = "no such table: managed_policies"
			}
			b.Results = append(b.Results, r)
		}
		data, err := encode(b)
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fileName(seq)), data, 0o600); err != nil {
			tb.Fatal(err)
		}
		written += int64(len(data))
	}
	return int(seq)
}

// rssMiB reads the resident set from /proc (Linux); 0 elsewhere.
func rssMiB() float64 { return procStatusMiB("VmRSS:") }

// peakRSSMiB is the process's peak resident set (Linux); 0 elsewhere.
func peakRSSMiB() float64 { return procStatusMiB("VmHWM:") }

func procStatusMiB(field string) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkOpenFullSpool reports the heap the spool holds once a spool
// filled to 64 MiB (a hub away for days) is open: what it keeps resident
// for as long as the outage lasts.
//
//	go test -run '^$' -bench OpenFullSpool -benchtime 1x ./extension/spool/
func BenchmarkOpenFullSpool(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "spool")
	files := fillSpool(b, dir, 64<<20)
	b.ResetTimer()
	var s *Spool
	for range b.N {
		var err error
		s, err = Open(dir, Options{MaxBytes: 64 << 20, Logger: discard()})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-inuse-MiB")
	b.ReportMetric(rssMiB(), "rss-MiB")
	b.ReportMetric(float64(files), "files")
	runtime.KeepAlive(s)
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// BenchmarkCompactFullSpool times the compaction of a spool filled to its
// 64 MiB cap in the worst case (every result a status transition, so the
// oldest are dropped down to 3/4 of the cap) and reports the process's
// peak resident set, which compaction must not grow with the spool.
//
//	go test -run '^$' -bench CompactFullSpool -benchtime 1x ./extension/spool/
func BenchmarkCompactFullSpool(b *testing.B) {
	for range b.N {
		b.StopTimer()
		dir := filepath.Join(b.TempDir(), "spool")
		fillSpool(b, dir, 64<<20)
		s, err := Open(dir, Options{MaxBytes: 64 << 20, Logger: discard()})
		if err != nil {
			b.Fatal(err)
		}
		debug.FreeOSMemory()
		b.StartTimer()
		if _, err := s.Append([]*posturev1.PolicyResult{{PolicyId: "p", Revision: 1, Status: 1, EvaluatedAt: timestamppb.Now()}}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if s.Dropped().Transitions == 0 || s.Bytes() > 64<<20 {
			b.Fatalf("not compacted: %+v, %d bytes", s.Dropped(), s.Bytes())
		}
		b.ReportMetric(float64(s.Depth()), "batches-after")
	}
	b.ReportMetric(peakRSSMiB(), "peak-rss-MiB")
}
