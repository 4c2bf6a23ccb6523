package seccomp

// This file imports only the standard library so that the container init,
// which pays for every package it links, can call or copy it alone.

import (
	"fmt"
	"runtime"
	"syscall"
	"unsafe"
)

const (
	prSetNoNewPrivs        = 38 // PR_SET_NO_NEW_PRIVS
	seccompSetModeFilter   = 1  // SECCOMP_SET_MODE_FILTER
	seccompFilterFlagTsync = 1  // SECCOMP_FILTER_FLAG_TSYNC
)

// sysSeccomp is __NR_seccomp; package syscall is frozen and lacks it on
// amd64.
func sysSeccomp() uintptr {
	switch runtime.GOARCH {
	case "amd64":
		return 317
	case "arm64", "riscv64", "loong64":
		return 277
	}
	return 0
}

// sockFprog is struct sock_fprog.
type sockFprog struct {
	len    uint16
	_      [6]byte
	filter *byte
}

// LoadFilter sets no_new_privs and installs filter, as returned by
// Profile.Compile, on every thread of the calling process (TSYNC), so no
// thread the Go runtime already started is left unfiltered. The filter
// stays for the life of the process and passes across execve.
func LoadFilter(filter []byte) error {
	if len(filter) == 0 || len(filter)%8 != 0 || len(filter)/8 > 4096 {
		return fmt.Errorf("seccomp: filter of %d bytes is not 1-4096 sock_filter entries", len(filter))
	}
	nr := sysSeccomp()
	if nr == 0 {
		return fmt.Errorf("seccomp: no seccomp syscall number for GOARCH %s", runtime.GOARCH)
	}

	// no_new_privs is per thread and seccomp checks it on the calling
	// thread, so both calls must run on the same one; TSYNC then copies
	// both the flag and the filter to the other threads.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetNoNewPrivs, 1, 0); e != 0 {
		return fmt.Errorf("seccomp: prctl(PR_SET_NO_NEW_PRIVS): %w", e)
	}
	prog := sockFprog{len: uint16(len(filter) / 8), filter: &filter[0]}
	r, _, e := syscall.RawSyscall(nr, seccompSetModeFilter, seccompFilterFlagTsync, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(filter)
	if e != 0 {
		if e == syscall.EINVAL || e == syscall.ENOSYS {
			return fmt.Errorf("seccomp: kernel refused the filter (seccomp unsupported or invalid program): %w", e)
		}
		return fmt.Errorf("seccomp: seccomp(SECCOMP_SET_MODE_FILTER, TSYNC): %w", e)
	}
	if r != 0 {
		// With TSYNC a positive return is the thread that could not be
		// synchronized (it has a filter of its own that is not ours).
		return fmt.Errorf("seccomp: thread %d could not be synchronized to the filter", r)
	}
	return nil
}
