// Command posture.ext is the posture osquery extension: it runs the hub's
// SQL policies through osqueryd, spools the pass/fail results on disk and
// streams them to the hub over mutual TLS. It also serves the posture_entra
// table. osqueryd autoloads it and passes --socket, --timeout, --interval
// and --verbose; see --help for the rest.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gofrs/flock"
	osquery "github.com/osquery/osquery-go"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/extension/entra"
	"github.com/posture-dev/posture/extension/hostfacts"
	"github.com/posture-dev/posture/extension/hublink"
	"github.com/posture-dev/posture/extension/osq"
	"github.com/posture-dev/posture/extension/scheduler"
	"github.com/posture-dev/posture/extension/spool"
	"github.com/posture-dev/posture/extension/statedir"
	"github.com/posture-dev/posture/extension/status"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cfg, err := parseFlags(args, os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "posture.ext:", err)
		return 2
	}
	if cfg.showVersion {
		fmt.Println("posture.ext", version)
		return 0
	}
	base := newLogger(cfg)
	log := base.With("component", "main")
	if len(cfg.ignoredFlags) > 0 {
		log.Info("ignoring unknown arguments", "args", cfg.ignoredFlags)
	}
	if len(cfg.fromEnvironment) > 0 {
		log.Debug("flags from environment", "vars", cfg.fromEnvironment)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg, base); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("posture.ext stopped", "err", err)
		return 1
	}
	log.Info("posture.ext stopped")
	return 0
}

