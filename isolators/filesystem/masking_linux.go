package filesystem

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/corral/corral/container"
	"github.com/corral/corral/launcher/containerinit"
)

// MaskingName is the --isolation value of the masking isolator.
const MaskingName = "filesystem/masking"

func init() {
	container.RegisterIsolator(MaskingName, func(o container.Options) (container.Isolator, error) {
		return NewMasking(o)
	})
}

// Masking is filesystem/masking: what of the host a task must not see or
// change, in the container's mount namespace.
//
//   - A /dev of its own (tmpfs with null, zero, full, random, urandom, tty,
//     a new devpts instance and a private /dev/shm): the host's disks and
//     other devices are not there to open.
//   - /proc and /sys masked as runc masks them: kcore, keys, timer and
//     scheduler debug files read as empty, acpi, scsi, firmware and
//     powercap as empty directories; /proc/sys, sysrq-trigger, irq, bus, fs
//     and all of /sys read-only (a root task cannot set kernel parameters
//     such as core_pattern).
//   - The agent's work_dir and runtime dir covered by empty read-only tmpfs,
//     with the container's own sandbox put back at its path: no other
//     sandbox and no checkpoint is reachable.
type Masking struct {
	hidden []string
}

// NewMasking builds the isolator from the agent's work_dir and runtime dir.
func NewMasking(o container.Options) (*Masking, error) {
	var dirs []string
	for _, d := range []string{o.WorkDir, o.RuntimeDir} {
		if d == "" {
			continue
		}
		if !filepath.IsAbs(d) {
			return nil, fmt.Errorf("%s: %q is not an absolute path", MaskingName, d)
		}
		dirs = append(dirs, filepath.Clean(d))
	}
	// A directory inside another hidden one goes with it.
	var hidden []string
	for _, d := range dirs {
		inside := false
		for _, e := range dirs {
			if e != d && under(d, e) {
				inside = true
			}
		}
		if !inside && !slices.Contains(hidden, d) {
			hidden = append(hidden, d)
		}
	}
	return &Masking{hidden: hidden}, nil
}

const (
	devFlags  = syscall.MS_NOSUID | syscall.MS_NOEXEC
	procFlags = syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC
	charDev   = syscall.S_IFCHR | 0o666
)

func mkdev(major, minor uint64) uint64 { return major<<8 | minor }

// devSteps make the container's /dev.
var devSteps = []containerinit.Mount{
	{Source: "tmpfs", Target: "/dev", FSType: "tmpfs", Flags: devFlags | syscall.MS_RDONLY, Data: "mode=755,size=64k"},
	{Op: containerinit.OpMknod, Target: "/dev/null", Mode: charDev, Dev: mkdev(1, 3)},
	{Op: containerinit.OpMknod, Target: "/dev/zero", Mode: charDev, Dev: mkdev(1, 5)},
	{Op: containerinit.OpMknod, Target: "/dev/full", Mode: charDev, Dev: mkdev(1, 7)},
	{Op: containerinit.OpMknod, Target: "/dev/random", Mode: charDev, Dev: mkdev(1, 8)},
	{Op: containerinit.OpMknod, Target: "/dev/urandom", Mode: charDev, Dev: mkdev(1, 9)},
	{Op: containerinit.OpMknod, Target: "/dev/tty", Mode: charDev, Dev: mkdev(5, 0)},
	{Source: "devpts", Target: "/dev/pts", FSType: "devpts", Flags: devFlags, Data: "newinstance,ptmxmode=0666,mode=0620", MkdirTarget: true},
	{Op: containerinit.OpSymlink, Source: "pts/ptmx", Target: "/dev/ptmx"},
	{Source: "shm", Target: "/dev/shm", FSType: "tmpfs", Flags: procFlags, Data: "mode=1777", MkdirTarget: true},
	{Op: containerinit.OpSymlink, Source: "/proc/self/fd", Target: "/dev/fd"},
	{Op: containerinit.OpSymlink, Source: "/proc/self/fd/0", Target: "/dev/stdin"},
	{Op: containerinit.OpSymlink, Source: "/proc/self/fd/1", Target: "/dev/stdout"},
	{Op: containerinit.OpSymlink, Source: "/proc/self/fd/2", Target: "/dev/stderr"},
}

// Paths masked and made read-only, as runc's defaults.
var (
	maskedFiles = []string{"/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug"}
	maskedDirs  = []string{"/proc/acpi", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"}
	roPaths     = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// maskSteps come after every other mount (a fresh /proc included).
var maskSteps = func() []containerinit.Mount {
	var out []containerinit.Mount
	for _, p := range maskedFiles {
		out = append(out, containerinit.Mount{Source: "/dev/null", Target: p, Flags: syscall.MS_BIND | syscall.MS_RDONLY, Optional: true})
	}
	for _, p := range maskedDirs {
		out = append(out, containerinit.Mount{Source: "tmpfs", Target: p, FSType: "tmpfs", Flags: procFlags | syscall.MS_RDONLY, Data: "size=0", Optional: true})
	}
	for _, p := range roPaths {
		out = append(out, containerinit.Mount{Source: p, Target: p, Flags: syscall.MS_BIND | syscall.MS_REC | syscall.MS_RDONLY, Optional: true})
	}
	return append(out, containerinit.Mount{Op: containerinit.OpReadonly, Target: "/sys", Flags: syscall.MS_REC})
}()

// Name implements container.Isolator.
func (i *Masking) Name() string { return MaskingName }

// NeedsNamespaces implements container.NamespaceIsolator.
func (i *Masking) NeedsNamespaces() bool { return true }

// Recover implements container.Isolator.
func (i *Masking) Recover(context.Context, []*container.Config) error { return nil }

// Prepare implements container.Isolator.
func (i *Masking) Prepare(_ context.Context, c *container.Config) (*container.LaunchInfo, error) {
	sandbox := filepath.Clean(c.Sandbox)
	final := slices.Clone(maskSteps)
	for _, d := range i.hidden {
		hide := containerinit.Mount{Op: containerinit.OpHide, Target: d, Optional: true}
		if under(sandbox, d) {
			hide.Keep = []string{sandbox}
		}
		final = append(final, hide)
	}
	return &container.LaunchInfo{
		CloneFlags:  syscall.CLONE_NEWNS,
		Mounts:      slices.Clone(devSteps),
		FinalMounts: final,
	}, nil
}

// Isolate implements container.Isolator.
func (i *Masking) Isolate(context.Context, string, int) error { return nil }

// Cleanup implements container.Isolator.
func (i *Masking) Cleanup(context.Context, string) error { return nil }
