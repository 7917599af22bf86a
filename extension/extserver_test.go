package main

import (
	"context"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"
	osquery "github.com/osquery/osquery-go"
	gen "github.com/osquery/osquery-go/gen/osquery"
	"github.com/osquery/osquery-go/transport"
	"go.uber.org/goleak"

	"github.com/posture-dev/posture/extension/osquerytest"
)

// osqueryd restarting ends the tables' server (so it registers again) and leaves no goroutine
// behind. ExtensionManagerServer.Run left the one running Start blocked on
// an unbuffered send, one per osqueryd restart (goleak found it in
// TestEndToEndWithOsquerydStandIn).
func TestRunServerLeavesNothingWhenOsquerydGoes(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	sock := shortSocket(t, "psrv")
	osqd, err := osquerytest.Start(context.Background(), osquerytest.Options{Platform: "linux", SocketPath: sock})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { osqd.Close() }() // the last one
	for round := range 2 {          // osqueryd restarts twice
		srv, err := osquery.NewExtensionManagerServer("posture", sock, osquery.ServerTimeout(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- runExtensionOn(srv, sock, 5*time.Second, 50*time.Millisecond) }()
		poll(t, "registered", func() bool { return len(osqd.Extensions()) == 1 })
		// osqueryd restarts at once: a new one answers on the same socket.
		osqd.Close()
		if osqd, err = osquerytest.Start(context.Background(), osquerytest.Options{Platform: "linux", SocketPath: sock}); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("round %d: nil after osqueryd restarted, want the ping error", round)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: the server did not notice osqueryd restart", round)
		}
	}
}

// A shutdown call from osqueryd ends runServer with nil, as Run did.
func TestRunServerShutdownCallReturnsNil(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	sock := shortSocket(t, "psrv")
	osqd, err := osquerytest.Start(context.Background(), osquerytest.Options{Platform: "linux", SocketPath: sock})
	if err != nil {
		t.Fatal(err)
	}
	defer osqd.Close()
	srv, err := osquery.NewExtensionManagerServer("posture", sock, osquery.ServerTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- runExtensionOn(srv, sock, 5*time.Second, 50*time.Millisecond) }()
	poll(t, "registered", func() bool { return len(osqd.Extensions()) == 1 })
	extSock := waitExtensionSocket(t, sock)
	// What osqueryd does when it stops: call shutdown, then hang up.
	tr, err := transport.Open(extSock, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := gen.NewExtensionClientFactory(tr, thrift.NewTBinaryProtocolFactoryDefault()).Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown call: %v", err)
	}
	tr.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("runServer = %v after a shutdown call, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("runServer did not return after a shutdown call")
	}
}
