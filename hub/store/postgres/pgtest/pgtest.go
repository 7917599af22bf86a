// Package pgtest gives tests a throw-away PostgreSQL database.
//
// With POSTURE_TEST_DATABASE_URL set (a postgres:// URL of a role that may
// create databases), every URL call creates a uniquely named database on that
// server and drops it at cleanup. Otherwise the first call starts a private
// server from the machine's initdb/postgres binaries in a temp dir, listening
// only on a unix socket there, with trust auth and fsync off; as root it runs
// as the postgres user, since initdb and postgres refuse root. Main stops it
// when the package's tests end.
//
// When no server can be had, tests are skipped - unless CI is set, where
// they fail: CI must really run PostgreSQL.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/lib/pq" // driver "postgres"
)

// EnvURL names the variable that points tests at an existing server.
const EnvURL = "POSTURE_TEST_DATABASE_URL"

var (
	mu       sync.Mutex
	started  bool
	adminURL string
	startErr error
	srv      *server
)

// Main runs the package's tests and stops the throw-away server after them.
// Use it from TestMain: func TestMain(m *testing.M) { pgtest.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// Stop stops the throw-away server, if one was started. Safe to call twice.
func Stop() {
	mu.Lock()
	defer mu.Unlock()
	if srv != nil {
		srv.stop()
		srv = nil
	}
}

// URL returns the URL of a fresh, empty database, dropped when t ends.
func URL(t testing.TB) string {
	t.Helper()
	admin, err := server1()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("pgtest: no PostgreSQL (CI is set, so this fails instead of skipping): %v", err)
		}
		t.Skipf("pgtest: no PostgreSQL: %v", err)
	}
	name := "posture_test_" + randHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sql.Open("postgres", admin)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE DATABASE `+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db, err := sql.Open("postgres", admin)
		if err != nil {
			t.Errorf("pgtest: %v", err)
			return
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	u, err := withDatabase(admin, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return u
}

func server1() (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if started {
		return adminURL, startErr
	}
	started = true
	if u := os.Getenv(EnvURL); u != "" {
		adminURL, startErr = u, ping(u, 10*time.Second)
		if startErr != nil {
			startErr = fmt.Errorf("%s: %w", EnvURL, startErr)
		}
		return adminURL, startErr
	}
	srv, startErr = start()
	if startErr == nil {
		adminURL = srv.url
	}
	return adminURL, startErr
}

// withDatabase returns admin with its database replaced by name.
func withDatabase(admin, name string) (string, error) {
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("%s must be a postgres:// URL, got %q", EnvURL, admin)
	}
	u.Path = "/" + name
	return u.String(), nil
}

func ping(u string, within time.Duration) error {
	db, err := sql.Open("postgres", u)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	return db.PingContext(ctx)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

type server struct {
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	url  string
	log  string
}

// BinDir finds the directory holding initdb and postgres: pg_config's
// bindir, else the newest /usr/lib/postgresql/*/bin.
func BinDir() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		d := strings.TrimSpace(string(out))
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", errors.New("no initdb/postgres found (pg_config --bindir, /usr/lib/postgresql/*/bin)")
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

func start() (*server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	// Unix socket paths are limited to ~107 bytes: keep the dir short.
	base := os.TempDir()
	if len(base) > 60 {
		base = "/tmp"
	}
	removeStale(base)
	dir, err := os.MkdirTemp(base, "posture-pg-")
	if err != nil {
		return nil, err
	}
	// owner.pid lets a later run remove this dir if we die without Stop
	// (a test timeout or SIGKILL; Pdeathsig stops the server itself).
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cred, err := credential(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &server{dir: dir, done: make(chan struct{}), log: filepath.Join(dir, "postgres.log")}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-A", "trust", "-U", "postgres",
		"-E", "UTF8", "--no-locale", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w: %s", err, out)
	}
	logf, err := os.Create(s.log)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer logf.Close()
	const port = "5432" // only names the socket file inside dir
	s.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-k", dir, "-p", port,
		"-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=300", "-c", "shared_buffers=32MB")
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	// Pdeathsig: a test binary killed by a timeout takes its server along.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	s.url = (&url.URL{Scheme: "postgres", User: url.User("postgres"), Path: "/postgres",
		RawQuery: url.Values{"host": {dir}, "port": {port}, "sslmode": {"disable"}}.Encode()}).String()
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if ping(s.url, 2*time.Second) == nil {
			return s, nil
		}
		select {
		case <-s.done:
			b, _ := os.ReadFile(s.log)
			os.RemoveAll(dir)
			return nil, fmt.Errorf("postgres exited: %s", b)
		case <-deadline.C:
			s.stop()
			return nil, errors.New("postgres did not accept connections within 60s")
		case <-tick.C:
		}
	}
}

const ownerFile = "owner.pid"

// removeStale deletes server dirs of test processes that no longer exist.
// Dirs without an owner file (e.g. scripts/pg-ephemeral.sh's) are left alone.
func removeStale(base string) {
	dirs, _ := filepath.Glob(filepath.Join(base, "posture-pg-*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

// credential returns the postgres user's ids when running as root (and
// hands dir to it), nil otherwise.
func credential(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root and no postgres user to run the server as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (s *server) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		// SIGINT is PostgreSQL's fast shutdown.
		_ = s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	os.RemoveAll(s.dir)
}
