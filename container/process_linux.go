package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// StartProcess forks and execs path with a pidfd taken atomically at clone.
func StartProcess(path string, argv []string, attr *syscall.ProcAttr) (*Process, error) {
	if attr.Sys == nil {
		attr.Sys = &syscall.SysProcAttr{}
	}
	fd := -1
	attr.Sys.PidFD = &fd
	pid, err := syscall.ForkExec(path, argv, attr)
	if err != nil {
		return nil, err
	}
	p, err := newProcess(pid, fd, true)
	if err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, 0, nil)
		return nil, err
	}
	return p, nil
}

// OpenProcess takes hold of a running process that is not our child (one
// started by an earlier agent), after checking that pid still names the
// process that started at startTime (clock ticks since boot, from
// /proc/<pid>/stat): a PID alone may have been reused.
func OpenProcess(pid int, startTime uint64) (*Process, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	// Checking after opening closes the race: if the start time matches now,
	// the pidfd refers to that process whatever happens to the PID later.
	st, err := ProcessStartTime(pid)
	if err != nil || st != startTime {
		unix.Close(fd)
		return nil, fmt.Errorf("process %d: %w", pid, os.ErrProcessDone)
	}
	return newProcess(pid, fd, false)
}

func newProcess(pid, fd int, child bool) (*Process, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("pidfd of %d: %w", pid, err)
	}
	return &Process{pid: pid, pidfd: os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(pid)), child: child}, nil
}

// Pid is for logs and for kernel interfaces that take a PID (cgroup.procs),
// used only while the pidfd shows the process alive.
func (p *Process) Pid() int { return p.pid }

// Signal delivers sig through the pidfd.
func (p *Process) Signal(sig syscall.Signal) error {
	rc, err := p.pidfd.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.PidfdSendSignal(int(fd), sig, nil, 0)
	}); err != nil {
		return err
	}
	if errors.Is(serr, unix.ESRCH) {
		return os.ErrProcessDone
	}
	return serr
}

// Wait blocks until the process exits. For our own child it reaps it and
// returns its wait status with known=true; for an adopted process the status
// belongs to its new parent and known is false.
func (p *Process) Wait(ctx context.Context) (status syscall.WaitStatus, known bool, err error) {
	rc, err := p.pidfd.SyscallConn()
	if err != nil {
		return 0, false, err
	}
	// A deadline an earlier, cancelled Wait left must not end this one.
	_ = p.pidfd.SetReadDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { _ = p.pidfd.SetReadDeadline(deadlinePast) })
	defer stop()
	var werr error
	done := false
	err = rc.Read(func(fd uintptr) bool {
		if p.child {
			var info unix.Siginfo
			werr = unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG, nil)
			if werr == unix.EINTR {
				return false
			}
			if werr != nil {
				return true
			}
			if pidOf(&info) == 0 {
				return false // not exited yet: wait for the pidfd to turn readable
			}
			status, known, done = waitStatusOf(&info), true, true
			return true
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, perr := unix.Poll(fds, 0)
		if perr == unix.EINTR || (perr == nil && n == 0) {
			return false
		}
		werr, done = perr, perr == nil
		return true
	})
	if err != nil {
		if ctx.Err() != nil {
			return 0, false, ctx.Err()
		}
		return 0, false, err
	}
	if werr != nil {
		return 0, false, fmt.Errorf("waiting for %d: %w", p.pid, werr)
	}
	if !done {
		return 0, false, fmt.Errorf("waiting for %d: interrupted", p.pid)
	}
	return status, known, nil
}

// Exited reports whether the process has exited (a zombie not yet reaped
// included), without waiting.
func (p *Process) Exited() bool {
	rc, err := p.pidfd.SyscallConn()
	if err != nil {
		return false
	}
	exited := false
	_ = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(fds, 0)
			if err == unix.EINTR {
				continue
			}
			exited = err == nil && n > 0
			return
		}
	})
	return exited
}

// Close releases the pidfd.
func (p *Process) Close() error { return p.pidfd.Close() }

// ProcessStartTime reads a process's start time in clock ticks since boot.
func ProcessStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces and parentheses; fields resume after
	// the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	fields := strings.Fields(s[i+1:])
	// starttime is field 22 of stat; fields[0] is field 3.
	if len(fields) < 20 {
		return 0, fmt.Errorf("parsing /proc/%d/stat: %d fields", pid, len(fields))
	}
	return strconv.ParseUint(fields[19], 10, 64)
}
