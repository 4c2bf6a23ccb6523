package container

import (
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

var deadlinePast = time.Unix(1, 0)

// si_code values for SIGCHLD (asm-generic/siginfo.h).
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

// siginfoChld is the SIGCHLD layout of siginfo_t on Linux (all architectures
// Go supports with 32-bit int fields): signo, errno, code, then pid, uid and
// status.
type siginfoChld struct {
	Signo  int32
	Errno  int32
	Code   int32
	_      int32 // padding before the union on 64-bit
	Pid    int32
	UID    uint32
	Status int32
}

func pidOf(info *unix.Siginfo) int {
	return int((*siginfoChld)(unsafe.Pointer(info)).Pid)
}

// waitStatusOf converts waitid's (code, status) into wait4's encoding, which
// is what the rest of the agent and the Mesos API (TaskStatus, termination)
// speak.
func waitStatusOf(info *unix.Siginfo) syscall.WaitStatus {
	c := (*siginfoChld)(unsafe.Pointer(info))
	switch c.Code {
	case cldExited:
		return syscall.WaitStatus((c.Status & 0xff) << 8)
	case cldKilled:
		return syscall.WaitStatus(c.Status & 0x7f)
	case cldDumped:
		return syscall.WaitStatus(c.Status&0x7f | 0x80)
	}
	return syscall.WaitStatus(c.Status)
}
