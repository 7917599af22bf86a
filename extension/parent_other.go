//go:build !unix && !windows

package main

import (
	"context"
	"errors"
	"log/slog"
)

var errParentGone = errors.New("parent process exited")

// watchParent: no parent watch on this platform; the osquery watch and
// --osquery-gone-exit cover it.
func watchParent(ctx context.Context, _ *slog.Logger) error {
	<-ctx.Done()
	return nil
}
