// Package osquerytest is a stand-in for osqueryd: it serves osquery's Thrift
// ExtensionManager API on a unix socket, answers queries from an in-memory
// SQLite database seeded with per-platform fixture tables shaped like
// osquery's table specs, and lets tests change those fixtures while it runs.
//
// The real osquery-go client and ExtensionManagerServer work against it
// unchanged: like osqueryd it speaks the Thrift binary protocol over a
// buffered (unframed) transport.
package osquerytest

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/apache/thrift/lib/go/thrift"
	"github.com/osquery/osquery-go/gen/osquery"
)

// Version is the osquery version the stand-in reports (osquery_info, os
// fixtures, extension SDK checks).
const Version = "5.19.0"

// Options configures a stand-in host.
type Options struct {
	// Platform is "darwin", "windows" or "linux"; only that platform's tables exist.
	Platform string
	// SocketPath is the unix socket to serve on (keep it under ~100 bytes).
	SocketPath string
	// Hostname, UUID and Serial are the host's identity facts (system_info,
	// osquery_info). Empty values get a platform default hostname, a random
	// UUID and a serial derived from the UUID, so several hosts can run at once.
	Hostname string
	UUID     string
	Serial   string
	// EntraDeviceID and UserPrincipalName seed the Entra registration fixtures
	// (MS-Organization-Access certificate, JoinInfo registry values). Empty:
	// a device id derived from UUID and "alex.morgan@contoso.com".
	EntraDeviceID     string
	UserPrincipalName string
	// ExtensionTimeout bounds each call into a registered extension
	// (default 5s, like osquery's --extensions_timeout order of magnitude).
	ExtensionTimeout time.Duration
	// ExtraSQL runs after the platform fixtures are loaded (and again after
	// Reset): extra tables or rows, or changes to the healthy defaults.
	ExtraSQL string
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
}

// Platforms lists the supported platform names.
func Platforms() []string { return []string{"darwin", "linux", "windows"} }

// Server is a running stand-in osqueryd.
type Server struct {
	opts   Options
	log    *slog.Logger
	db     *fixtureDB
	ln     net.Listener
	proc   thrift.TProcessor
	ctx    context.Context
	cancel context.CancelFunc

	connMu sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup

	delayMu sync.Mutex
	delay   time.Duration
	hang    chan struct{} // non-nil while every call is held (SetHang)

	ext *extensionRegistry

	closeOnce sync.Once
	closeErr  error
	startTime time.Time
}

// Start seeds the fixture database and begins serving on opts.SocketPath.
// The socket exists when Start returns.
func Start(ctx context.Context, opts Options) (*Server, error) {
	switch opts.Platform {
	case "darwin", "windows", "linux":
	case "macos":
		opts.Platform = "darwin"
	default:
		return nil, fmt.Errorf("osquerytest: unknown platform %q (want darwin, windows or linux)", opts.Platform)
	}
	if opts.SocketPath == "" {
		return nil, errors.New("osquerytest: SocketPath is required")
	}
	if len(opts.SocketPath) > 100 {
		return nil, fmt.Errorf("osquerytest: socket path %q is %d bytes; unix sockets need < 104 including the extension suffix", opts.SocketPath, len(opts.SocketPath))
	}
	if opts.UUID == "" {
		opts.UUID = randomUUID()
	}
	opts.UUID = strings.ToUpper(opts.UUID)
	if opts.Hostname == "" {
		opts.Hostname = defaultHostname(opts.Platform)
	}
	if opts.Serial == "" {
		opts.Serial = serialFromUUID(opts.Platform, opts.UUID)
	}
	if opts.EntraDeviceID == "" {
		opts.EntraDeviceID = derivedUUID("entra-device-id:" + opts.UUID)
	}
	if opts.UserPrincipalName == "" {
		opts.UserPrincipalName = "alex.morgan@contoso.com"
	}
	if opts.ExtensionTimeout <= 0 {
		opts.ExtensionTimeout = 5 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("platform", opts.Platform, "socket", opts.SocketPath)

	s := &Server{
		opts:      opts,
		log:       log,
		conns:     map[net.Conn]struct{}{},
		startTime: time.Now(),
	}
	s.ext = newExtensionRegistry(s)

	db, err := openFixtureDB(ctx, opts, s.startTime)
	if err != nil {
		return nil, err
	}
	s.db = db

	// A stale socket from a crashed run would make Listen fail; osqueryd
	// removes it the same way before starting its manager.
	if fi, err := os.Lstat(opts.SocketPath); err == nil && fi.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(opts.SocketPath)
	}
	ln, err := net.Listen("unix", opts.SocketPath)
	if err != nil {
		db.close()
		return nil, fmt.Errorf("osquerytest: listen on %s: %w", opts.SocketPath, err)
	}
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(true)
	}
	s.ln = ln
	s.proc = osquery.NewExtensionManagerProcessor(&handler{s: s})
	s.ctx, s.cancel = context.WithCancel(context.Background())

	s.wg.Add(1)
	go s.acceptLoop()
	log.Debug("fake osqueryd started", "hostname", opts.Hostname, "uuid", opts.UUID)
	return s, nil
}

// SocketPath is the extension manager socket.
func (s *Server) SocketPath() string { return s.opts.SocketPath }

// Platform is the platform whose tables this host has.
func (s *Server) Platform() string { return s.opts.Platform }

// Hostname, UUID and Serial are the host's identity facts.
func (s *Server) Hostname() string { return s.opts.Hostname }

// UUID is system_info.uuid / osquery_info.uuid.
func (s *Server) UUID() string { return s.opts.UUID }

// Serial is system_info.hardware_serial.
func (s *Server) Serial() string { return s.opts.Serial }

