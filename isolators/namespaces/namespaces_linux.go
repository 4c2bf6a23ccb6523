// Package namespaces holds the namespaces/pid, namespaces/ipc and
// namespaces/uts isolators. Each only asks for clone flags and in-namespace
// set-up steps (a fresh /proc, a private /dev/shm, a hostname) that the
// container init applies; none has state or files of its own to clean up.
// They need a launcher that creates namespaces (--launcher=linux):
// containerizer.New refuses them with posix.
package namespaces

import (
	"context"
	"fmt"
	"os"
	"syscall"

	"github.com/corral/corral/container"
	"github.com/corral/corral/launcher/containerinit"
)

// MaxHostname is the kernel's limit on a hostname (HOST_NAME_MAX).
const MaxHostname = 64

func init() {
	container.RegisterIsolator("namespaces/pid", func(container.Options) (container.Isolator, error) {
		return &isolator{name: "namespaces/pid", prepare: preparePID}, nil
	})
	container.RegisterIsolator("namespaces/ipc", func(o container.Options) (container.Isolator, error) {
		if st, err := os.Stat("/dev/shm"); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("namespaces/ipc: /dev/shm is not a directory on this host (%v); it is the mount point of the private one", err)
		}
		li := container.LaunchInfo{
			CloneFlags: syscall.CLONE_NEWIPC | syscall.CLONE_NEWNS,
			Mounts: []containerinit.Mount{{
				Source: "shm", Target: "/dev/shm", FSType: "tmpfs",
				Flags: syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC,
				Data:  "mode=1777",
			}},
		}
		if size := container.SettingsOf[*Settings](o).ShmSize; size != "" {
			li.Mounts[0].Data += ",size=" + size
		}
		return &isolator{name: "namespaces/ipc", prepare: func(*container.Config) (*container.LaunchInfo, error) {
			out := li
			return &out, nil
		}}, nil
	})
	container.RegisterIsolator("namespaces/uts", func(container.Options) (container.Isolator, error) {
		return &isolator{name: "namespaces/uts", prepare: prepareUTS}, nil
	})
}

// preparePID: a new PID namespace in which the init is PID 1 and the task its
// child, with a /proc of its own (which needs a mount namespace).
func preparePID(*container.Config) (*container.LaunchInfo, error) {
	return &container.LaunchInfo{
		CloneFlags:  syscall.CLONE_NEWPID | syscall.CLONE_NEWNS,
		RemountProc: true,
	}, nil
}

// prepareUTS: a new UTS namespace named after ContainerInfo.hostname, else
// after the container ID (cut to the kernel's limit).
func prepareUTS(c *container.Config) (*container.LaunchInfo, error) {
	name := c.Hostname
	if name == "" {
		name = c.ID
		if len(name) > MaxHostname {
			name = name[:MaxHostname]
		}
	} else if len(name) > MaxHostname {
		return nil, fmt.Errorf("hostname %q is longer than %d bytes", name, MaxHostname)
	}
	return &container.LaunchInfo{CloneFlags: syscall.CLONE_NEWUTS, Hostname: name}, nil
}

type isolator struct {
	name    string
	prepare func(*container.Config) (*container.LaunchInfo, error)
}

func (i *isolator) Name() string { return i.name }

// NeedsNamespaces implements container.NamespaceIsolator.
func (i *isolator) NeedsNamespaces() bool { return true }

func (i *isolator) Recover(context.Context, []*container.Config) error { return nil }

func (i *isolator) Prepare(_ context.Context, c *container.Config) (*container.LaunchInfo, error) {
	return i.prepare(c)
}

func (i *isolator) Isolate(context.Context, string, int) error { return nil }

func (i *isolator) Cleanup(context.Context, string) error { return nil }
