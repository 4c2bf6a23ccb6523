// Package linux is the launcher that makes one cgroup per container the unit
// of tracking and killing, and creates the namespaces the isolators ask for.
//
// Cgroup layout, shared with the cgroups isolators:
//
//   - cgroup v2 (the hierarchy is a cgroup2 mount): the container's cgroup is
//     <hierarchy>/<cgroups_root>/<container ID>. The launcher creates it in
//     Fork, with cpu, memory, pids and io (those the kernel offers) enabled
//     in the subtree_control of every level down to <cgroups_root>, and
//     starts the init inside it atomically (clone3 CLONE_INTO_CGROUP). The
//     cgroups isolators write their files into that same cgroup in Isolate.
//   - cgroup v1 (hybrid or legacy): the launcher's tracking cgroup is
//     <hierarchy>/freezer/<cgroups_root>/<container ID>; Fork starts the
//     init, paused on its sync pipe so that it cannot fork yet, and moves it
//     there before returning. The v1 cgroups isolators own their own
//     hierarchies.
//
// Destroy kills through the cgroup (container/cgroupfs, shared with the
// cgroups isolators and the systemd scope): cgroup.kill on v2 (freeze,
// kill, thaw where the kernel has no cgroup.kill), freeze → SIGKILL → thaw
// on v1 with bounded retries so a stuck freeze cannot hang the agent; then
// it waits for the cgroup to empty and removes it, retrying while the
// kernel says EBUSY.
// Recover thaws a container it takes back frozen: its agent died between a
// destroy's freeze and thaw.
package linux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral/corral/container"
	"github.com/corral/corral/container/cgroupfs"
)

// Name is the launcher's --launcher value.
const Name = "linux"

// DefaultHierarchy is where cgroups are mounted unless
// Options.CgroupsHierarchy says otherwise. When the hierarchy is a cgroup2
// mount the launcher works in v2 mode, otherwise it uses <it>/freezer.
// Options.TrackingCgroups (v1 only) are joined by every container init
// before it runs: under systemd, the containers' scope in systemd's own
// hierarchies (launcher/systemd), so that systemd counts them in that scope
// and not in the agent's unit.
const DefaultHierarchy = cgroupfs.DefaultMount

// Controllers the launcher enables for container cgroups on v2, when the
// kernel offers them.
var v2Controllers = []string{"cpu", "memory", "pids", "io"}

// removeWait bounds the retries of removing a killed container's cgroup
// while the kernel still reports it busy.
const removeWait = 2500 * time.Millisecond

func init() {
	container.RegisterLauncher(Name, func(o container.Options) (container.Launcher, error) {
		return New(o)
	})
	container.RegisterLauncherCheck(Name, Usable)
}

// Usable reports why the linux launcher cannot run here, or nil when it can:
// it needs root and a cgroup2 mount at the hierarchy or a cgroup v1 freezer
// hierarchy below it. It only looks (two statfs calls); it creates nothing.
func Usable(o container.Options) error {
	if os.Geteuid() != 0 {
		return errors.New("the linux launcher needs root")
	}
	hier := hierarchy(o)
	v2, _, err := cgroupfs.FSType(hier)
	if err != nil {
		return fmt.Errorf("--cgroups_hierarchy: %w", err)
	}
	if v2 {
		return nil
	}
	fz := filepath.Join(hier, "freezer")
	if _, v1, err := cgroupfs.FSType(fz); err != nil || !v1 {
		return fmt.Errorf("--cgroups_hierarchy: %s is neither a cgroup2 mount nor holds a cgroup v1 freezer hierarchy at %s", hier, fz)
	}
	return nil
}

func hierarchy(o container.Options) string {
	if h := o.CgroupsHierarchy; h != "" {
		return filepath.Clean(h)
	}
	return DefaultHierarchy
}