func newLogger(cfg *config) *slog.Logger {
	lvl := slog.LevelInfo
	if cfg.verbose {
		lvl = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if cfg.logFormat == "json" {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	return slog.New(h)
}

func serve(ctx context.Context, cfg *config, base *slog.Logger) error {
	log := base.With("component", "main")
	if err := checkSocket(runtime.GOOS, cfg.socket, !cfg.noTable); err != nil {
		return err
	}
	if cfg.hub == "" {
		return errors.New("--hub is required")
	}
	if note, err := statedir.Prepare(cfg.stateDir); err != nil {
		return err
	} else if note != "" {
		log.Warn("state dir was not private; fixed", "dir", cfg.stateDir, "fix", note)
	}
	// One instance per state directory: osqueryd may autoload a new one
	// while an old one is still draining.
	lock := flock.New(filepath.Join(cfg.stateDir, "lock"))
	if err := waitLock(ctx, lock, log); err != nil {
		return err
	}
	defer lock.Unlock()

	secret := strings.TrimSpace(cfg.enrollSecret)
	if cfg.secretPath != "" {
		b, err := os.ReadFile(cfg.secretPath)
		if err != nil {
			return fmt.Errorf("enroll secret: %w", err)
		}
		if why, err := statedir.Exposed(cfg.secretPath); err == nil && why != "" {
			log.Warn("enroll secret file is readable by other users", "path", cfg.secretPath, "why", why)
		}
		secret = strings.TrimSpace(string(b))
	}
	bootstrap, err := bootstrapTLS(cfg)
	if err != nil {
		return err
	}

	q := osq.New(osq.Options{Socket: cfg.socket, QueryTimeout: cfg.queryTimeout, Logger: base.With("component", "osquery")})
	defer q.Close()
	wctx, cancel := context.WithTimeout(ctx, time.Duration(max(cfg.timeout, 1))*time.Second)
	if err := q.WaitReady(wctx, 200*time.Millisecond); err != nil {
		// Keep going: policies run once osqueryd appears; the cached
		// identity and spool still let us talk to the hub.
		log.Warn("osquery socket not ready; continuing and retrying", "socket", cfg.socket, "err", err, "hint", socketHint(cfg))
	}
	cancel()

	sp, err := spool.Open(filepath.Join(cfg.stateDir, "spool"), spool.Options{
		MaxBytes: int64(cfg.spoolMaxBytes), Logger: base.With("component", "spool")})
	if err != nil {
		return err
	}
	var statusLink *hublink.Link // set before anything reads the tables
	st := status.New(status.Sources{
		Hub:        cfg.hub,
		SpoolDepth: sp.Depth,
		SpoolBytes: func() (int64, int64) { return sp.Bytes(), sp.MaxBytes() },
		SpoolDropped: func() (uint64, uint64) {
			d := sp.Dropped()
			return d.Results, d.Transitions
		},
		Identity: func() (string, time.Time) {
			if statusLink == nil {
				return "", time.Time{}
			}
			if id := statusLink.Identity(); id != nil {
				return id.HostID, id.Leaf.NotAfter
			}
			return "", time.Time{}
		},
	})
	cfg.tables = st.Tables() // served with posture_entra
	sink := &lateSink{}
	osqDown := make(chan struct{}, 1) // a run found osquery gone: check now
	// Facts wait for our own tables (posture_entra): a fact query that ran
	// before registration would tell the hub the identity is gone.
	sched := scheduler.New(q, sink, scheduler.Options{QueryTimeout: cfg.queryTimeout, FirstRunSplay: cfg.firstRunSplay,
		HoldFacts: !cfg.noTable, Logger: base.With("component", "scheduler"),
		OnUnavailable: func() {
			select {
			case osqDown <- struct{}{}:
			default:
			}
		}})
	link, err := hublink.New(hublink.Config{
		Hub:          cfg.hub,
		EnrollSecret: secret,
		Bootstrap:    bootstrap,
		StateDir:     cfg.stateDir,
		Spool:        sp,
		Runner:       observedRunner{sched, st},
		Observer:     st,
		HostFacts: func(ctx context.Context) (*posturev1.HostFacts, error) {
			return hostfacts.Gather(ctx, q, version)
		},
		Logger: base.With("component", "hublink"),
	})
	if err != nil {
		return err
	}
	sink.set(link)
	sink.st, statusLink = st, link // before the scheduler and the tables start

	var wg sync.WaitGroup
	ctx, cancelAll := context.WithCancelCause(ctx)
	defer cancelAll(nil)
	start := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil && !errors.Is(err, context.Canceled) {
				if !errors.Is(err, errShutdownCalled) && !errors.Is(err, errParentGone) {
					log.Error(name+" stopped", "err", err)
				}
				cancelAll(err)
			}
		}()
	}
	start("scheduler", sched.Run)
	start("hub link", link.Run)
	if !cfg.noTable {
		start("extension server", func(ctx context.Context) error {
			return serveTable(ctx, cfg, q, sched.ReleaseFacts, base.With("component", "table"))
		})
	}
	start("osquery watch", func(ctx context.Context) error {
		return watchOsquery(ctx, q, osqueryWatch{interval: time.Duration(max(cfg.interval, 1)) * time.Second,
			gone: cfg.osqueryGone, report: link.SetOsquery, back: sched.OsqueryBack, poke: osqDown}, log)
	})
	if cfg.exitWithParent {
		start("parent watch", func(ctx context.Context) error { return watchParent(ctx, log) })
	}
	log.Info("posture.ext running", "version", version, "hub", cfg.hub, "socket", cfg.socket, "state_dir", cfg.stateDir)
	<-ctx.Done()
	wg.Wait()
	// Every result is on disk before it is sent, so nothing needs flushing.
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, errOsqueryGone) && !errors.Is(err, errShutdownCalled) && !errors.Is(err, errParentGone) {
		return err
	}
	return nil
}

// lateSink breaks the scheduler ⇄ link construction cycle.
type lateSink struct {
	mu sync.Mutex
	l  *hublink.Link
	st *status.State
}

func (s *lateSink) set(l *hublink.Link) { s.mu.Lock(); s.l = l; s.mu.Unlock() }
func (s *lateSink) get() *hublink.Link  { s.mu.Lock(); defer s.mu.Unlock(); return s.l }

func (s *lateSink) Results(ctx context.Context, r []*posturev1.PolicyResult) {
	s.st.Results(r)
	s.get().Results(ctx, r)
}

