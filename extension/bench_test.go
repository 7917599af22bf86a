package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	osquery "github.com/osquery/osquery-go"
	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/extension/clock"
	"github.com/posture-dev/posture/extension/internal/fakehub"
	"github.com/posture-dev/posture/extension/osquerytest"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Issue 11, "make bench": the built posture.ext against the osqueryd
// stand-in and the fake hub, measured from outside the process (/proc),
// as an operator would see it. Linux only (reads /proc).

// benchEnv is one osqueryd stand-in, one fake hub and one posture.ext.
type benchEnv struct {
	sock string
	osqd *osquerytest.Server
	st   *fakehub.State
	ca   *fakehub.CA
	hub  *fakehub.Hub
	ext  *extProc
}

func startBenchEnv(b *testing.B, ps *posturev1.PolicySet) *benchEnv {
	b.Helper()
	if _, err := os.Stat("/proc/self/status"); err != nil {
		b.Skip("needs /proc")
	}
	e := &benchEnv{sock: shortSocket(b, "pbench"), ca: fakehub.NewCA(b, clock.Real{}), st: fakehub.NewState()}
	e.startOsqueryd(b)
	e.st.PolicySet = ps
	e.hub = fakehub.Start(b, e.st, e.ca, "")
	hubAddr, caFile := hubFlags(b, e.hub, e.ca)
	e.ext = startExt(b, e.sock, hubAddr, caFile, b.TempDir())
	return e
}

func (e *benchEnv) startOsqueryd(b *testing.B) {
	b.Helper()
	e.osqd = startOsqueryd(b, e.sock, "darwin")
}

// benchPolicies is n policies cycling over stand-in tables, run every
// interval.
func benchPolicies(version string, n int, interval time.Duration) *posturev1.PolicySet {
	queries := []string{
		"SELECT 1 FROM disk_encryption WHERE encrypted = 1",
		"SELECT 1 FROM alf WHERE global_state >= 1",
		"SELECT 1 FROM sip_config WHERE config_flag = 'sip' AND enabled = 1",
		"SELECT 1",
	}
	ps := &posturev1.PolicySet{Version: version, Interval: durationpb.New(interval)}
	for i := range n {
		ps.Policies = append(ps.Policies, &posturev1.AgentPolicy{
			Id: fmt.Sprintf("p%03d", i), Revision: 1, Query: queries[i%len(queries)],
		})
	}
	return ps
}

// everyPolicyAtLeast reports whether the hub holds at least n results of
// every policy in ps.
func everyPolicyAtLeast(st *fakehub.State, ps *posturev1.PolicySet, n int) func() bool {
	return func() bool {
		st.Mu.Lock()
		defer st.Mu.Unlock()
		count := map[string]int{}
		for _, r := range st.Batches {
			for _, res := range r.Batch.GetResults() {
				count[res.GetPolicyId()]++
			}
		}
		for _, p := range ps.GetPolicies() {
			if count[p.GetId()] < n {
				return false
			}
		}
		return true
	}
}

func totalResults(st *fakehub.State) int {
	st.Mu.Lock()
	defer st.Mu.Unlock()
	n := 0
	for _, r := range st.Batches {
		n += len(r.Batch.GetResults())
	}
	return n
}

// rssMiB is the process's resident set (VmRSS) in MiB.
func rssMiB(b *testing.B, pid int) float64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "12345 kB"
			kb, err := strconv.ParseFloat(f[0], 64)
			if err != nil || len(f) != 2 || f[1] != "kB" {
				b.Fatalf("VmRSS line %q", line)
			}
			return kb / 1024
		}
	}
	b.Fatal("no VmRSS in /proc status")
	return 0
}

// cpuMs is the process's user+system CPU time in ms. /proc/<pid>/stat
// counts clock ticks; USER_HZ is 100 on every Linux build Go supports.
func cpuMs(b *testing.B, pid int) float64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after "(comm)": state is field 3, utime 14, stime 15.
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc stat %q", s)
	}
	return (utime + stime) * 10
}