// Launcher starts every container in a cgroup of its own.
type Launcher struct {
	v2 bool
	// base is the hierarchy holding the tracking cgroups: the cgroup2 mount
	// or the v1 freezer hierarchy.
	base string
	// root is the cgroups root relative to base ("corral").
	root    string
	rootDir string
	// hasKill: the kernel has cgroup.kill (v2, Linux 5.14+).
	hasKill bool
	// tracking are Options.TrackingCgroups (v1 only).
	tracking []string

	mu   sync.Mutex
	ctrs map[string]*ctr
}

type ctr struct {
	// mu serialises Destroy calls for one container (the agent's Destroy
	// and the reaper's may overlap).
	mu   sync.Mutex
	proc *container.Process
	// dir is the container's cgroup when it is not under the launcher's
	// root: one recovered from an agent that ran with another root (before
	// systemd's scope was used, or with another --cgroups_root).
	dir string
}

// New builds a linux launcher: it detects the cgroup mode, creates the
// cgroups root and, on v2, enables the controllers below it.
func New(o container.Options) (*Launcher, error) {
	hier := hierarchy(o)
	root, err := cgroupfs.CleanRoot(o.CgroupsRoot)
	if err != nil {
		return nil, fmt.Errorf("linux launcher: --cgroups_root: %w", err)
	}
	l := &Launcher{root: root, ctrs: map[string]*ctr{}}
	v2, _, err := cgroupfs.FSType(hier)
	if err != nil {
		return nil, fmt.Errorf("linux launcher: --cgroups_hierarchy: %w", err)
	}
	if v2 {
		l.v2, l.base = true, hier
	} else {
		fz := filepath.Join(hier, "freezer")
		if _, v1, err := cgroupfs.FSType(fz); err != nil || !v1 {
			return nil, fmt.Errorf("linux launcher: --cgroups_hierarchy: %s is neither a cgroup2 mount nor holds a cgroup v1 freezer hierarchy at %s (mount one, or use --launcher=posix)", hier, fz)
		}
		l.base = fz
	}
	l.rootDir = filepath.Join(l.base, root)
	if !l.v2 {
		for _, d := range o.TrackingCgroups {
			if _, err := os.Stat(filepath.Join(d, "cgroup.procs")); err != nil {
				return nil, fmt.Errorf("linux launcher: tracking cgroup: %w", err)
			}
			l.tracking = append(l.tracking, d)
		}
	}
	if err := l.ensureRoot(); err != nil {
		return nil, err
	}
	if l.v2 {
		l.hasKill = cgroupfs.HasKill(l.rootDir)
	}
	return l, nil
}

// Name implements container.Launcher.
func (l *Launcher) Name() string { return Name }

// CreatesNamespaces implements container.NamespaceLauncher.
func (l *Launcher) CreatesNamespaces() bool { return true }

// CgroupV2 reports whether the launcher works on the unified hierarchy.
func (l *Launcher) CgroupV2() bool { return l.v2 }

// CgroupsRoot is the cgroups root the launcher works under, relative to
// each hierarchy ("corral"); the cgroups isolators use the same.
func (l *Launcher) CgroupsRoot() string { return l.root }

// CgroupPath returns the container's tracking cgroup directory.
func (l *Launcher) CgroupPath(id string) string { return filepath.Join(l.rootDir, id) }

// ensureRoot creates the cgroups root and, on v2, enables the controllers
// for its children at every level from the hierarchy's root down.
func (l *Launcher) ensureRoot() error {
	if err := os.MkdirAll(l.rootDir, 0o755); err != nil {
		return fmt.Errorf("linux launcher: creating cgroups root: %w", err)
	}
	if !l.v2 {
		return nil
	}
	dir := l.base
	levels := []string{dir}
	for _, part := range strings.Split(l.root, "/") {
		dir = filepath.Join(dir, part)
		levels = append(levels, dir)
	}
	for _, d := range levels {
		if err := cgroupfs.EnableControllers(d, v2Controllers); err != nil {
			return fmt.Errorf("linux launcher: %w", err)
		}
	}
	return nil
}

