package namespaces

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/moby/sys/mountinfo"

	"github.com/corral/corral/container"
	"github.com/corral/corral/launcher/containerinit"
)

// CgroupName is the --isolation value of the cgroup namespace isolator.
const CgroupName = "namespaces/cgroup"

func init() {
	container.RegisterIsolator(CgroupName, func(o container.Options) (container.Isolator, error) {
		cg, err := NewCgroup(o)
		if err != nil {
			return nil, err
		}
		return &isolator{name: CgroupName, prepare: cg.prepare}, nil
	})
}

// Cgroup is namespaces/cgroup: the container gets its own cgroup namespace
// and, in its mount namespace, fresh read-only mounts of every cgroup
// hierarchy the host has under the cgroups hierarchy path. Mounted from
// inside the namespace, each shows the container's own cgroup as its root:
// the task can read its limits and usage and change none of them, and no
// hierarchy's release_agent is reachable (the kernel lets only the initial
// cgroup namespace write it).
type Cgroup struct {
	mounts []containerinit.Mount
}

// NewCgroup reads the host's cgroup mounts once: the launch path only
// copies the list.
func NewCgroup(o container.Options) (*Cgroup, error) {
	hier := o.CgroupsHierarchy
	if hier == "" {
		hier = "/sys/fs/cgroup"
	}
	hier = filepath.Clean(hier)
	if _, err := os.Stat("/proc/self/ns/cgroup"); err != nil {
		return nil, fmt.Errorf("%s: this kernel has no cgroup namespaces: %w", CgroupName, err)
	}
	mounts, err := cgroupView(hier)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", CgroupName, err)
	}
	return &Cgroup{mounts: mounts}, nil
}

// cgroupView is the steps that rebuild hier's cgroup mounts: a read-only
// tmpfs, and on it one cgroup2 mount when hier is one, else a mount of each
// hierarchy found directly below hier, and hier's symlinks (cpu ->
// cpu,cpuacct).
func cgroupView(hier string) ([]containerinit.Mount, error) {
	infos, err := mountinfo.GetMounts(func(m *mountinfo.Info) (bool, bool) {
		return m.FSType != "cgroup" && m.FSType != "cgroup2", false
	})
	if err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	const flags = syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC | syscall.MS_RDONLY
	// A tmpfs first, in either case: the kernel refuses a file system's
	// mount on a mount point that is already a mount of the same
	// superblock (EBUSY), and cgroup2 has one superblock.
	out := []containerinit.Mount{{Source: "tmpfs", Target: hier, FSType: "tmpfs", Flags: flags, Data: "mode=755,size=64k"}}
	for _, m := range infos {
		if m.Mountpoint == hier && m.FSType == "cgroup2" {
			return append(out, containerinit.Mount{Source: "cgroup2", Target: hier, FSType: "cgroup2", Flags: flags}), nil
		}
	}
	controllers, err := knownControllers()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, m := range infos {
		if filepath.Dir(m.Mountpoint) != hier || seen[m.Mountpoint] {
			continue
		}
		seen[m.Mountpoint] = true
		step := containerinit.Mount{Source: "cgroup", Target: m.Mountpoint, FSType: m.FSType, Flags: flags, MkdirTarget: true}
		if m.FSType == "cgroup" {
			step.Data = hierarchyOptions(m.VFSOptions, controllers)
		}
		out = append(out, step)
	}
	if len(seen) == 0 {
		return nil, fmt.Errorf("no cgroup hierarchy is mounted at or below %s", hier)
	}
	entries, err := os.ReadDir(hier)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.Type()&os.ModeSymlink == 0 {
			continue
		}
		p := filepath.Join(hier, e.Name())
		dst, err := os.Readlink(p)
		if err != nil {
			return nil, err
		}
		out = append(out, containerinit.Mount{Op: containerinit.OpSymlink, Source: dst, Target: p})
	}
	return out, nil
}

// hierarchyOptions keeps what names a v1 hierarchy (its controllers and
// name=): mounting it again needs no more, and release_agent= must not be
// copied.
func hierarchyOptions(super string, controllers []string) string {
	var keep []string
	for _, o := range strings.Split(super, ",") {
		if strings.HasPrefix(o, "name=") || slices.Contains(controllers, o) {
			keep = append(keep, o)
		}
	}
	return strings.Join(keep, ",")
}

func knownControllers() ([]string, error) {
	b, err := os.ReadFile("/proc/cgroups")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && !strings.HasPrefix(f[0], "#") {
			out = append(out, f[0])
		}
	}
	return out, nil
}

func (i *Cgroup) prepare(*container.Config) (*container.LaunchInfo, error) {
	return &container.LaunchInfo{
		CloneFlags:  syscall.CLONE_NEWNS,
		CgroupNS:    true,
		FinalMounts: slices.Clone(i.mounts),
	}, nil
}
