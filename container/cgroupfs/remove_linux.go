package cgroupfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// RemoveOptions tune RemoveTree.
type RemoveOptions struct {
	// Timeout bounds the retries while a cgroup is busy.
	Timeout time.Duration
	// KillBusy SIGKILLs (KillProcs) what is still in a busy cgroup before
	// each retry: for cgroups whose processes no one else kills (orphans
	// in a v1 hierarchy without a freezer).
	KillBusy bool
}

// RemoveTree removes dir and the cgroups below it, children first,
// retrying with backoff (from 100 µs, at most 50 ms apart) while the kernel
// reports one busy: tasks just killed leave their cgroup asynchronously. A
// cgroup that is absent is no error. The first attempt is a single rmdir(2):
// the subtree is only listed when that fails.
func RemoveTree(ctx context.Context, dir string, o RemoveOptions) error {
	dirs := []string{dir}
	var deadline time.Time
	for attempt := 0; ; attempt++ {
		var err error
		for i := len(dirs) - 1; i >= 0; i-- {
			if e := unix.Rmdir(dirs[i]); e != nil && e != unix.ENOENT {
				err = &os.PathError{Op: "rmdir", Path: dirs[i], Err: e}
				break
			}
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENOTEMPTY) {
			return fmt.Errorf("removing cgroup %s: %w", dir, err)
		}
		if attempt == 0 {
			// Busy at the first try: perhaps there are child cgroups.
			dirs = Subtree(dir)
			deadline = time.Now().Add(o.Timeout)
			continue
		}
		if o.KillBusy {
			KillProcs(dir, false)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("removing cgroup %s: still busy after %v (processes %s): %w", dir, o.Timeout, DescribePids(TreePids(dir)), err)
		}
		if err := Sleep(ctx, Backoff(attempt, 100*time.Microsecond, 50*time.Millisecond)); err != nil {
			return fmt.Errorf("removing cgroup %s: %w", dir, err)
		}
	}
}
