// Package filesystem holds the filesystem/linux isolator (first cut, no
// container root filesystem yet): each container gets a private mount
// namespace with its sandbox bind-mounted at /mnt/mesos/sandbox (its working
// directory, $MESOS_SANDBOX), a private /tmp backed by <sandbox>/tmp, and its
// host_path and sandbox_path volumes, read-only ones really read-only. The
// host's root is read-only in it (unless --host_privileges): what the task
// writes lands in its sandbox, where disk isolation counts it. The package
// also holds filesystem/masking (masking_linux.go). Every
// mount is made by the container init inside the container's mount
// namespace, after it made / a recursive slave, so nothing reaches the host's
// mount table and everything goes when the container's last process does:
// there is nothing to clean up.
package filesystem

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/corral/corral/container"
	"github.com/corral/corral/launcher/containerinit"
)

// Name is the isolator's --isolation value.
const Name = "filesystem/linux"

func init() {
	container.RegisterIsolator(Name, func(o container.Options) (container.Isolator, error) {
		return New(o)
	})
}

// Isolator is filesystem/linux.
type Isolator struct {
	sandboxDir string
	// readonlyRoot makes the host's root read-only in the container: only
	// the sandbox, /tmp, /dev/shm and writable volumes can be written.
	readonlyRoot bool
}

// New builds the isolator and creates the sandbox's mount point on the host
// once (without a container root filesystem, the container sees the host's).
func New(o container.Options) (*Isolator, error) {
	set := container.SettingsOf[*Settings](o)
	if err := set.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	dir := filepath.Clean(set.SandboxDirectory)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%s: creating the sandbox mount point: %w", Name, err)
	}
	return &Isolator{sandboxDir: dir, readonlyRoot: !o.HostPrivileges}, nil
}

// Name implements container.Isolator.
func (i *Isolator) Name() string { return Name }

// NeedsNamespaces implements container.NamespaceIsolator.
func (i *Isolator) NeedsNamespaces() bool { return true }

// Recover implements container.Isolator: mounts live and die with the
// containers' mount namespaces; there is nothing to find.
func (i *Isolator) Recover(context.Context, []*container.Config) error { return nil }

// Prepare implements container.Isolator.
func (i *Isolator) Prepare(_ context.Context, c *container.Config) (*container.LaunchInfo, error) {
	if !filepath.IsAbs(c.Sandbox) {
		return nil, fmt.Errorf("sandbox %q is not an absolute path", c.Sandbox)
	}
	sandbox := filepath.Clean(c.Sandbox)
	// The private /tmp lives in the sandbox, world-writable and sticky as
	// /tmp is, and is removed with it.
	tmp := filepath.Join(sandbox, "tmp")
	if err := os.Mkdir(tmp, 0o777); err == nil {
		if err := os.Chmod(tmp, 0o777|os.ModeSticky); err != nil {
			return nil, fmt.Errorf("private /tmp: %w", err)
		}
	} else if !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("private /tmp: %w", err)
	}
	li := &container.LaunchInfo{
		CloneFlags:   syscall.CLONE_NEWNS,
		ReadonlyRoot: i.readonlyRoot,
		WorkDir:      i.sandboxDir,
		Env:          []string{"MESOS_SANDBOX=" + i.sandboxDir},
		Mounts: []containerinit.Mount{
			{Source: sandbox, Target: i.sandboxDir, Flags: syscall.MS_BIND | syscall.MS_REC},
		},
	}
	vols, err := i.volumes(sandbox, c.Volumes)
	if err != nil {
		return nil, err
	}
	li.Mounts = append(li.Mounts, vols...)
	// /tmp comes last, so that volume sources under the host's /tmp are
	// still reachable when they are mounted; volumes aimed below /tmp were
	// mounted below the sandbox's tmp and come along with this recursive
	// bind.
	li.Mounts = append(li.Mounts, containerinit.Mount{
		Source: filepath.Join(i.sandboxDir, "tmp"), Target: "/tmp", Flags: syscall.MS_BIND | syscall.MS_REC,
	})
	return li, nil
}

