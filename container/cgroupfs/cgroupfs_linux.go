package cgroupfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	cgroupsv3 "github.com/containerd/cgroups/v3"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// CleanRoot validates a --cgroups_root: a relative cgroup path, possibly
// nested ("corral" or "agents/corral"), that does not climb out of the
// hierarchy. Empty is DefaultRoot.
func CleanRoot(root string) (string, error) {
	if root == "" {
		return DefaultRoot, nil
	}
	r := strings.Trim(filepath.Clean("/"+root), "/")
	escapes := false
	for _, part := range strings.Split(root, "/") {
		escapes = escapes || part == ".."
	}
	if r == "" || escapes {
		return "", fmt.Errorf("invalid cgroups root %q: want a relative cgroup path such as %q", root, DefaultRoot)
	}
	return r, nil
}

// FSType reports whether path is a cgroup2 mount, and whether it is a
// cgroup (v1) mount: one statfs(2).
func FSType(path string) (v2, v1 bool, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, false, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	return st.Type == unix.CGROUP2_SUPER_MAGIC, st.Type == unix.CGROUP_SUPER_MAGIC, nil
}

// WriteFile writes s to the control file path with one write(2), as the
// kernel expects; the error is the *os.PathError of the open or write.
func WriteFile(path, s string) error {
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

// ReadSmall reads a small kernfs file into buf (grown when too small)
// without allocating otherwise. A cgroup removed between open and read
// (ENODEV) reads as absent (ENOENT).
func ReadSmall(path string, buf []byte) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if len(buf) == 0 {
		buf = make([]byte, 512)
	}
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

// ReadPids lists the processes in the cgroup dir (its cgroup.procs), not
// those of the cgroups below it.
func ReadPids(dir string) ([]int, error) {
	b, err := ReadSmall(filepath.Join(dir, "cgroup.procs"), make([]byte, 512))
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range bytes.Fields(b) {
		if pid, err := strconv.Atoi(string(f)); err == nil && pid > 0 {
			out = append(out, pid)
		}
	}
	return out, nil
}

// Subtree returns dir and every cgroup below it, parents before children.
// A task may make cgroups of its own inside its container's (v2
// delegation, or a v1 hierarchy it can write).
func Subtree(dir string) []string {
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

// TreePids lists the processes in dir and the cgroups below it.
func TreePids(dir string) []int {
	var out []int
	for _, d := range Subtree(dir) {
		pids, _ := ReadPids(d)
		out = append(out, pids...)
	}
	return out
}

// CgroupOf is the cgroup pid is in, relative to its hierarchy's root, as
// /proc/<pid>/cgroup has it: in the v1 hierarchy holding controller, or in
// the cgroup2 hierarchy (the "0::" line) when controller is empty. ok is
// false when the process has no line for that hierarchy; err is set when
// its cgroup file cannot be read (the process is gone).
func CgroupOf(pid int, controller string) (path string, ok bool, err error) {
	b, err := ReadSmall("/proc/"+strconv.Itoa(pid)+"/cgroup", make([]byte, 1024))
	if err != nil {
		return "", false, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if controller == "" {
			if parts[0] != "0" || parts[1] != "" {
				continue
			}
		} else if !hasWord(strings.ReplaceAll(parts[1], ",", " "), controller) {
			continue
		}
		return parts[2], true, nil
	}
	return "", false, nil
}

// Controllers lists the controllers a cgroup2 cgroup offers its children
// (cgroup.controllers).
func Controllers(dir string) ([]string, error) {
	b, err := ReadSmall(filepath.Join(dir, "cgroup.controllers"), make([]byte, 256))
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(b)), nil
}

// EnableControllers turns on, in dir's cgroup.subtree_control, each of want
// that dir offers and that is not on yet, with one write.
func EnableControllers(dir string, want []string) error {
	avail, err := ReadSmall(filepath.Join(dir, "cgroup.controllers"), make([]byte, 256))
	if err != nil {
		return err
	}
	on, err := ReadSmall(filepath.Join(dir, "cgroup.subtree_control"), make([]byte, 256))
	if err != nil {
		return err
	}
	var add []string
	for _, c := range want {
		if hasWord(string(avail), c) && !hasWord(string(on), c) {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	if err := WriteFile(filepath.Join(dir, "cgroup.subtree_control"), strings.Join(add, " ")); err != nil {
		hint := ""
		if errors.Is(err, unix.EBUSY) {
			hint = " (the cgroup has processes of its own; cgroup v2 allows controllers only below cgroups without processes)"
		}
		return fmt.Errorf("enabling %s in %s/cgroup.subtree_control: %w%s", strings.Join(add, " "), dir, err, hint)
	}
	return nil
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

// DescribePids prints a PID list for an error message, at most ten of them.
func DescribePids(pids []int) string {
	if len(pids) > 10 {
		return fmt.Sprint(pids[:10]) + fmt.Sprintf(" and %d more", len(pids)-10)
	}
	return fmt.Sprint(pids)
}

// Backoff is the wait before retry attempt: first, doubled each attempt, at
// most max.
func Backoff(attempt int, first, max time.Duration) time.Duration {
	d := first << min(attempt, 20)
	if d > max || d <= 0 {
		d = max
	}
	return d
}

// Sleep waits d, or until ctx ends (its error).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// poll polls cond with a short backoff for at most d.
func poll(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for attempt := 0; ; attempt++ {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || Sleep(ctx, Backoff(attempt, 20*time.Microsecond, 5*time.Millisecond)) != nil {
			return false
		}
	}
}

// Host is what the host's cgroups are: read once per process, never on the
// launch path.
type Host struct {
	// Unified: one cgroup2 hierarchy at DefaultMount holds the controllers.
	Unified bool
	// V1 maps each v1 controller to its hierarchy's mount point (legacy
	// and hybrid hosts; cpu and cpuacct may share one, or not).
	V1 map[string]string
}

var (
	hostOnce sync.Once
	host     *Host
	hostErr  error
)

// ReadHost detects the host's cgroup mode (containerd/cgroups' Mode) and,
// unless unified, where each v1 controller is mounted (from mountinfo). It
// reads them once per process; the result is shared, not to be changed.
func ReadHost() (*Host, error) {
	hostOnce.Do(func() { host, hostErr = readHost() })
	return host, hostErr
}

func readHost() (*Host, error) {
	h := &Host{V1: map[string]string{}}
	switch cgroupsv3.Mode() {
	case cgroupsv3.Unavailable:
		return nil, fmt.Errorf("no cgroup file system mounted at %s", DefaultMount)
	case cgroupsv3.Unified:
		h.Unified = true
		return h, nil
	}
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup"))
	if err != nil {
		return nil, err
	}
	for _, m := range mounts {
		mnt := m.Mountpoint
		for _, opt := range strings.Split(m.VFSOptions, ",") {
			if opt == "rw" || opt == "ro" || strings.Contains(opt, "=") {
				continue
			}
			// Prefer the mount under /sys/fs/cgroup when a hierarchy is
			// mounted more than once.
			if cur, ok := h.V1[opt]; !ok || (!strings.HasPrefix(cur, DefaultMount+"/") && strings.HasPrefix(mnt, DefaultMount+"/")) {
				h.V1[opt] = mnt
			}
		}
	}
	return h, nil
}
