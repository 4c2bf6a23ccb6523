package cgroupfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Bounds on killing one cgroup's processes.
var (
	// freezeWait is how long one freeze attempt may take before the
	// cgroup is thawed and the freeze retried.
	freezeWait = 200 * time.Millisecond
	// freezeAttempts bounds the retries; after them processes are killed
	// unfrozen, each checked to be in the cgroup after its pidfd is open.
	freezeAttempts = 5
	// emptyWait bounds the wait for killed processes to leave the cgroup.
	emptyWait = 10 * time.Second
)

// HasKill reports whether the cgroup2 cgroup dir has cgroup.kill (Linux
// 5.14+); the answer holds for every cgroup of that hierarchy.
func HasKill(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "cgroup.kill"))
	return err == nil
}

// Kill kills every process in the cgroup dir and the cgroups below it and
// waits, for at most 10 s, until they are all gone. On cgroup v2 (v2 true)
// it writes cgroup.kill, or where the kernel has none (hasKill false)
// freezes the cgroup, SIGKILLs its processes and thaws it; on v1, dir is in
// the freezer hierarchy and is frozen, killed and thawed, retrying a freeze
// that does not complete a bounded number of times, so a task stuck in the
// kernel cannot hang the caller. A cgroup that does not exist is no error.
func Kill(ctx context.Context, dir string, v2, hasKill bool) error {
	if v2 {
		return killV2(ctx, dir, hasKill)
	}
	return killV1(ctx, dir)
}

// populated reads a cgroup2 cgroup's cgroup.events.
func populated(dir string) (bool, error) {
	b, err := ReadSmall(filepath.Join(dir, "cgroup.events"), make([]byte, 128))
	if err != nil {
		return false, err
	}
	return !strings.Contains(string(b), "populated 0"), nil
}

// killV2 kills the cgroup's processes and waits until it is unpopulated.
func killV2(ctx context.Context, dir string, hasKill bool) error {
	if p, err := populated(dir); err != nil || !p {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	deadline := time.Now().Add(emptyWait)
	for attempt := 0; ; attempt++ {
		// Re-killed every few rounds: cgroup.kill is final even for forks
		// under way, but the fallback is not.
		if attempt%16 == 0 {
			if hasKill {
				if err := WriteFile(filepath.Join(dir, "cgroup.kill"), "1"); err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
			} else {
				freezeKillThawV2(ctx, dir)
			}
		}
		p, err := populated(dir)
		if errors.Is(err, os.ErrNotExist) || (err == nil && !p) {
			return nil
		}
		if err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s still populated %v after kill (processes %s)", dir, emptyWait, DescribePids(TreePids(dir)))
		}
		if err := Sleep(ctx, Backoff(attempt, 50*time.Microsecond, 10*time.Millisecond)); err != nil {
			return err
		}
	}
}

// freezeKillThawV2 is the kill for kernels without cgroup.kill: freeze the
// cgroup (cgroup.freeze, Linux 5.2+) so nothing forks or exits, SIGKILL every
// process of the subtree, thaw.
func freezeKillThawV2(ctx context.Context, dir string) {
	frozen := WriteFile(filepath.Join(dir, "cgroup.freeze"), "1") == nil &&
		poll(ctx, freezeWait, func() bool {
			b, err := ReadSmall(filepath.Join(dir, "cgroup.events"), make([]byte, 128))
			return err == nil && strings.Contains(string(b), "frozen 1")
		})
	KillProcs(dir, frozen)
	_ = WriteFile(filepath.Join(dir, "cgroup.freeze"), "0")
}

// killV1 freezes the container's freezer cgroup, SIGKILLs every process in
// it, thaws it and waits until it is empty.
func killV1(ctx context.Context, dir string) error {
	pids, err := ReadPids(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(pids) == 0 && len(Subtree(dir)) == 1 {
		return nil // ended by itself: nothing to freeze
	}
	deadline := time.Now().Add(emptyWait)
	for {
		frozen := freezeV1(ctx, dir)
		KillProcs(dir, frozen)
		_ = WriteFile(filepath.Join(dir, "freezer.state"), "THAWED")
		// Killed processes need a moment to run their exit.
		for attempt := 0; attempt < 12; attempt++ {
			if len(TreePids(dir)) == 0 {
				return nil
			}
			if err := Sleep(ctx, Backoff(attempt, 50*time.Microsecond, 10*time.Millisecond)); err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s not empty %v after kill (processes %s)", dir, emptyWait, DescribePids(TreePids(dir)))
		}
	}
}

// freezeV1 freezes dir, retrying a freeze that does not complete: a task
// stuck in the kernel can hold a freeze in FREEZING for ever. It reports
// whether the cgroup is frozen.
func freezeV1(ctx context.Context, dir string) bool {
	state := filepath.Join(dir, "freezer.state")
	for attempt := 0; attempt < freezeAttempts; attempt++ {
		if err := WriteFile(state, "FROZEN"); err != nil {
			return false
		}
		if poll(ctx, freezeWait, func() bool {
			b, err := ReadSmall(state, make([]byte, 32))
			return err == nil && strings.HasPrefix(string(b), "FROZEN")
		}) {
			return true
		}
		_ = WriteFile(state, "THAWED")
		if Sleep(ctx, time.Duration(attempt+1)*10*time.Millisecond) != nil {
			return false
		}
	}
	return false
}

// KillProcs SIGKILLs every process in dir and the cgroups below it, each
// through a pidfd. In a frozen cgroup no process can exit, so no PID read
// from cgroup.procs can be reused before it is signalled. Unfrozen, a PID
// may be reused between the read and pidfd_open, so the cgroup is listed
// again once the pidfds are open and only the processes still in it are
// signalled: a pidfd never reaches another process than the one it pinned.
func KillProcs(dir string, frozen bool) {
	for _, d := range Subtree(dir) {
		pids, _ := ReadPids(d)
		if len(pids) == 0 {
			continue
		}
		fds := make(map[int]int, len(pids))
		for _, pid := range pids {
			if fd, err := unix.PidfdOpen(pid, 0); err == nil {
				fds[pid] = fd
			}
		}
		var still map[int]bool
		if !frozen {
			again, _ := ReadPids(d)
			still = make(map[int]bool, len(again))
			for _, pid := range again {
				still[pid] = true
			}
		}
		for pid, fd := range fds {
			if frozen || still[pid] {
				_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
			}
			unix.Close(fd)
		}
	}
}

// Thaw unfreezes a cgroup (freezer.state on v1, cgroup.freeze on v2) that
// is frozen; one that is not, or has no freezer file (a kernel without
// cgroup.freeze, or the cgroup just went), is left as it is.
func Thaw(dir string, v2 bool) error {
	file, thawed := filepath.Join(dir, "freezer.state"), "THAWED"
	if v2 {
		file, thawed = filepath.Join(dir, "cgroup.freeze"), "0"
	}
	b, err := ReadSmall(file, make([]byte, 32))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", file, err)
	}
	if strings.TrimSpace(string(b)) == thawed {
		return nil
	}
	if err := WriteFile(file, thawed); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("thawing %s: %w", dir, err)
	}
	return nil
}