// observedRunner tells the status tables which policies the scheduler runs.
type observedRunner struct {
	*scheduler.Scheduler
	st *status.State
}

func (r observedRunner) Apply(ps *posturev1.PolicySet)             { r.st.PolicySet(ps); r.Scheduler.Apply(ps) }
func (r observedRunner) Clear()                                    { r.st.Clear(); r.Scheduler.Clear() }
func (s *lateSink) Facts(ctx context.Context, v map[string]string) { s.get().Facts(ctx, v) }

func bootstrapTLS(cfg *config) (*tls.Config, error) {
	var roots *x509.CertPool
	var pin []byte
	var err error
	switch {
	case cfg.hubCA != "" && cfg.hubCAPin != "":
		return nil, errors.New("give --hub-ca or --hub-ca-pin, not both")
	case cfg.hubCA != "":
		if roots, err = hublink.LoadCAFile(cfg.hubCA); err != nil {
			return nil, err
		}
	case cfg.hubCAPin != "":
		if pin, err = hublink.ParsePin(cfg.hubCAPin); err != nil {
			return nil, err
		}
	default:
		return nil, nil // enough for a host already enrolled
	}
	return hublink.BootstrapTLS(roots, pin)
}

func waitLock(ctx context.Context, lock *flock.Flock, log *slog.Logger) error {
	logged := false
	for {
		ok, err := lock.TryLock()
		if err != nil {
			return fmt.Errorf("lock state dir: %w", err)
		}
		if ok {
			return nil
		}
		if !logged {
			log.Warn("another posture.ext holds the state directory; waiting for it to exit", "lock", lock.Path())
			logged = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

var errOsqueryGone = errors.New("osqueryd unreachable for too long")

// osqueryWatch configures watchOsquery.
type osqueryWatch struct {
	interval time.Duration // ping interval while osquery answers
	gone     time.Duration // exit after this long unreachable (0: never)
	report   func(error)   // reachability, to the hub
	back     func()        // osquery answers again: run every policy now
	poke     <-chan struct{}
}

// downPoll is how often an unreachable osqueryd is pinged: a restarted
// osqueryd should get its policies run within moments, and a ping to a
// missing socket costs one stat.
const downPoll = 250 * time.Millisecond

// minBackGap limits how often a poke that finds osquery answering can
// trigger a full run, so a query path that fails while pings succeed
// cannot spin.
const minBackGap = time.Second

// watchOsquery pings osqueryd every interval (every downPoll while it is
// unreachable), reports reachability, calls back when osquery answers after
// an outage or after a run that found it gone (poke), and gives up when it
// has been unreachable for longer than gone: osqueryd restarts its
// autoloaded extensions, so a stray instance must not outlive it for good.
func watchOsquery(ctx context.Context, q *osq.Client, w osqueryWatch, log *slog.Logger) error {
	var downSince, lastBack time.Time
	wait := time.Duration(0) // report the state at start at once
	for {
		poked := false
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		case <-w.poke:
			poked = true
			if gap := minBackGap - time.Since(lastBack); gap > 0 {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(gap):
				}
			}
		}
		pctx, cancel := context.WithTimeout(ctx, w.interval+5*time.Second)
		err := q.Ping(pctx)
		cancel()
		if ctx.Err() == nil {
			w.report(err)
		}
		wait = w.interval
		switch {
		case err == nil:
			if !downSince.IsZero() {
				log.Info("osquery reachable again; running every policy", "after", time.Since(downSince).Round(time.Millisecond))
			}
			if !downSince.IsZero() || poked {
				lastBack = time.Now()
				w.back()
			}
			downSince = time.Time{}
		case ctx.Err() != nil:
			return nil
		case downSince.IsZero():
			downSince = time.Now()
			wait = min(w.interval, downPoll)
			log.Warn("osquery unreachable", "err", err)
		case w.gone > 0 && time.Since(downSince) > w.gone:
			log.Error("osquery unreachable for too long; exiting", "for", w.gone)
			return errOsqueryGone
		default:
			wait = min(w.interval, downPoll)
		}
	}
}

// errShutdownCalled: osqueryd called the extension's shutdown, as it does
// when it stops or unloads its extensions.
var errShutdownCalled = errors.New("osqueryd called shutdown")

// serveTable registers posture_entra with osqueryd and re-registers after
// osqueryd restarts. Failure only costs the table, never the policies.
// registered is called once osquery answers for the table. It returns
// errShutdownCalled when osqueryd asks the extension to shut down.
func serveTable(ctx context.Context, cfg *config, q *osq.Client, registered func(), log *slog.Logger) error {
	retry := time.Second
	every := time.Duration(max(cfg.interval, 1)) * time.Second
	for ctx.Err() == nil {
		srv, err := osquery.NewExtensionManagerServer("posture", cfg.socket,
			osquery.ServerTimeout(time.Duration(max(cfg.timeout, 1))*time.Second),
			osquery.ServerPingInterval(time.Duration(max(cfg.interval, 1))*time.Second),
			osquery.ExtensionVersion(version))
		if err == nil {
			srv.RegisterPlugin(entra.NewTable(entra.ExecRunner{}, runtime.GOOS, log))
			for _, t := range cfg.tables {
				srv.RegisterPlugin(t)
			}
			done := make(chan error, 1)
			go func() { done <- runExtension(srv, cfg) }()
			err = watchRegistration(ctx, q, done, every, registered, log)
			switch {
			case ctx.Err() != nil:
				_ = srv.Shutdown(context.Background())
				return nil
			case errors.Is(err, errDropped):
				// osqueryd forgot us while our socket still answers its
				// pings, so the server's own ping loop never notices.
				log.Warn("osqueryd no longer lists the extension; registering again")
				_ = srv.Shutdown(context.Background()) // its deregister call fails: already gone
				select {
				case <-done:
				case <-time.After(5 * time.Second):
				}
				retry = time.Second
				continue
			case err == nil:
				// Run returns nil only after a shutdown call; its own
				// ping failures come back as errors.
				log.Info("osqueryd called shutdown; exiting")
				return errShutdownCalled
			}
			retry = time.Second
		}
		log.Warn("posture_entra table not served; retrying", "err", err, "retry_in", retry)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(retry):
		}
		retry = min(2*retry, time.Minute)
	}
	return nil
}