// Fork implements container.Launcher.
func (l *Launcher) Fork(_ context.Context, spec *container.ForkSpec) (*container.Process, error) {
	dir := l.CgroupPath(spec.ID)
	if err := l.mkdirCgroup(dir); err != nil {
		return nil, err
	}
	files := make([]uintptr, len(spec.Files))
	for i, f := range spec.Files {
		files[i] = f.Fd()
	}
	sys := &syscall.SysProcAttr{Setsid: true, Cloneflags: spec.CloneFlags}
	if l.v2 {
		fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			_ = unix.Rmdir(dir)
			return nil, fmt.Errorf("opening cgroup %s: %w", dir, err)
		}
		defer unix.Close(fd)
		sys.UseCgroupFD, sys.CgroupFD = true, fd
	}
	p, err := container.StartProcess(spec.Path, spec.Argv, &syscall.ProcAttr{
		Dir: spec.Dir, Env: spec.Env, Files: files, Sys: sys,
	})
	if err != nil {
		_ = unix.Rmdir(dir)
		return nil, fmt.Errorf("starting container init (clone flags %#x): %w", spec.CloneFlags, err)
	}
	if !l.v2 {
		// The init waits on its sync pipe and so has not forked: moving it
		// moves the whole container.
		for i, d := range append(slices.Clip(l.tracking), dir) {
			err := cgroupfs.WriteFile(filepath.Join(d, "cgroup.procs"), fmt.Sprint(p.Pid()))
			if err != nil && i < len(l.tracking) && errors.Is(err, os.ErrNotExist) {
				// systemd's scope is gone (its keeper was killed and its
				// last container ended): the container runs all the same,
				// in the agent's unit, until an agent restart makes the
				// scope again.
				continue
			}
			if err != nil {
				_ = p.Signal(syscall.SIGKILL)
				_, _, _ = p.Wait(context.Background())
				_ = p.Close()
				_ = unix.Rmdir(dir)
				return nil, fmt.Errorf("moving container init into %s: %w", d, err)
			}
		}
	}
	l.mu.Lock()
	l.ctrs[spec.ID] = &ctr{proc: p}
	l.mu.Unlock()
	return p, nil
}

// mkdirCgroup creates the container's cgroup. A leftover empty cgroup of the
// same ID (a destroy that could not finish) is reused; one with processes is
// an error.
func (l *Launcher) mkdirCgroup(dir string) error {
	err := unix.Mkdir(dir, 0o755)
	if err == unix.ENOENT {
		// The root went away under us (removed by hand): make it again.
		if rerr := l.ensureRoot(); rerr != nil {
			return rerr
		}
		err = unix.Mkdir(dir, 0o755)
	}
	if err == unix.EEXIST {
		pids, perr := cgroupfs.ReadPids(dir)
		if perr == nil && len(pids) == 0 {
			return nil
		}
		return fmt.Errorf("cgroup %s already exists and holds processes %v", dir, pids)
	}
	if err != nil {
		return fmt.Errorf("creating cgroup %s: %w", dir, err)
	}
	return nil
}

func (l *Launcher) entry(id string) *ctr {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.ctrs[id]
	if c == nil {
		c = &ctr{}
		l.ctrs[id] = c
	}
	return c
}

func (l *Launcher) forget(id string, c *ctr) {
	l.mu.Lock()
	if l.ctrs[id] == c {
		delete(l.ctrs, id)
	}
	l.mu.Unlock()
}

