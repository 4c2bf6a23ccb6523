package disk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/corral/corral/container/cgroupfs"
)

// Why a helper process: a du walk of a sandbox with a million files costs
// seconds of CPU and a great deal of I/O and dentry/inode cache. Done in
// the agent, all of it would be charged to the agent's cgroup (a thread
// cannot leave its process's cgroup on v2, nor its memory charges on v1),
// counting against the agent's own limits and hiding the cost. A child
// process can be placed in a cgroup of its own before it starts walking
// and given idle I/O priority and the lowest CPU priority by PID.
//
// The child is /bin/sh running du(1) (coreutils or busybox; every host has
// a shell and a du), so no Corral binary needs a hidden mode. It is started as
//
//	sh -c '<duScript>' corral-du <sandbox>...
//
// and held on a pipe until it is in place: nothing of the walk runs in the
// agent's cgroup, on v1 as on v2. One helper measures a batch of sandboxes,
// one du after the other, so the agent pays one fork and exec (about a
// millisecond of its CPU) per batch rather than per container; the du
// execs are the helper's. Walks are still one at a time.

// duScript waits for the go-ahead on stdin (EOF: the agent gave up), then
// prints one line per sandbox: its usage in KiB, or nothing when du
// printed no total. du exits 1 when a file vanished under it (a task still
// writing); its total is still good.
const duScript = `read -r _ || exit 0
for d do
	s=$(du -s -k -x -- "$d" 2>/dev/null)
	echo "${s%%[!0-9]*}"
done`

// maxBatch bounds the sandboxes of one helper: results come back when the
// whole batch is done, and the argument list stays far below ARG_MAX.
const maxBatch = 128

// ioprio_set(2) values: who = IOPRIO_WHO_PROCESS, class IDLE in the top
// bits of the priority.
const (
	ioprioWhoProcess = 1
	ioprioClassIdle  = 3
	ioprioClassShift = 13
)

// Controllers whose accounting the helper is moved for; cpuset (which a
// new v1 cgroup must be configured for before use) and the rest account
// nothing a walk costs.
var accounted = []string{"cpu", "cpuacct", "memory", "blkio", "pids"}

// duRunner starts du helpers.
type duRunner struct {
	log *slog.Logger
	// cgroups are the cgroup directories (one per hierarchy) the helper is
	// moved into; empty: it stays where the agent is.
	cgroups []string

	warnOnce sync.Once

	// beforeRelease, when set (tests), sees the paused helper's PID after
	// it was placed.
	beforeRelease func(pid int)
}

// walkResult is one batch's measurements.
type walkResult struct {
	// Bytes[i] is dirs[i]'s usage; Errs[i] says why there is none.
	Bytes []uint64
	Errs  []error
	// CPU is the helper's user+system time, for the benchmarks' "agent vs
	// helper" account.
	CPU time.Duration
}

// newDURunner prepares the helper's cgroup, named name under each
// hierarchy ("" or "none": no cgroup of its own). It reads the mount table
// once, here.
func newDURunner(log *slog.Logger, name string) *duRunner {
	r := &duRunner{log: log}
	if name == "" || name == "none" || os.Geteuid() != 0 {
		return r
	}
	dirs, err := helperCgroups(name)
	if err != nil {
		log.Warn("du helper stays in the agent's cgroup", "err", err)
		return r
	}
	r.cgroups = dirs
	return r
}

// helperCgroups creates name in each cgroup hierarchy that accounts what a
// walk costs and returns the directories.
func helperCgroups(name string) ([]string, error) {
	name = strings.Trim(filepath.Clean("/"+name), "/")
	if name == "" || strings.Contains(name, "..") {
		return nil, fmt.Errorf("the du helper's cgroup %q is not a relative cgroup path", name)
	}
	// A cgroup mounted from below its root is a container's view: skipped.
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return (m.FSType != "cgroup" && m.FSType != "cgroup2") || m.Root != "/", false
	})
	if err != nil {
		return nil, fmt.Errorf("reading mount table: %w", err)
	}
	var dirs []string
	seen := map[string]bool{}
	for _, m := range mounts {
		mnt := m.Mountpoint
		switch m.FSType {
		case "cgroup2":
			// Hybrid hosts mount a v2 hierarchy with no controllers: it
			// accounts nothing, leave the helper where it is there.
			c, err := os.ReadFile(filepath.Join(mnt, "cgroup.controllers"))
			if err != nil || len(bytes.TrimSpace(c)) == 0 {
				continue
			}
		case "cgroup":
			use := false
			for _, o := range strings.Split(m.VFSOptions, ",") {
				for _, a := range accounted {
					use = use || o == a
				}
			}
			if !use {
				continue
			}
		default:
			continue
		}
		if seen[m.VFSOptions] {
			continue // the same hierarchy mounted twice
		}
		seen[m.VFSOptions] = true
		dir := filepath.Join(mnt, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating the du helper's cgroup: %w", err)
		}
		dirs = append(dirs, dir)
	}
	if len(dirs) == 0 {
		return nil, errors.New("no cgroup hierarchy found")
	}
	return dirs, nil
}

