package containerinit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

// Main runs the container init and never returns. The agent sends the spec
// as one JSON line on the sync pipe, then one byte as the go-ahead.
func Main() {
	// The bounding set and no_new_privs are per thread: the task must be
	// forked from the thread that dropped them.
	runtime.LockOSThread()
	os.Exit(run())
}

func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "corral-init: "+format+"\n", args...)
	return ExitSetupFailed
}

func run() int {
	// Signals are caught first thing: a kill (or the agent's DestroySignal)
	// that arrives while the task starts is forwarded rather than lost. One
	// that comes while the Go runtime is still starting, before this line,
	// is dropped; the agent repeats its destroy until the init exits.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGCHLD, DestroySignal)

	sync := bufio.NewReader(os.NewFile(SyncFD, "sync"))
	raw, err := sync.ReadBytes('\n')
	if err != nil {
		// The agent gave up on the launch before sending the spec.
		return ExitAborted
	}
	var spec Spec
	if err := json.Unmarshal(raw, &spec); err != nil {
		return fail("parsing spec: %v", err)
	}
	if len(spec.Argv) == 0 {
		return fail("spec has no command")
	}

	if !awaitGoAhead(sync) {
		return ExitAborted
	}
	if spec.StartedPath != "" {
		// Before anything of the task runs (an empty file: no fsync, the
		// runtime directory does not outlive the boot anyway).
		f, err := os.OpenFile(spec.StartedPath, os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			return fail("recording the start: %v", err)
		}
		f.Close()
	}

	// Orphans of the task reparent to us, not to the host's init, so that they
	// stay reaped and inside the container's session.
	if err := prctl(pr_SET_CHILD_SUBREAPER, 1); err != nil {
		return fail("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	if spec.Hostname != "" {
		if err := syscall.Sethostname([]byte(spec.Hostname)); err != nil {
			return fail("sethostname %q: %v", spec.Hostname, err)
		}
	}
	exitRecord, err := openStatusDir(spec.StatusPath, len(spec.Mounts) > 0 || spec.ReadonlyRoot)
	if err != nil {
		return fail("%v", err)
	}
	if spec.CgroupNS {
		if err := syscall.Unshare(syscall.CLONE_NEWCGROUP); err != nil {
			return fail("unsharing the cgroup namespace: %v", err)
		}
	}
	if err := applyMounts(&spec); err != nil {
		return fail("%v", err)
	}
	// Last, so that nothing above runs with less than the init needs;
	// it is the thread that starts the task (locked in Main).
	if err := applyPrivileges(&spec); err != nil {
		return fail("%v", err)
	}

	prog := spec.Path
	if prog == "" {
		prog = spec.Argv[0]
	}
	path, err := lookPath(prog)
	if err != nil {
		return fail("%v", err)
	}
	attr := &syscall.ProcAttr{
		Dir:   spec.Dir,
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2},
		// Its own process group, so a forwarded signal reaches the task's
		// children without reaching us.
		Sys: &syscall.SysProcAttr{Setpgid: true},
	}
	if spec.UID != nil {
		cred := &syscall.Credential{Uid: *spec.UID, Gid: *spec.UID, Groups: spec.Groups}
		if spec.GID != nil {
			cred.Gid = *spec.GID
		}
		attr.Sys.Credential = cred
	}
	child, err := syscall.ForkExec(path, spec.Argv, attr)
	if err != nil {
		return fail("starting %q: %v", prog, err)
	}

	for sig := range sigs {
		switch sig {
		case DestroySignal:
			// The agent destroys the container: the task's group first, while
			// its PID is still held by us, then whatever else is left. The task
			// itself too, in case it left its group.
			_ = syscall.Kill(-child, syscall.SIGKILL)
			_ = syscall.Kill(child, syscall.SIGKILL)
		case syscall.SIGCHLD:
		default:
			_ = syscall.Kill(-child, sig.(syscall.Signal))
			continue
		}
		if !reapOthers(child) {
			continue
		}
		// The task is a zombie, so its PID (and its group's ID) cannot have
		// been reused: killing the group reaches only its own processes.
		_ = syscall.Kill(-child, syscall.SIGKILL)
		var status syscall.WaitStatus
		for {
			if _, err := syscall.Wait4(child, &status, 0, nil); err != syscall.EINTR {
				break
			}
		}
		killDescendants()
		if err := exitRecord.write(status); err != nil {
			fmt.Fprintf(os.Stderr, "corral-init: recording exit status: %v\n", err)
		}
		if status.Signaled() {
			return 128 + int(status.Signal())
		}
		return status.ExitStatus()
	}
	return ExitSetupFailed
}

