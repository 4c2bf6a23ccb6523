package linux

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Plain file I/O on cgroupfs: every call here is one open/read or
// open/write of a kernfs file, a few microseconds, with no scan of
// /proc/mounts or of other cgroups.

func writeFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// readSmall reads a small kernfs file into buf without allocating per call.
func readSmall(path string, buf []byte) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	n := 0
	for {
		if n == len(buf) {
			buf = append(buf, make([]byte, len(buf))...)
		}
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err == unix.ENODEV {
			// The cgroup was removed between open and read (another
			// destroy got there first): for callers, that is absent.
			err = unix.ENOENT
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			return buf[:n], nil
		}
		n += m
	}
}

// readPids reads a cgroup.procs file.
func readPids(path string) ([]int, error) {
	b, err := readSmall(path, make([]byte, 512))
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range bytes.Fields(b) {
		if pid, err := strconv.Atoi(string(f)); err == nil {
			out = append(out, pid)
		}
	}
	return out, nil
}

// subtree returns dir and every cgroup below it, parents before children.
// A task may make cgroups of its own inside its container's (v2
// delegation, or a v1 hierarchy it can write).
func subtree(dir string) []string {
	out := []string{dir}
	for i := 0; i < len(out); i++ {
		entries, err := os.ReadDir(out[i])
		if err != nil {
			continue
		}
		for _, e := range entries {
			if e.IsDir() {
				out = append(out, filepath.Join(out[i], e.Name()))
			}
		}
	}
	return out
}

// rmdirTree removes dir and the cgroups below it, children first, retrying
// while the kernel still reports them busy (tasks that were just killed
// leave their cgroup asynchronously).
func rmdirTree(ctx context.Context, dir string) error {
	dirs := []string{dir}
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
			return err
		}
		if attempt == 0 {
			// Busy at the first try: perhaps there are child cgroups.
			dirs = subtree(dir)
			continue
		}
		if attempt >= rmdirAttempts {
			return err
		}
		if err := sleep(ctx, backoff(attempt, 100*time.Microsecond, 50*time.Millisecond)); err != nil {
			return err
		}
	}
}

const rmdirAttempts = 60 // about 2.5 s with the backoff below

func backoff(attempt int, first, max time.Duration) time.Duration {
	d := first << min(attempt, 20)
	if d > max || d <= 0 {
		d = max
	}
	return d
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// killPid kills one process of a cgroup through a pidfd. When the cgroup is
// not frozen the PID may have been reused between reading cgroup.procs and
// opening the pidfd, so the process's membership is checked after the pidfd
// pins it (inCgroup non-nil).
func killPid(pid int, inCgroup func(pid int) bool) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	if inCgroup != nil && !inCgroup(pid) {
		return
	}
	_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
}

// memberOf reports whether /proc/<pid>/cgroup places pid at rel ("/root/id"
// or below) in the hierarchy whose line matches: controller "freezer" on
// v1, the "0::" line on v2.
func memberOf(pid int, v2 bool, rel string) bool {
	p, ok := trackingCgroupOf(pid, v2)
	return ok && (p == rel || strings.HasPrefix(p, rel+"/"))
}

// trackingCgroupOf is the cgroup a process is in, in the hierarchy the
// launcher tracks containers by (cgroup2, or the v1 freezer), relative to
// that hierarchy's root.
func trackingCgroupOf(pid int, v2 bool) (string, bool) {
	b, err := readSmall("/proc/"+strconv.Itoa(pid)+"/cgroup", make([]byte, 1024))
	if err != nil {
		return "", false
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if v2 {
			if parts[0] != "0" || parts[1] != "" {
				continue
			}
		} else if !hasController(parts[1], "freezer") {
			continue
		}
		return parts[2], true
	}
	return "", false
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// fsType reports whether path is a cgroup2 mount, and whether it is a
// cgroup (v1) mount.
func fsType(path string) (v2, v1 bool, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, false, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	return st.Type == unix.CGROUP2_SUPER_MAGIC, st.Type == unix.CGROUP_SUPER_MAGIC, nil
}

func describePids(pids []int) string {
	if len(pids) > 10 {
		return fmt.Sprint(pids[:10]) + fmt.Sprintf(" and %d more", len(pids)-10)
	}
	return fmt.Sprint(pids)
}