// remove removes the helper's cgroups (they are empty between walks; a
// helper just killed may take a moment to leave).
func (r *duRunner) remove() error {
	var errs []error
	for _, d := range r.cgroups {
		if err := cgroupfs.RemoveTree(context.Background(), d, cgroupfs.RemoveOptions{Timeout: 2 * time.Second}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// du measures each of dirs' disk usage in bytes (blocks allocated, hard
// links once, not crossing into other file systems, not following
// symlinks). An error for the whole batch (the helper did not run, ctx
// ended) is returned; one sandbox's failure is in Errs.
func (r *duRunner) du(ctx context.Context, dirs []string) (walkResult, error) {
	args := append([]string{"-c", duScript, "corral-du"}, dirs...)
	cmd := exec.CommandContext(ctx, "/bin/sh", args...)
	// The agent's environment may hold secrets; du needs none of it, but
	// a fixed locale keeps its output parseable.
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LC_ALL=C"}
	// Its own process group, so that giving up kills the du and the
	// subshell under the shell too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return walkResult{}, err
	}
	// The results go to a memfd, read once the helper is done: a pipe
	// would wake the agent for every line (measured: 20 ms of the agent's
	// CPU per batch of 128 against 3 ms with the memfd, the exec itself).
	out, err := memfd("corral-du")
	if err != nil {
		return walkResult{}, err
	}
	defer out.Close()
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		return walkResult{}, fmt.Errorf("starting the du helper: %w", err)
	}
	pid := cmd.Process.Pid
	r.place(pid)
	if r.beforeRelease != nil {
		r.beforeRelease(pid)
	}
	_, _ = stdin.Write([]byte("go\n"))
	stdin.Close()
	err = cmd.Wait()
	res := walkResult{Bytes: make([]uint64, len(dirs)), Errs: make([]error, len(dirs))}
	if cmd.ProcessState != nil {
		res.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if err != nil {
		return res, fmt.Errorf("du helper: %w", err)
	}
	b, err := io.ReadAll(io.NewSectionReader(out, 0, 1<<20))
	if err != nil {
		return res, fmt.Errorf("reading the du helper's output: %w", err)
	}
	lines := strings.Split(string(b), "\n")
	for i, dir := range dirs {
		var kb uint64
		perr := errors.New("no output")
		if i < len(lines) {
			kb, perr = strconv.ParseUint(lines[i], 10, 64)
		}
		if perr != nil {
			res.Errs[i] = fmt.Errorf("du %s printed no total (gone, or unreadable)", dir)
			continue
		}
		res.Bytes[i] = kb * 1024
	}
	return res, nil
}

func memfd(name string) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// place moves the paused helper into its cgroups and lowers its CPU and
// I/O priority. Failures leave the walk where it is, said once.
func (r *duRunner) place(pid int) {
	var errs []error
	for _, d := range r.cgroups {
		if err := cgroupfs.WriteFile(filepath.Join(d, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			errs = append(errs, err)
		}
	}
	// Idle I/O class: the walk gets the disk when nobody else wants it
	// (honoured by the BFQ scheduler; mq-deadline and none ignore classes,
	// and the cgroup's own I/O accounting still applies).
	if _, _, e := unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(pid), ioprioClassIdle<<ioprioClassShift); e != 0 {
		errs = append(errs, fmt.Errorf("ioprio_set: %w", e))
	}
	if err := unix.Setpriority(unix.PRIO_PROCESS, pid, 19); err != nil {
		errs = append(errs, fmt.Errorf("setpriority: %w", err))
	}
	if len(errs) > 0 {
		r.warnOnce.Do(func() {
			r.log.Warn("placing the du helper (the walk runs, but may be charged to the agent)", "err", errors.Join(errs...))
		})
	}
}