// reapOthers reaps every exited child but the task, and reports whether the
// task has exited; the task is left a zombie so its PID stays ours.
func reapOthers(task int) bool {
	for {
		pid := peekExited()
		if pid <= 0 {
			return false
		}
		if pid == task {
			return true
		}
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	}
}

// peekExited returns the PID of an exited child without reaping it, or 0.
func peekExited() int {
	var info [128]byte // siginfo_t
	const pALL, wEXITED, wNOHANG, wNOWAIT = 0, 4, 1, 0x01000000
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_WAITID, pALL, 0, uintptr(unsafe.Pointer(&info[0])), wEXITED|wNOHANG|wNOWAIT, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return 0
		}
		// si_pid follows signo, errno, code and padding; zero means no
		// child has exited.
		return int(*(*int32)(unsafe.Pointer(&info[16])))
	}
}

// killDescendants kills and reaps every process left in the container. We are
// a child subreaper, so each of them is our child or becomes one when its
// parent dies; the loop ends when we have no children at all.
func killDescendants() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		switch {
		case err == syscall.EINTR || pid > 0:
			continue
		case err != nil: // ECHILD: nothing left
			return
		}
		// Children alive: they are ours and unreaped, so their PIDs are safe
		// to signal.
		for _, c := range childrenOf(os.Getpid()) {
			_ = syscall.Kill(c, syscall.SIGKILL)
		}
		_, _ = syscall.Wait4(-1, &ws, 0, nil)
	}
}

// childrenOf scans /proc for processes whose parent is ppid. It runs only
// when a task left processes behind, never on the launch path.
func childrenOf(ppid int) []int {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	var out []int
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + n + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(ppid) {
			out = append(out, pid)
		}
	}
	return out
}

func awaitGoAhead(sync *bufio.Reader) bool {
	defer syscall.Close(SyncFD)
	_, err := sync.ReadByte()
	return err == nil
}

// statusDir is the runtime directory that receives the exit status, opened
// before the mounts: the task's mount view may cover or hide it (a private
// /tmp over a work_dir in /tmp, the agent's directories hidden).
type statusDir struct {
	fd   int
	name string
}

// With a mount view of its own, the directory is a detached clone of its
// mount (open_tree): the view's read-only root does not reach it.
func openStatusDir(path string, ownView bool) (*statusDir, error) {
	if path == "" {
		return nil, nil
	}
	var fd int
	var err error
	if ownView {
		fd, err = openTree(filepath.Dir(path), false)
	} else {
		fd, err = syscall.Open(filepath.Dir(path), syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("opening the runtime directory: %w", err)
	}
	return &statusDir{fd: fd, name: filepath.Base(path)}, nil
}

// write records the status through a rename, so a reader never sees half
// of it. It is not fsynced: it must outlive the agent's process, which the
// page cache does, not the node; after a reboot recovery reads no status
// (no container survives one, and the runtime directory is cleared).
func (d *statusDir) write(ws syscall.WaitStatus) error {
	if d == nil {
		return nil
	}
	tmp := d.name + ".tmp"
	fd, err := openat(d.fd, tmp, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_TRUNC|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, err = f.WriteString(strconv.Itoa(int(ws)) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return syscall.Renameat(d.fd, tmp, d.fd, d.name)
}

func openat(dirfd int, name string, flags int, mode uint32) (int, error) {
	p, err := syscall.BytePtrFromString(name)
	if err != nil {
		return -1, err
	}
	r, _, e := syscall.Syscall6(syscall.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(flags), uintptr(mode), 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// lookPath resolves a command through PATH as exec would, without linking
// os/exec into the init.
func lookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("command %q not found in PATH %q", name, os.Getenv("PATH"))
}

const pr_SET_CHILD_SUBREAPER = 36

func prctl(option int, arg uintptr) error {
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, uintptr(option), arg, 0); e != 0 {
		return e
	}
	return nil
}
