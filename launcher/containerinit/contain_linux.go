package containerinit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

// Syscalls of the new mount API (Linux 5.2+, mount_setattr 5.12+), the same
// numbers on every architecture; the standard library has no wrappers.
const (
	sysOpenTree     = 428
	sysMoveMount    = 429
	sysMountSetattr = 442

	openTreeClone       = 1
	atRecursive         = 0x8000
	atEmptyPath         = 0x1000
	moveMountFEmptyPath = 4
	mountAttrRdonly     = 1
)

type mountAttr struct {
	set, clr, propagation, userns uint64
}

// applyMounts makes the container's mount view: every step in order, then
// the read-only root (the mounts asked to stay writable excepted), then the
// read-only mounts. Read-only comes last so that steps can create mount
// points inside what ends read-only.
func applyMounts(spec *Spec) error {
	if len(spec.Mounts) == 0 && !spec.ReadonlyRoot {
		return nil
	}
	// Keep our mounts out of the host's mount namespace whatever the host's
	// default propagation is.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("making / a slave mount: %w", err)
	}
	done := make([]bool, len(spec.Mounts))
	for i := range spec.Mounts {
		m := &spec.Mounts[i]
		if m.Optional && !exists(m.Target) {
			continue
		}
		if err := applyMount(m); err != nil {
			return err
		}
		done[i] = true
	}
	if spec.ReadonlyRoot {
		if err := setReadonly("/", true, true); err != nil {
			return fmt.Errorf("making the root read-only: %w", err)
		}
		for i, m := range spec.Mounts {
			if !done[i] {
				continue
			}
			var writable []string
			switch m.Op {
			case OpMount:
				if m.Flags&syscall.MS_RDONLY == 0 && m.Flags&(syscall.MS_REMOUNT|syscall.MS_SHARED|syscall.MS_SLAVE|syscall.MS_PRIVATE) == 0 {
					writable = []string{m.Target}
				}
			case OpHide:
				writable = m.Keep
			}
			for _, t := range writable {
				if err := setReadonly(t, false, false); err != nil {
					return fmt.Errorf("keeping %s writable: %w", t, err)
				}
			}
		}
	}
	for i, m := range spec.Mounts {
		if !done[i] {
			continue
		}
		switch {
		case m.Op == OpHide:
			if err := setReadonly(m.Target, true, false); err != nil {
				return fmt.Errorf("making %s read-only: %w", m.Target, err)
			}
		case (m.Op == OpMount && m.Flags&syscall.MS_RDONLY != 0) || m.Op == OpReadonly:
			if err := setReadonly(m.Target, true, m.Flags&syscall.MS_REC != 0); err != nil {
				return fmt.Errorf("making %s read-only: %w", m.Target, err)
			}
		}
	}
	return nil
}

func applyMount(m *Mount) error {
	switch m.Op {
	case OpMount:
		if m.MkdirTarget {
			if err := os.MkdirAll(m.Target, 0o755); err != nil {
				return fmt.Errorf("creating mount point %s: %w", m.Target, err)
			}
		}
		if err := syscall.Mount(m.Source, m.Target, m.FSType, m.Flags&^syscall.MS_RDONLY, m.Data); err != nil {
			return fmt.Errorf("mounting %s on %s: %w", m.Source, m.Target, err)
		}
	case OpHide:
		return hide(m)
	case OpReadonly:
		// Made read-only with the others, after every step.
	case OpSymlink:
		if err := os.Symlink(m.Source, m.Target); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("creating symlink %s: %w", m.Target, err)
		}
	case OpMknod:
		if err := syscall.Mknod(m.Target, m.Mode, int(m.Dev)); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("creating device %s: %w", m.Target, err)
		}
		// mknod's mode is cut by the umask.
		if err := syscall.Chmod(m.Target, m.Mode&0o7777); err != nil {
			return fmt.Errorf("creating device %s: %w", m.Target, err)
		}
	default:
		return fmt.Errorf("mount step %q on %s: unknown", m.Op, m.Target)
	}
	return nil
}

// hide covers m.Target with an empty tmpfs; the trees in m.Keep are cloned
// first (open_tree) and attached again at their paths, so what they show
// is what they showed before, mounts below them included.
func hide(m *Mount) error {
	fds := make([]int, len(m.Keep))
	defer func() {
		for _, fd := range fds {
			if fd > 0 {
				syscall.Close(fd)
			}
		}
	}()
	for i, k := range m.Keep {
		fd, err := openTree(k, true)
		if err != nil {
			return fmt.Errorf("keeping %s visible: open_tree: %w", k, err)
		}
		fds[i] = fd
	}
	data := "mode=755,size=64k"
	if err := syscall.Mount("tmpfs", m.Target, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, data); err != nil {
		return fmt.Errorf("hiding %s: %w", m.Target, err)
	}
	for i, k := range m.Keep {
		if err := os.MkdirAll(k, 0o755); err != nil {
			return fmt.Errorf("keeping %s visible: %w", k, err)
		}
		if err := moveMount(fds[i], k); err != nil {
			return fmt.Errorf("keeping %s visible: move_mount: %w", k, err)
		}
	}
	return nil
}

func exists(p string) bool {
	var st syscall.Stat_t
	return syscall.Lstat(p, &st) == nil
}

