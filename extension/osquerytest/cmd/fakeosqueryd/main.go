// Command fakeosqueryd is a stand-in for osqueryd: it serves osquery's Thrift
// extension-manager API on a unix socket from per-platform fixture tables, for
// demos, end-to-end tests and load generation.
//
//	fakeosqueryd --socket /tmp/oq/osquery.em --platform darwin \
//	    [--hostname H] [--uuid U] [--serial S] [--entra-device-id ID] [--upn UPN]
//	    [--fixture-sql FILE] [--control 127.0.0.1:9555] [--verbose]
//
// With --control, an HTTP API lets a script change fixtures while it runs:
//
//	curl -X POST --data "UPDATE disk_encryption SET filevault_status = 'off'" http://127.0.0.1:9555/exec
//
// The control address is a loopback host:port or a unix socket path (any
// value containing a "/"). It runs arbitrary SQL, so it never listens beyond
// loopback.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/posture-dev/posture/extension/osquerytest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr, nil)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeosqueryd:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends. ready, if not nil, receives the server once it
// is listening (for tests).
func run(ctx context.Context, args []string, stderr io.Writer, ready chan<- *osquerytest.Server) error {
	fs := flag.NewFlagSet("fakeosqueryd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", "", "unix socket to serve the extension manager on (required)")
	platform := fs.String("platform", "darwin", "fixture platform: darwin, windows or linux")
	hostname := fs.String("hostname", "", "host name fact (default depends on platform)")
	uuid := fs.String("uuid", "", "system/osquery UUID fact (default random)")
	serial := fs.String("serial", "", "hardware serial fact (default derived from the UUID)")
	deviceID := fs.String("entra-device-id", "", "Entra device id in the registration fixtures (default derived from the UUID)")
	upn := fs.String("upn", "", "user principal name in the registration fixtures")
	fixtureSQL := fs.String("fixture-sql", "", "file of extra SQL run after the platform fixtures load (and on reset)")
	control := fs.String("control", "", "serve the fixture control API on this loopback host:port or unix socket path")
	verbose := fs.Bool("verbose", false, "log every query")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if *socket == "" {
		return errors.New("--socket is required")
	}

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	var extra string
	if *fixtureSQL != "" {
		b, err := os.ReadFile(*fixtureSQL)
		if err != nil {
			return fmt.Errorf("--fixture-sql: %w", err)
		}
		extra = string(b)
	}

	ctx, stop := context.WithCancel(ctx)
	defer stop()

	srv, err := osquerytest.Start(ctx, osquerytest.Options{
		Platform:          *platform,
		SocketPath:        *socket,
		Hostname:          *hostname,
		UUID:              *uuid,
		Serial:            *serial,
		EntraDeviceID:     *deviceID,
		UserPrincipalName: *upn,
		ExtraSQL:          extra,
		Logger:            log,
	})
	if err != nil {
		return err
	}
	defer srv.Close()

	var httpSrv *http.Server
	if *control != "" {
		ln, err := listenControl(*control)
		if err != nil {
			return err
		}
		httpSrv = &http.Server{Handler: srv.ControlHandler(), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("control server failed", "err", err)
				stop()
			}
		}()
		log.Info("control API listening", "addr", ln.Addr().String())
	}
	if ready != nil {
		ready <- srv
	}
	log.Info("fakeosqueryd ready", "socket", srv.SocketPath(), "platform", srv.Platform(),
		"hostname", srv.Hostname(), "uuid", srv.UUID(), "serial", srv.Serial())

	<-ctx.Done()
	log.Info("shutting down")
	if httpSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = httpSrv.Shutdown(sctx)
		cancel()
	}
	return srv.Close()
}

func listenControl(addr string) (net.Listener, error) {
	if strings.Contains(addr, "/") {
		if fi, err := os.Lstat(addr); err == nil && fi.Mode()&os.ModeSocket != 0 {
			_ = os.Remove(addr)
		}
		ln, err := net.Listen("unix", addr)
		if err != nil {
			return nil, fmt.Errorf("control listen: %w", err)
		}
		if err := os.Chmod(addr, 0o600); err != nil {
			ln.Close()
			return nil, fmt.Errorf("control socket: %w", err)
		}
		return ln, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--control %q: %w", addr, err)
	}
	if host != "localhost" {
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("--control %q: only loopback addresses are allowed (it runs arbitrary SQL)", addr)
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("control listen: %w", err)
	}
	return ln, nil
}
