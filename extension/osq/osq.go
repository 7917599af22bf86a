// Package osq is posture.ext's client for osqueryd's extension manager
// socket. Every call has a deadline, and after any transport error that
// connection's Thrift client is thrown away and a fresh one is dialled on the next call: a Thrift
// client is not reusable after a broken pipe, and osqueryd may have restarted.
package osq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/apache/thrift/lib/go/thrift"
	gen "github.com/osquery/osquery-go/gen/osquery"
	"github.com/osquery/osquery-go/transport"
)

// QueryError is osquery's own refusal of a query (bad SQL, no such table):
// the extension manager answered, with a non-zero status.
type QueryError struct {
	Code    int32
	Message string
}

func (e *QueryError) Error() string { return e.Message }

// ErrUnavailable wraps transport failures: osqueryd was not reachable or the
// connection broke. Such errors say nothing about the query itself.
var ErrUnavailable = errors.New("osquery unavailable")

// Options configure a Client.
type Options struct {
	// Socket is the extension manager socket (osqueryd --extensions_socket).
	Socket string
	// QueryTimeout bounds every call unless the caller's context is shorter.
	// It is also the socket read/write timeout of the Thrift transport.
	QueryTimeout time.Duration
	// Conns bounds the connections open at once (default 4).
	Conns  int
	Logger *slog.Logger
}

// Client is safe for concurrent use. osquery's extension manager handles
// one request per connection at a time, so the Client keeps up to Conns
// connections and a call waits for a free one: a query that hangs until
// its deadline holds one connection, not every caller.
type Client struct {
	opts  Options
	log   *slog.Logger
	slots chan *conn // free connections (dialled lazily)
}

// conn is one Thrift connection, owned by whoever took it from slots.
type conn struct {
	c    *gen.ExtensionManagerClient
	sock *thrift.TSocket
}

// New returns a Client; it does not dial until the first call.
func New(opts Options) *Client {
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = 30 * time.Second
	}
	if opts.Conns <= 0 {
		opts.Conns = 4
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Client{opts: opts, log: opts.Logger, slots: make(chan *conn, opts.Conns)}
	for range opts.Conns {
		c.slots <- &conn{}
	}
	return c
}

