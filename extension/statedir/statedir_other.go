//go:build !unix && !windows

package statedir

import (
	"fmt"
	"os"
)

// Prepare creates dir; this platform has neither Unix modes nor Windows
// ACLs to set.
func Prepare(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("state dir: %w", err)
	}
	return "", nil
}

// Exposed cannot tell on this platform.
func Exposed(string) (string, error) { return "", nil }
