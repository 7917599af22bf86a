//go:build !unix

package main

import (
	"context"
	"errors"
	"log/slog"
)

var errParentGone = errors.New("parent process exited")

// watchParent: Windows does not re-parent orphans, and osqueryd there stops
// its extensions through the named pipe; the osquery watch covers the rest.
func watchParent(ctx context.Context, _ *slog.Logger) error {
	<-ctx.Done()
	return nil
}