// errDropped: osqueryd's extensions() no longer lists "posture".
var errDropped = errors.New("extension dropped by osqueryd")

// watchRegistration follows one registration until the server stops (its
// Run result comes back on done) or ctx ends. It calls registered once
// osquery can plan a query on posture_entra (polled every 50 ms until
// then), and every interval asks osqueryd for its extensions: when osqueryd
// answers but lists no "posture", it returns errDropped, because the
// server's own ping loop cannot notice a drop while our socket still
// answers osqueryd's pings. (osquery-go keeps the server's route UUID
// private, so the check is by name; the state-dir lock keeps one
// posture.ext per host.)
func watchRegistration(ctx context.Context, q *osq.Client, done <-chan error, every time.Duration, registered func(), log *slog.Logger) error {
	const planPoll = 50 * time.Millisecond
	check := time.NewTicker(every)
	defer check.Stop()
	plan := time.NewTimer(0)
	defer plan.Stop()
	planned := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-done:
			return err
		case <-plan.C:
			qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := q.QueryColumns(qctx, "SELECT device_id FROM "+entra.TableName)
			cancel()
			if err != nil {
				plan.Reset(planPoll)
				continue
			}
			planned = true
			registered()
		case <-check.C:
			ectx, cancel := context.WithTimeout(ctx, every+5*time.Second)
			exts, err := q.Extensions(ectx)
			cancel()
			if err != nil {
				// Unreachable: the osquery watch and the server's own
				// pings handle that.
				log.Debug("extensions() failed", "err", err)
				continue
			}
			if !slices.Contains(slices.Collect(maps.Values(exts)), "posture") {
				log.Debug("extensions() lists no posture", "extensions", exts, "table_planned", planned)
				return errDropped
			}
		}
	}
}