// EntraDeviceID is the device id seeded into the Entra registration fixtures.
func (s *Server) EntraDeviceID() string { return s.opts.EntraDeviceID }

// Exec runs arbitrary SQL (with optional bind args) against the fixture
// database, bypassing the read-only rule that applies to Thrift queries; e.g.
// Exec(ctx, "UPDATE disk_encryption SET encrypted = 0").
func (s *Server) Exec(ctx context.Context, sql string, args ...any) error {
	return s.db.exec(ctx, sql, args...)
}

// SetDelay makes every query and getQueryColumns call wait d before it is
// answered (0 restores normal speed), to test client timeouts. A waiting call
// ends early only when the client disconnects or the server closes.
func (s *Server) SetDelay(d time.Duration) {
	s.delayMu.Lock()
	s.delay = d
	s.delayMu.Unlock()
}

// SetHang(true) makes the server accept connections but answer no call at
// all (ping included) until SetHang(false), like a wedged osqueryd; held calls
// end when the client disconnects or the server closes.
func (s *Server) SetHang(on bool) {
	s.delayMu.Lock()
	defer s.delayMu.Unlock()
	switch {
	case on && s.hang == nil:
		s.hang = make(chan struct{})
	case !on && s.hang != nil:
		close(s.hang)
		s.hang = nil
	}
}

// hold blocks while the server is hung.
func (s *Server) hold(ctx context.Context) {
	s.delayMu.Lock()
	ch := s.hang
	s.delayMu.Unlock()
	if ch == nil {
		return
	}
	select {
	case <-ch:
	case <-ctx.Done():
	case <-s.ctx.Done():
	}
}

func (s *Server) currentDelay() time.Duration {
	s.delayMu.Lock()
	defer s.delayMu.Unlock()
	return s.delay
}

// Close stops serving, drops client connections, removes the socket and
// frees the database. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		err := s.ln.Close()
		s.connMu.Lock()
		for c := range s.conns {
			_ = c.Close()
		}
		s.connMu.Unlock()
		s.wg.Wait()
		if rmErr := os.Remove(s.opts.SocketPath); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) && err == nil {
			err = rmErr
		}
		if dbErr := s.db.close(); dbErr != nil && err == nil {
			err = dbErr
		}
		if err != nil && !errors.Is(err, net.ErrClosed) {
			s.closeErr = err
		}
		s.log.Debug("fake osqueryd stopped")
	})
	return s.closeErr
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Error("accept failed", "err", err)
			}
			return
		}
		s.connMu.Lock()
		if s.ctx.Err() != nil {
			s.connMu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.connMu.Unlock()
		go s.serveConn(c)
	}
}

// serveConn runs one client connection with osqueryd's framing: a buffered,
// unframed transport and the binary protocol.
func (s *Server) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.connMu.Lock()
		delete(s.conns, c)
		s.connMu.Unlock()
		_ = c.Close()
	}()
	cfg := &thrift.TConfiguration{}
	trans := thrift.NewTBufferedTransport(thrift.NewTSocketFromConnConf(c, cfg), 8192)
	prot := thrift.NewTBinaryProtocolConf(trans, cfg)
	for s.ctx.Err() == nil {
		ok, err := s.proc.Process(s.ctx, prot, prot)
		if err != nil {
			var tae thrift.TApplicationException
			if errors.As(err, &tae) && tae.TypeId() == thrift.UNKNOWN_METHOD {
				continue
			}
			if !isDisconnect(err) {
				s.log.Debug("thrift connection ended", "err", err)
			}
			return
		}
		if !ok {
			return
		}
	}
}

func isDisconnect(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var te thrift.TTransportException
	return errors.As(err, &te) && (te.TypeId() == thrift.END_OF_FILE || te.TypeId() == thrift.NOT_OPEN)
}

// wait sleeps for the configured delay, ending early if ctx or the server ends.
func (s *Server) wait(ctx context.Context) {
	s.hold(ctx)
	d := s.currentDelay()
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-s.ctx.Done():
	}
}

func defaultHostname(platform string) string {
	switch platform {
	case "darwin":
		return "alex-mbp.local"
	case "windows":
		return "DESKTOP-7QK2M4H"
	default:
		return "dev-ws-042"
	}
}

func randomUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b[:])
}

// derivedUUID makes a stable, UUID-shaped value from seed.
func derivedUUID(seed string) string {
	h := sha1.Sum([]byte(seed))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	return strings.ToLower(formatUUID(h[:16]))
}

func formatUUID(b []byte) string {
	return strings.ToUpper(fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]))
}

func serialFromUUID(platform, uuid string) string {
	h := sha1.Sum([]byte("serial:" + uuid))
	const alphabet = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
	n := 10
	prefix := ""
	switch platform {
	case "darwin":
		prefix, n = "C02", 9
	case "windows":
		prefix, n = "PF", 6
	default:
		prefix, n = "MJ0", 5
	}
	out := []byte(prefix)
	for i := 0; i < n; i++ {
		out = append(out, alphabet[int(h[i])%len(alphabet)])
	}
	return string(out)
}

// runQuery answers a Thrift query: refresh any extension tables it names,
// then run it read-only against the fixtures.
func (s *Server) runQuery(ctx context.Context, q string) ([]map[string]string, error) {
	if err := checkReadOnly(q); err != nil {
		return nil, err
	}
	if err := s.ext.materialize(ctx, q); err != nil {
		return nil, err
	}
	return s.db.query(ctx, q)
}

// Query runs q exactly as a Thrift client's query would be answered, for
// tests that do not need a socket round trip. Errors carry osquery's message.
func (s *Server) Query(ctx context.Context, q string) ([]map[string]string, error) {
	return s.runQuery(ctx, q)
}