// openTree clones the mount tree at path (with the mounts below it when
// recursive) into a detached mount held by the returned descriptor.
func openTree(path string, recursive bool) (int, error) {
	p, err := syscall.BytePtrFromString(path)
	if err != nil {
		return -1, err
	}
	flags := uintptr(openTreeClone | syscall.O_CLOEXEC)
	if recursive {
		flags |= atRecursive
	}
	fd, _, e := syscall.Syscall(sysOpenTree, uintptr(atFDCWD), uintptr(unsafe.Pointer(p)), flags)
	if e != 0 {
		return -1, e
	}
	return int(fd), nil
}

func moveMount(fd int, to string) error {
	empty, _ := syscall.BytePtrFromString("")
	p, err := syscall.BytePtrFromString(to)
	if err != nil {
		return err
	}
	_, _, e := syscall.Syscall6(sysMoveMount, uintptr(fd), uintptr(unsafe.Pointer(empty)), uintptr(atFDCWD), uintptr(unsafe.Pointer(p)), moveMountFEmptyPath, 0)
	if e != 0 {
		return e
	}
	return nil
}

// atFDCWD is AT_FDCWD, a variable so that it converts to uintptr.
var atFDCWD = -0x64

// setReadonly sets (or clears) the read-only flag of the mount at path, of
// every mount below it too when recursive.
func setReadonly(path string, ro, recursive bool) error {
	p, err := syscall.BytePtrFromString(path)
	if err != nil {
		return err
	}
	attr := mountAttr{}
	if ro {
		attr.set = mountAttrRdonly
	} else {
		attr.clr = mountAttrRdonly
	}
	flags := uintptr(0)
	if recursive {
		flags = atRecursive
	}
	_, _, e := syscall.Syscall6(sysMountSetattr, uintptr(atFDCWD), uintptr(unsafe.Pointer(p)), flags, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	if e != 0 {
		return e
	}
	return nil
}

// Capability and seccomp constants of linux/capability.h, prctl.h and
// seccomp.h.
const (
	prCapbsetDrop        = 24
	prSetNoNewPrivs      = 38
	prCapAmbient         = 47
	prCapAmbientClearAll = 4
	capV3                = 0x20080522
	// lastCapability bounds the drop loop: PR_CAPBSET_DROP of a number the
	// kernel does not know is EINVAL, which ends it.
	lastCapability = 63

	seccompSetModeFilter  = 1
	seccompFilterFlagSync = 1
)

type capHeader struct {
	version uint32
	pid     int32
}

type capData struct {
	effective, permitted, inheritable uint32
}

// applyPrivileges bounds what the task may hold: the capability bounding
// and inheritable sets, no_new_privs, the seccomp filter. The init's own
// effective set stays: it still switches to the task's user after this.
func applyPrivileges(spec *Spec) error {
	if spec.Capabilities != nil {
		keep := map[uint]bool{}
		for _, c := range *spec.Capabilities {
			keep[c] = true
		}
		for c := uint(0); c <= lastCapability; c++ {
			if keep[c] {
				continue
			}
			if err := prctl(prCapbsetDrop, uintptr(c)); err != nil {
				if err == syscall.EINVAL {
					break
				}
				return fmt.Errorf("dropping capability %d from the bounding set: %w", c, err)
			}
		}
		if err := setInheritable(keep); err != nil {
			return err
		}
		if _, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, prCapAmbient, prCapAmbientClearAll, 0, 0, 0, 0); e != 0 && e != syscall.EINVAL {
			return fmt.Errorf("clearing the ambient capabilities: %w", e)
		}
	}
	if spec.NoNewPrivs || len(spec.Seccomp) > 0 {
		if _, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetNoNewPrivs, 1, 0, 0, 0, 0); e != 0 {
			return fmt.Errorf("setting no_new_privs: %w", e)
		}
	}
	if len(spec.Seccomp) > 0 {
		if err := LoadSeccomp(spec.Seccomp); err != nil {
			return err
		}
	}
	return nil
}

// setInheritable makes the inheritable set the kept capabilities: a root
// task's permitted set after exec is inheritable | bounding.
func setInheritable(keep map[uint]bool) error {
	hdr := capHeader{version: capV3}
	var data [2]capData
	if _, _, e := syscall.RawSyscall(syscall.SYS_CAPGET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("capget: %w", e)
	}
	data[0].inheritable, data[1].inheritable = 0, 0
	for c := range keep {
		if c < 64 {
			data[c/32].inheritable |= 1 << (c % 32)
		}
	}
	data[0].inheritable &= data[0].permitted
	data[1].inheritable &= data[1].permitted
	if _, _, e := syscall.RawSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("capset: %w", e)
	}
	return nil
}

// LoadSeccomp installs a classic BPF program (8-byte sock_filter entries)
// on every thread of the init (TSYNC), so the task inherits it whichever
// thread forks it.
func LoadSeccomp(prog []byte) error {
	if len(prog) == 0 || len(prog)%8 != 0 || len(prog)/8 > 4096 {
		return fmt.Errorf("seccomp filter of %d bytes is not a BPF program", len(prog))
	}
	type sockFilter struct {
		code   uint16
		jt, jf uint8
		k      uint32
	}
	filter := make([]sockFilter, len(prog)/8)
	for i := range filter {
		b := prog[i*8:]
		filter[i] = sockFilter{binary.LittleEndian.Uint16(b), b[2], b[3], binary.LittleEndian.Uint32(b[4:])}
	}
	fprog := struct {
		len    uint16
		filter *sockFilter
	}{uint16(len(filter)), &filter[0]}
	if _, _, e := syscall.RawSyscall(sysSeccomp, seccompSetModeFilter, seccompFilterFlagSync, uintptr(unsafe.Pointer(&fprog))); e != 0 {
		return fmt.Errorf("loading the seccomp filter: %w", e)
	}
	return nil
}