// WaitReady waits until the socket exists and answers a ping, or until ctx
// ends. poll is the interval between attempts.
func (c *Client) WaitReady(ctx context.Context, poll time.Duration) error {
	for {
		err := c.Ping(ctx)
		if err == nil {
			return nil
		}
		c.log.Debug("waiting for osquery socket", "socket", c.opts.Socket, "err", err)
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for osquery socket %s: %w (last error: %v)", c.opts.Socket, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// Ping checks the extension manager is alive.
func (c *Client) Ping(ctx context.Context) error {
	return c.do(ctx, func(ctx context.Context, cl *gen.ExtensionManagerClient) error {
		st, err := cl.Ping(ctx)
		if err != nil {
			return err
		}
		if st.Code != 0 {
			return &QueryError{Code: st.Code, Message: st.Message}
		}
		return nil
	})
}

// Extensions lists the extensions osqueryd has registered, by route UUID.
func (c *Client) Extensions(ctx context.Context) (map[int64]string, error) {
	out := map[int64]string{}
	err := c.do(ctx, func(ctx context.Context, cl *gen.ExtensionManagerClient) error {
		list, err := cl.Extensions(ctx)
		if err != nil {
			return err
		}
		for id, info := range list {
			out[int64(id)] = info.GetName()
		}
		return nil
	})
	return out, err
}

// Query runs sql and returns its rows. An osquery refusal is a *QueryError;
// a transport failure or timeout wraps ErrUnavailable or the context error.
func (c *Client) Query(ctx context.Context, sql string) ([]map[string]string, error) {
	var rows []map[string]string
	err := c.do(ctx, func(ctx context.Context, cl *gen.ExtensionManagerClient) error {
		resp, err := cl.Query(ctx, sql)
		if err != nil {
			return err
		}
		if err := statusErr(resp); err != nil {
			return err
		}
		rows = resp.Response
		return nil
	})
	return rows, err
}

// QueryColumns asks osquery to parse sql without running it
// (getQueryColumns); it returns the column names or osquery's refusal.
func (c *Client) QueryColumns(ctx context.Context, sql string) ([]string, error) {
	var cols []string
	err := c.do(ctx, func(ctx context.Context, cl *gen.ExtensionManagerClient) error {
		resp, err := cl.GetQueryColumns(ctx, sql)
		if err != nil {
			return err
		}
		if err := statusErr(resp); err != nil {
			return err
		}
		for _, row := range resp.Response {
			for name := range row {
				cols = append(cols, name)
			}
		}
		return nil
	})
	return cols, err
}

// Close drops the idle connections; one in use is dropped by its call's
// end (every call has a deadline) or reused by a later call.
func (c *Client) Close() {
	for range cap(c.slots) {
		select {
		case cn := <-c.slots:
			cn.reset()
			c.slots <- cn
		default:
			return
		}
	}
}

func statusErr(resp *gen.ExtensionResponse) error {
	if resp == nil || resp.Status == nil {
		return fmt.Errorf("%w: empty response from extension manager", ErrUnavailable)
	}
	if resp.Status.Code != 0 {
		return &QueryError{Code: resp.Status.Code, Message: resp.Status.Message}
	}
	return nil
}

// resetLocked drops the connection. It closes the net.Conn directly: the
// Thrift transport's own Close first runs a liveness check that clears the
// read deadline and then waits for the blocked reader, which never returns.
func (cn *conn) reset() {
	if cn.sock != nil {
		if nc := cn.sock.Conn(); nc != nil {
			_ = nc.Close()
		}
	}
	cn.sock, cn.c = nil, nil
}

// do runs fn with a live client under the call deadline. A call that fails
// at the transport level on a reused connection (osqueryd restarted since)
// is retried once on a fresh one; calls are read-only, so that is safe.
func (c *Client) do(ctx context.Context, fn func(context.Context, *gen.ExtensionManagerClient) error) error {
	var cn *conn
	select {
	case cn = <-c.slots:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { c.slots <- cn }()
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		reused := cn.c != nil
		if err := c.connect(cn); err != nil {
			return err
		}
		err := c.call(ctx, cn, fn)
		if err == nil || attempt > 0 || !reused || !errors.Is(err, ErrUnavailable) {
			return err
		}
		c.log.Debug("osquery connection broken; retrying on a fresh one", "err", err)
	}
}

func (c *Client) connect(cn *conn) error {
	if cn.c != nil {
		return nil
	}
	if err := socketPresent(runtime.GOOS, c.opts.Socket); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	// The same transport and protocol osquery-go's NewClient uses, kept
	// here so the connection can be cut when a call overruns.
	// transport.Open polls for the socket every 200 ms before dialling.
	sock, err := transport.Open(c.opts.Socket, c.opts.QueryTimeout+time.Second)
	if err != nil {
		return fmt.Errorf("%w: connecting to %s: %v", ErrUnavailable, c.opts.Socket, err)
	}
	cn.sock = sock
	cn.c = gen.NewExtensionManagerClientFactory(sock, thrift.NewTBinaryProtocolFactoryDefault())
	return nil
}

// call runs fn in a goroutine because the Thrift client does not
// watch the context while blocked on the socket: when the deadline passes
// first, the connection is cut to unblock it and discarded.
func (c *Client) call(ctx context.Context, cn *conn, fn func(context.Context, *gen.ExtensionManagerClient) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.QueryTimeout)
	defer cancel()
	cl := cn.c
	done := make(chan error, 1)
	go func() { done <- fn(ctx, cl) }()
	select {
	case err := <-done:
		var qe *QueryError
		if err != nil && !errors.As(err, &qe) {
			// Transport-level: the connection's state is unknown now.
			cn.reset()
			if ctx.Err() != nil {
				return fmt.Errorf("%w: %w", ctx.Err(), err)
			}
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return err
	case <-ctx.Done():
		cn.reset()
		<-done // cutting the connection unblocks fn
		return ctx.Err()
	}
}

// socketPresent fails fast when there is no socket to dial: on Unix
// transport.Open would poll for a missing socket file until its whole
// timeout. On Windows the socket is always a named pipe (osquery-go's
// transport dials nothing else), which has no file to stat; go-winio's
// DialPipe fails at once for a pipe that does not exist and waits only
// while an existing one is busy.
func socketPresent(goos, socket string) error {
	if goos == "windows" {
		return nil
	}
	_, err := os.Stat(socket)
	return err
}