// volumes validates the container's volumes, creates their mount points and
// returns their mounts, parents before children.
func (i *Isolator) volumes(sandbox string, vols []container.Volume) ([]containerinit.Mount, error) {
	if len(vols) == 0 {
		return nil, nil
	}
	type vol struct {
		m     containerinit.Mount
		depth int
	}
	out := make([]vol, 0, len(vols))
	for _, v := range vols {
		m, err := i.volume(sandbox, v)
		if err != nil {
			return nil, err
		}
		out = append(out, vol{m, strings.Count(m.Target, "/")})
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].depth < out[b].depth })
	mounts := make([]containerinit.Mount, len(out))
	for k, v := range out {
		mounts[k] = v.m
	}
	return mounts, nil
}

func (i *Isolator) volume(sandbox string, v container.Volume) (containerinit.Mount, error) {
	var m containerinit.Mount
	if v.HostPath == "" || !filepath.IsAbs(v.HostPath) {
		return m, fmt.Errorf("volume host path %q must be an absolute path", v.HostPath)
	}
	src, err := os.Stat(v.HostPath)
	if err != nil {
		return m, fmt.Errorf("volume host path %s: %w", v.HostPath, unwrapPath(err))
	}
	cp := v.ContainerPath
	if cp == "" {
		return m, fmt.Errorf("volume %s has no container path", v.HostPath)
	}
	var target, onHost string
	if filepath.IsAbs(cp) {
		target = filepath.Clean(cp)
		switch {
		case target == "/":
			return m, fmt.Errorf("volume container path %q: cannot mount over /", cp)
		case under(target, "/proc"):
			return m, fmt.Errorf("volume container path %q: cannot mount under /proc", cp)
		case under(target, i.sandboxDir):
			onHost = filepath.Join(sandbox, strings.TrimPrefix(target, i.sandboxDir))
		case under(target, "/tmp"):
			// Mounted through the sandbox (see Prepare).
			rest := strings.TrimPrefix(target, "/tmp")
			onHost = filepath.Join(sandbox, "tmp", rest)
			target = filepath.Join(i.sandboxDir, "tmp", rest)
		default:
			// No container root filesystem yet: the mount point is made on the
			// host's, as Mesos does.
			onHost = target
		}
	} else {
		rel := filepath.Clean(cp)
		if rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
			return m, fmt.Errorf("volume container path %q escapes the sandbox", cp)
		}
		target = filepath.Join(i.sandboxDir, rel)
		onHost = filepath.Join(sandbox, rel)
	}
	if under(onHost, sandbox) && onHost != sandbox {
		// A symlink in the sandbox (a fetched archive may hold any) must not
		// lead the mount point out of it.
		if err := staysIn(onHost, sandbox); err != nil {
			return m, fmt.Errorf("volume container path %q: %w", cp, err)
		}
	}
	if err := mountPoint(onHost, src.IsDir()); err != nil {
		return m, fmt.Errorf("volume container path %q: %w", cp, err)
	}
	m = containerinit.Mount{Source: v.HostPath, Target: target, Flags: syscall.MS_BIND | syscall.MS_REC}
	if v.ReadOnly {
		m.Flags |= syscall.MS_RDONLY
	}
	return m, nil
}

func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// staysIn checks that the deepest existing ancestor of p, symlinks resolved,
// is inside dir.
func staysIn(p, dir string) error {
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	for q := p; ; q = filepath.Dir(q) {
		r, err := filepath.EvalSymlinks(q)
		if err == nil {
			if !under(r, realDir) {
				return fmt.Errorf("resolves to %s, outside the sandbox", r)
			}
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) || q == dir || q == "/" {
			return err
		}
	}
}

// mountPoint makes p a directory or an empty file to bind a directory or a
// file onto.
func mountPoint(p string, dir bool) error {
	st, err := os.Stat(p)
	if err == nil {
		if st.IsDir() != dir {
			kind := "a file"
			if dir {
				kind = "a directory"
			}
			return fmt.Errorf("mount point %s exists but the volume is %s", p, kind)
		}
		return nil
	}
	if dir {
		return os.MkdirAll(p, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Isolate implements container.Isolator.
func (i *Isolator) Isolate(context.Context, string, int) error { return nil }

// Cleanup implements container.Isolator: the mounts went with the
// container's mount namespace; <sandbox>/tmp goes with the sandbox.
func (i *Isolator) Cleanup(context.Context, string) error { return nil }
