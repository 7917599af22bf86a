package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"
	osquery "github.com/osquery/osquery-go"
	gen "github.com/osquery/osquery-go/gen/osquery"
	"github.com/osquery/osquery-go/transport"
	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/extension/clock"
	"github.com/posture-dev/posture/extension/internal/fakehub"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Issue 11, point 1: after osqueryd restarts, every policy runs again and
// reaches the hub without waiting for a fixed retry. The policy interval is
// an hour, so only the restart can cause the second round. The time from
// the restarted osqueryd listening to the hub holding every policy's new
// result is logged (measured, not asserted).
func TestBinaryOsquerydRestartRunsEveryPolicy(t *testing.T) {
	sock := shortSocket(t, "plc")
	osqd := startOsqueryd(t, sock, "darwin")

	ca := fakehub.NewCA(t, clock.Real{})
	st := fakehub.NewState()
	ids := []string{"filevault", "firewall", "sip"}
	st.PolicySet = &posturev1.PolicySet{
		Version:  "lc-1",
		Interval: durationpb.New(time.Hour),
		Policies: []*posturev1.AgentPolicy{
			{Id: ids[0], Revision: 1, Query: "SELECT 1 FROM disk_encryption WHERE encrypted = 1"},
			{Id: ids[1], Revision: 1, Query: "SELECT 1 FROM alf WHERE global_state >= 1"},
			{Id: ids[2], Revision: 1, Query: "SELECT 1 FROM sip_config WHERE config_flag = 'sip' AND enabled = 1"},
		},
	}
	hub := fakehub.Start(t, st, ca, "")
	hubAddr, caFile := hubFlags(t, hub, ca)
	startExt(t, sock, hubAddr, caFile, t.TempDir())
	allAtLeast := func(n int) func() bool {
		return func() bool {
			for _, id := range ids {
				if countResults(st, id) < n {
					return false
				}
			}
			return true
		}
	}
	poll(t, "first round of results", allAtLeast(1))

	osqd.Close()
	poll(t, "hub told osquery is down", func() bool {
		h := st.LastHealth()
		return h != nil && !h.GetOsqueryOk()
	})
	startOsqueryd(t, sock, "darwin")
	back := time.Now()
	poll(t, "every policy's result after osqueryd restarted", allAtLeast(2))
	t.Logf("osqueryd_restart_to_results_ms=%d", time.Since(back).Milliseconds())
}

// Issue 11, point 1: when osqueryd calls the extension's shutdown (over the
// extension's own socket, as osqueryd does when it stops), posture.ext
// exits at once with status 0 instead of re-registering.
func TestBinaryExitsOnShutdownCall(t *testing.T) {
	sock := shortSocket(t, "psd")
	startOsqueryd(t, sock, "darwin")
	ca := fakehub.NewCA(t, clock.Real{})
	st := fakehub.NewState()
	st.PolicySet = &posturev1.PolicySet{Version: "sd-1", Interval: durationpb.New(time.Hour)}
	hubAddr, caFile := hubFlags(t, fakehub.Start(t, st, ca, ""), ca)
	p := startExt(t, sock, hubAddr, caFile, t.TempDir())
	extSock := waitExtensionSocket(t, sock)
	tr, err := transport.Open(extSock, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cl := gen.NewExtensionClientFactory(tr, thrift.NewTBinaryProtocolFactoryDefault())
	called := time.Now()
	if err := cl.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown call: %v", err)
	}
	tr.Close() // osqueryd hangs up after the call; the server drains connections before it stops
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("posture.ext exited with %v after a shutdown call", err)
		}
		t.Logf("exited %d ms after the shutdown call", time.Since(called).Milliseconds())
	case <-time.After(20 * time.Second):
		t.Fatal("posture.ext still running 20 s after osqueryd called shutdown")
	}
}

// Issue 11, item 2: osqueryd drops the extension without telling it while
// its socket still answers pings; the extension notices through
// extensions() and registers again, so its tables answer again.
func TestBinaryReregistersWhenDroppedSilently(t *testing.T) {
	sock := shortSocket(t, "prr")
	osqd := startOsqueryd(t, sock, "darwin")
	ca := fakehub.NewCA(t, clock.Real{})
	st := fakehub.NewState()
	hub := fakehub.Start(t, st, ca, "")
	hubAddr, caFile := hubFlags(t, hub, ca)
	startExt(t, sock, hubAddr, caFile, t.TempDir())

	c, err := osquery.NewClient(sock, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	answers := func() bool {
		rows, err := c.QueryRows("SELECT * FROM posture_status")
		return err == nil && len(rows) == 1
	}
	poll(t, "posture_status answers", answers)
	first := osqd.Extensions()

	ctl := httptest.NewServer(osqd.ControlHandler())
	defer ctl.Close()
	resp, err := http.Post(ctl.URL+"/deregister?name=posture", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("deregister: %s", resp.Status)
	}
	if answers() {
		t.Fatal("posture_status still answers after the extension was dropped")
	}
	poll(t, "posture_status answers again", answers)
	again := osqd.Extensions()
	if len(again) != 1 {
		t.Fatalf("extensions after re-registration = %v", again)
	}
	for id, name := range again {
		if _, old := first[id]; old || name != "posture" {
			t.Errorf("extensions = %v, want posture under a new uuid (was %v)", again, first)
		}
	}
}
