//go:build !linux

package checkpoint

import (
	"os"
	"syscall"
)

// datasync flushes an appended file; elsewhere than Linux a full fsync.
func datasync(f *os.File) error { return f.Sync() }

// syncfs makes the tree durable; elsewhere than Linux with a global sync.
func syncfs(string) error {
	syscall.Sync()
	return nil
}
