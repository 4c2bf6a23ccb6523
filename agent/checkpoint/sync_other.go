//go:build !linux

package checkpoint

import "os"

// datasync flushes an appended file; elsewhere than Linux a full fsync.
func datasync(f *os.File) error { return f.Sync() }
