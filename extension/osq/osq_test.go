package osq_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/posture-dev/posture/extension/osq"
	"github.com/posture-dev/posture/extension/osquerytest"
)

// shortSocket keeps the unix socket path well under the 104-byte limit.
func shortSocket(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "osq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "em.sock")
}

func startOsqueryd(t *testing.T, socket string) *osquerytest.Server {
	t.Helper()
	srv, err := osquerytest.Start(context.Background(), osquerytest.Options{Platform: "darwin", SocketPath: socket, UUID: "11111111-2222-3333-4444-555555555555"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func TestQueryRowsAndOsqueryErrors(t *testing.T) {
	sock := shortSocket(t)
	srv := startOsqueryd(t, sock)
	c := osq.New(osq.Options{Socket: sock, QueryTimeout: 5 * time.Second})
	defer c.Close()
	ctx := context.Background()
	if err := c.WaitReady(ctx, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	rows, err := c.Query(ctx, "SELECT uuid FROM system_info")
	if err != nil || len(rows) != 1 || rows[0]["uuid"] != srv.UUID() {
		t.Fatalf("rows = %v, err = %v", rows, err)
	}
	_, err = c.Query(ctx, "SELECT * FROM bitlocker_info")
	var qe *osq.QueryError
	if !errors.As(err, &qe) || qe.Message == "" {
		t.Fatalf("windows table on darwin: err = %v, want an osquery QueryError", err)
	}
	t.Logf("osquery says: %s", qe.Message)
	// A refusal is not a transport error: the connection stays usable.
	if _, err := c.Query(ctx, "SELECT 1"); err != nil {
		t.Fatalf("after a query error: %v", err)
	}
	cols, err := c.QueryColumns(ctx, "SELECT version, platform FROM os_version")
	if err != nil || len(cols) != 2 || cols[0] != "version" || cols[1] != "platform" {
		t.Fatalf("columns = %v, err = %v", cols, err)
	}
	if _, err := c.QueryColumns(ctx, "SELECT * FROM no_such_table_here"); !errors.As(err, &qe) {
		t.Fatalf("getQueryColumns on a missing table: %v", err)
	}
}

func TestTimeoutThenFreshClient(t *testing.T) {
	sock := shortSocket(t)
	srv := startOsqueryd(t, sock)
	c := osq.New(osq.Options{Socket: sock, QueryTimeout: 200 * time.Millisecond})
	defer c.Close()
	ctx := context.Background()
	if err := c.WaitReady(ctx, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	srv.SetDelay(time.Hour)
	_, err := c.Query(ctx, "SELECT 1")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow query: err = %v, want deadline exceeded", err)
	}
	srv.SetDelay(0)
	if rows, err := c.Query(ctx, "SELECT 1 AS one"); err != nil || len(rows) != 1 {
		t.Fatalf("after a timeout the client must reconnect: rows=%v err=%v", rows, err)
	}
}

func TestSurvivesOsquerydRestart(t *testing.T) {
	sock := shortSocket(t)
	srv := startOsqueryd(t, sock)
	c := osq.New(osq.Options{Socket: sock, QueryTimeout: 2 * time.Second})
	defer c.Close()
	ctx := context.Background()
	if err := c.WaitReady(ctx, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Query(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if _, err := c.Query(ctx, "SELECT 1"); !errors.Is(err, osq.ErrUnavailable) {
		t.Fatalf("osqueryd gone: err = %v, want ErrUnavailable", err)
	}
	startOsqueryd(t, sock)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.WaitReady(wctx, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Query(ctx, "SELECT 1"); err != nil {
		t.Fatalf("after osqueryd restart: %v", err)
	}
}

func TestWaitReadyGivesUp(t *testing.T) {
	c := osq.New(osq.Options{Socket: filepath.Join(t.TempDir(), "missing.sock"), QueryTimeout: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.WaitReady(ctx, 10*time.Millisecond); err == nil {
		t.Fatal("WaitReady succeeded without a socket")
	}
}

// Issue 11, point 3: a query that hangs holds one connection; other calls
// (here a ping, which the stand-in never delays) go over another one
// instead of queueing behind it until its deadline.
func TestHangingQueryDoesNotBlockOtherCalls(t *testing.T) {
	sock := shortSocket(t)
	srv := startOsqueryd(t, sock)
	c := osq.New(osq.Options{Socket: sock, QueryTimeout: time.Hour, Conns: 2})
	defer c.Close()
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv.SetDelay(time.Hour)
	qctx, cancel := context.WithCancel(context.Background())
	hung := make(chan error, 1)
	go func() { _, err := c.Query(qctx, "SELECT 1"); hung <- err }()
	defer func() { cancel(); <-hung }()
	// Ping over and over: whichever ping comes after the query took its
	// connection must still be answered.
	for i := 0; i < 50; i++ {
		pctx, pcancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := c.Ping(pctx)
		pcancel()
		if err != nil {
			t.Fatalf("ping %d while another query hangs: %v", i, err)
		}
	}
	select {
	case err := <-hung:
		t.Fatalf("hanging query returned early: %v", err)
	default:
	}
}

// A Unix socket path that starts with "//" is still a file. It used to be
// mistaken for a Windows pipe name: the missing socket was not noticed by a
// stat but polled for until the whole query timeout passed.
func TestMissingSocketWithDoubleSlashFailsAsMissing(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("a Unix path")
	}
	c := osq.New(osq.Options{Socket: "/" + filepath.Join(t.TempDir(), "missing.sock"), QueryTimeout: 50 * time.Millisecond})
	defer c.Close()
	err := c.Ping(context.Background())
	if !errors.Is(err, osq.ErrUnavailable) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Ping = %v, want ErrUnavailable wrapping a missing file", err)
	}
}
