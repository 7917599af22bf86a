package main

import (
	"context"
	"fmt"
	"time"

	osquery "github.com/osquery/osquery-go"
)

// extensionServer is the part of osquery-go's ExtensionManagerServer that
// runServer drives.
type extensionServer interface {
	Start() error
	Shutdown(context.Context) error
}

// runServer serves the registered tables until osqueryd calls shutdown (nil),
// registration or serving fails, or ping reports osqueryd gone (its error).
//
// It replaces ExtensionManagerServer.Run, which leaks: Run takes the first of
// two results from an unbuffered channel, so when its ping fails first
// (osqueryd went away) the goroutine running Start blocks for ever on its
// send once Shutdown stops the server: one goroutine, holding the server and
// its plugins, per osqueryd restart. Here both results have room.
func runServer(srv extensionServer, ping func(context.Context) error, interval time.Duration) error {
	errc := make(chan error, 2)
	go func() { errc <- srv.Start() }()
	pingCtx, stop := context.WithCancel(context.Background())
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-pingCtx.Done():
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(pingCtx, interval+5*time.Second)
			err := ping(ctx)
			cancel()
			if err != nil && pingCtx.Err() == nil {
				errc <- fmt.Errorf("extension ping failed: %w", err)
				return
			}
		}
	}()
	err := <-errc
	stop()
	<-pinged // a ping in flight sees its context end
	_ = srv.Shutdown(context.Background())
	return err
}

var _ extensionServer = (*osquery.ExtensionManagerServer)(nil)

// runExtension runs srv with runServer, pinging osqueryd over a connection
// of its own, as Run did over the server's: that connection breaks when
// osqueryd restarts, so the restart is noticed even though a new osqueryd
// answers on the same socket a moment later (a client that redials, such as
// package osq's, would not notice) and the tables are registered again.
func runExtension(srv extensionServer, cfg *config) error {
	return runExtensionOn(srv, cfg.socket, time.Duration(max(cfg.timeout, 1))*time.Second, time.Duration(max(cfg.interval, 1))*time.Second)
}

func runExtensionOn(srv extensionServer, socket string, timeout, interval time.Duration) error {
	cl, err := osquery.NewClient(socket, timeout)
	if err != nil {
		_ = srv.Shutdown(context.Background())
		return fmt.Errorf("extension ping client: %w", err)
	}
	defer cl.Close() // after runServer: no ping is in flight by then
	return runServer(srv, func(ctx context.Context) error {
		st, err := cl.PingContext(ctx)
		if err != nil {
			return err
		}
		if st.Code != 0 {
			return fmt.Errorf("ping returned status %d: %s", st.Code, st.Message)
		}
		return nil
	}, interval)
}