// BenchmarkExtensionFootprint: resident memory with a few policies (idle)
// and with 100 policies running every second (busy), CPU per policy run,
// and the size of the built binary.
func BenchmarkExtensionFootprint(b *testing.B) {
	bin, err := os.Stat(builtBinary(b))
	if err != nil {
		b.Fatal(err)
	}
	var idle, busy, cpuPerRun float64
	for range b.N {
		// Idle: three policies at a 1 s interval, measured after ten runs of
		// each (the issue saw 20 MiB after one minute at 3 s).
		ps := benchPolicies("idle", 3, time.Second)
		e := startBenchEnv(b, ps)
		poll(b, "ten runs of each idle policy", everyPolicyAtLeast(e.st, ps, 10))
		idle = rssMiB(b, e.ext.cmd.Process.Pid)
		e.ext.stop(b)

		// Busy: 100 policies every second. CPU is counted over five rounds
		// after the first three, per result the hub received.
		ps = benchPolicies("busy", 100, time.Second)
		e = startBenchEnv(b, ps)
		pid := e.ext.cmd.Process.Pid
		poll(b, "three runs of each busy policy", everyPolicyAtLeast(e.st, ps, 3))
		cpu0, runs0 := cpuMs(b, pid), totalResults(e.st)
		poll(b, "five more rounds of busy policies", func() bool { return totalResults(e.st) >= runs0+5*len(ps.Policies) })
		cpu1, runs1 := cpuMs(b, pid), totalResults(e.st)
		busy = rssMiB(b, pid)
		cpuPerRun = (cpu1 - cpu0) / float64(runs1-runs0)
		e.ext.stop(b)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(idle, "idle_rss_mb")
	b.ReportMetric(busy, "busy_rss_mb")
	b.ReportMetric(cpuPerRun, "cpu_ms/run")
	b.ReportMetric(float64(bin.Size())/(1<<20), "binary_mb")
}

// BenchmarkExtensionRecovery: the time from osqueryd coming back to every
// policy's next result at the hub, and from the hub coming back after a
// 10 s outage to the next results arriving, and from a silent drop of the
// extension to its tables answering again. The worst of b.N restarts.
func BenchmarkExtensionRecovery(b *testing.B) {
	var osqdMs, hubMs, dropMs float64

	// osqueryd: policies run hourly, so only the restart causes a new round.
	ps := benchPolicies("osqd", 3, time.Hour)
	e := startBenchEnv(b, ps)
	round := 1
	poll(b, "first round of results", everyPolicyAtLeast(e.st, ps, round))
	for range b.N {
		e.osqd.Close()
		poll(b, "hub told osquery is down", func() bool {
			h := e.st.LastHealth()
			return h != nil && !h.GetOsqueryOk()
		})
		e.startOsqueryd(b)
		back := time.Now()
		round++
		poll(b, "every policy's result after osqueryd restarted", everyPolicyAtLeast(e.st, ps, round))
		osqdMs = max(osqdMs, float64(time.Since(back).Milliseconds()))
	}
	// osqueryd forgets the extension while its socket still answers pings:
	// time until posture_status answers again (extensions() is checked
	// every --interval, 1 s here; osquery's default is 3 s).
	c, err := osquery.NewClient(e.sock, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	answers := func() bool {
		rows, err := c.QueryRows("SELECT connected FROM posture_status")
		return err == nil && len(rows) == 1
	}
	poll(b, "posture_status answers", answers)
	for range b.N {
		if err := e.osqd.Deregister(context.Background(), "posture"); err != nil {
			b.Fatal(err)
		}
		dropped := time.Now()
		poll(b, "posture_status answers after a silent drop", answers)
		dropMs = max(dropMs, float64(time.Since(dropped).Milliseconds()))
	}
	c.Close()
	e.ext.stop(b)

	// Hub: policies run every second, so results wait in the spool during
	// the outage.
	ps = benchPolicies("hub", 3, time.Second)
	e = startBenchEnv(b, ps)
	poll(b, "first round of results", everyPolicyAtLeast(e.st, ps, 1))
	c, err = osquery.NewClient(e.sock, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	status := func(col string) string {
		rows, err := c.QueryRows("SELECT " + col + " FROM posture_status")
		if err != nil || len(rows) != 1 {
			return ""
		}
		return rows[0][col]
	}
	for range b.N {
		e.hub.Stop()
		poll(b, "posture.ext sees the hub gone", func() bool { return status("connected") == "0" })
		outage := time.NewTimer(10 * time.Second)
		tick := time.NewTicker(200 * time.Millisecond)
	wait:
		for {
			select {
			case <-outage.C:
				break wait
			case <-tick.C:
				if done, err := e.ext.exited(); done {
					b.Fatalf("posture.ext exited during the hub outage: %v", err)
				}
			}
		}
		tick.Stop()
		if d, _ := strconv.Atoi(status("spool_depth")); d == 0 {
			b.Fatal("nothing spooled during a 10 s outage with 1 s policies")
		}
		before := totalResults(e.st)
		e.hub = fakehub.Start(b, e.st, e.ca, e.hub.Addr)
		back := time.Now()
		poll(b, "results after the hub came back", func() bool { return totalResults(e.st) > before })
		hubMs = max(hubMs, float64(time.Since(back).Milliseconds()))
	}
	e.ext.stop(b)

	b.ReportMetric(0, "ns/op")
	b.ReportMetric(osqdMs, "osqueryd_restart_to_results_ms")
	b.ReportMetric(hubMs, "hub_restart_to_results_ms")
	b.ReportMetric(dropMs, "silent_drop_to_table_ms")
}
