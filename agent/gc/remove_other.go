//go:build !linux

package gc

import (
	"errors"
	"os"
)

// The collector removes sandboxes on Linux only (where the agent runs);
// elsewhere the package builds so that the agent's portable code does.

var errUnsupported = errors.New("gc: sandbox removal is implemented on Linux only")

// StatfsUsage is implemented on Linux only.
func StatfsUsage(path string) (Usage, error) {
	return Usage{}, &os.PathError{Op: "statfs", Path: path, Err: errUnsupported}
}

func unmountBelow([]string) (int, error) { return 0, nil }

func removeTree(string) (uint64, error) { return 0, errUnsupported }