// Destroy implements container.Launcher: it kills every process in the
// container's cgroup (and the cgroups below it), waits until they are gone
// and removes the cgroup. Destroying a container that has no cgroup is not
// an error.
func (l *Launcher) Destroy(ctx context.Context, id string) error {
	if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return fmt.Errorf("invalid container ID %q", id)
	}
	c := l.entry(id)
	c.mu.Lock()
	defer c.mu.Unlock()
	dir := l.CgroupPath(id)
	if c.dir != "" {
		dir = c.dir
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		l.forget(id, c)
		return nil
	}
	if err := cgroupfs.Kill(ctx, dir, l.v2, l.hasKill); err != nil {
		return fmt.Errorf("destroying container %s: %w", id, err)
	}
	if err := cgroupfs.RemoveTree(ctx, dir, cgroupfs.RemoveOptions{Timeout: removeWait}); err != nil {
		return fmt.Errorf("destroying container %s: %w", id, err)
	}
	l.forget(id, c)
	return nil
}

// Recover implements container.Launcher: the known containers' cgroups
// are taken back; every other cgroup under the root is an orphan and is
// destroyed, processes and all.
func (l *Launcher) Recover(ctx context.Context, known map[string]*container.Process) error {
	if err := l.ensureRoot(); err != nil {
		return err
	}
	entries, err := os.ReadDir(l.rootDir)
	if err != nil {
		return fmt.Errorf("linux launcher: listing %s: %w", l.rootDir, err)
	}
	var errs []error
	found := map[string]bool{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		id := e.Name()
		found[id] = true
		if p, ok := known[id]; ok {
			if err := l.thaw(filepath.Join(l.rootDir, id)); err != nil {
				errs = append(errs, fmt.Errorf("container %s: %w", id, err))
			}
			l.mu.Lock()
			l.ctrs[id] = &ctr{proc: p}
			l.mu.Unlock()
			continue
		}
		if err := l.Destroy(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("orphan: %w", err))
		}
	}
	// A live container that is not under the root was started by an agent
	// with another root (an upgrade to systemd's scope, a changed
	// --cgroups_root): it is adopted where its init is, so that destroying
	// it still kills it by its cgroup. The cgroup must be named by the
	// container's ID, as everything Corral makes is.
	for id, p := range known {
		if found[id] || p == nil {
			continue
		}
		ctrl := "freezer"
		if l.v2 {
			ctrl = ""
		}
		rel, ok, _ := cgroupfs.CgroupOf(p.Pid(), ctrl)
		if !ok || path.Base(rel) != id {
			continue
		}
		dir := filepath.Join(l.base, rel)
		if err := l.thaw(dir); err != nil {
			errs = append(errs, fmt.Errorf("container %s: %w", id, err))
		}
		l.mu.Lock()
		l.ctrs[id] = &ctr{proc: p, dir: dir}
		l.mu.Unlock()
	}
	return errors.Join(errs...)
}

// thaw unfreezes a recovered container's cgroup. Only a destroy freezes
// one, and only for the moment of its kill: a container found frozen is
// one whose agent died in the middle of a destroy (killed, or by SIGPIPE on
// a closed log pipe). Left frozen, its processes would sit in D state
// until something destroyed it: a task meant to run on after the restart
// would be stuck for good, and an executor could not re-subscribe. Thawed,
// it runs on, or is destroyed, like any other recovered container.
func (l *Launcher) thaw(dir string) error { return cgroupfs.Thaw(dir, l.v2) }

// Containers lists the IDs whose cgroups exist under the root (for tests and
// diagnostics).
func (l *Launcher) Containers() ([]string, error) {
	entries, err := os.ReadDir(l.rootDir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// RemoveRoot removes the cgroups root if it is empty (tests that use a root
// of their own).
func (l *Launcher) RemoveRoot() error {
	dirs := []string{l.rootDir}
	for d := filepath.Dir(l.root); d != "." && d != "/"; d = filepath.Dir(d) {
		dirs = append(dirs, filepath.Join(l.base, d))
	}
	for _, d := range dirs {
		if err := unix.Rmdir(d); err != nil && err != unix.ENOENT {
			return &os.PathError{Op: "rmdir", Path: d, Err: err}
		}
	}
	return nil
}
