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
// Destroy kills through the cgroup: cgroup.kill on v2 (freeze, kill, thaw
// where the kernel has no cgroup.kill), freeze → SIGKILL → thaw on v1 with
// bounded retries so a stuck freeze cannot hang the agent; then it waits for
// the cgroup to empty and removes it, retrying while the kernel says EBUSY.
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
)

// Name is the launcher's --launcher value.
const Name = "linux"

// DefaultCgroupsRoot is used when Options.CgroupsRoot is empty.
const DefaultCgroupsRoot = "corral"

// HierarchyKey is the Options.Extra key naming where cgroups are mounted
// (Mesos' --cgroups_hierarchy); default /sys/fs/cgroup. When it is a cgroup2
// mount the launcher works in v2 mode, otherwise it uses <it>/freezer.
const HierarchyKey = "cgroups_hierarchy"

// TrackingCgroupsKey (Options.Extra) lists, comma separated, cgroup
// directories outside the launcher's hierarchy that every container init
// joins before it runs: on cgroup v1 under systemd, the containers' scope in
// systemd's own hierarchies (launcher/systemd), so that systemd counts them
// in that scope and not in the agent's unit.
const TrackingCgroupsKey = "systemd_tracking_cgroups"

// DefaultHierarchy is where cgroups are mounted unless HierarchyKey says
// otherwise.
const DefaultHierarchy = "/sys/fs/cgroup"

// Controllers the launcher enables for container cgroups on v2, when the
// kernel offers them.
var v2Controllers = []string{"cpu", "memory", "pids", "io"}

// Bounds on destroying one container.
var (
	// freezeWait is how long one freeze attempt may take before the
	// cgroup is thawed and the freeze retried.
	freezeWait = 200 * time.Millisecond
	// freezeAttempts bounds the retries; after them processes are killed
	// unfrozen, each checked to be in the cgroup after its pidfd is open.
	freezeAttempts = 5
	// emptyWait bounds the wait for killed processes to leave the cgroup.
	emptyWait = 10 * time.Second
)

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
	v2, _, err := fsType(hier)
	if err != nil {
		return fmt.Errorf("--cgroups_hierarchy: %w", err)
	}
	if v2 {
		return nil
	}
	fz := filepath.Join(hier, "freezer")
	if _, v1, err := fsType(fz); err != nil || !v1 {
		return fmt.Errorf("--cgroups_hierarchy: %s is neither a cgroup2 mount nor holds a cgroup v1 freezer hierarchy at %s", hier, fz)
	}
	return nil
}

func hierarchy(o container.Options) string {
	if h := o.Extra[HierarchyKey]; h != "" {
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
	// tracking are TrackingCgroupsKey's directories (v1 only).
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
	root := o.CgroupsRoot
	if root == "" {
		root = DefaultCgroupsRoot
	}
	root = strings.Trim(filepath.Clean("/"+root), "/")
	if root == "" || strings.Contains(o.CgroupsRoot, "..") {
		return nil, fmt.Errorf("--cgroups_root %q: want a relative cgroup path such as %q", o.CgroupsRoot, DefaultCgroupsRoot)
	}
	l := &Launcher{root: root, ctrs: map[string]*ctr{}}
	v2, _, err := fsType(hier)
	if err != nil {
		return nil, fmt.Errorf("linux launcher: --cgroups_hierarchy: %w", err)
	}
	if v2 {
		l.v2, l.base = true, hier
	} else {
		fz := filepath.Join(hier, "freezer")
		if _, v1, err := fsType(fz); err != nil || !v1 {
			return nil, fmt.Errorf("linux launcher: --cgroups_hierarchy: %s is neither a cgroup2 mount nor holds a cgroup v1 freezer hierarchy at %s (mount one, or use --launcher=posix)", hier, fz)
		}
		l.base = fz
	}
	l.rootDir = filepath.Join(l.base, root)
	if t := o.Extra[TrackingCgroupsKey]; t != "" && !l.v2 {
		for _, d := range strings.Split(t, ",") {
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
		_, err := os.Stat(filepath.Join(l.rootDir, "cgroup.kill"))
		l.hasKill = err == nil
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
		if err := enableControllers(d); err != nil {
			return fmt.Errorf("linux launcher: %w", err)
		}
	}
	return nil
}

// enableControllers turns on, in dir's cgroup.subtree_control, each wanted
// controller that dir offers and that is not on yet.
func enableControllers(dir string) error {
	avail, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return err
	}
	on, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return err
	}
	var want []string
	for _, c := range v2Controllers {
		if hasWord(string(avail), c) && !hasWord(string(on), c) {
			want = append(want, "+"+c)
		}
	}
	if len(want) == 0 {
		return nil
	}
	if err := writeFile(filepath.Join(dir, "cgroup.subtree_control"), strings.Join(want, " ")); err != nil {
		hint := ""
		if errors.Is(err, unix.EBUSY) {
			hint = " (the cgroup has processes of its own; cgroup v2 allows controllers only below cgroups without processes)"
		}
		return fmt.Errorf("enabling %s in %s/cgroup.subtree_control: %w%s", strings.Join(want, " "), dir, err, hint)
	}
	return nil
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
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
			err := writeFile(filepath.Join(d, "cgroup.procs"), fmt.Sprint(p.Pid()))
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
		pids, perr := readPids(filepath.Join(dir, "cgroup.procs"))
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
	var err error
	if l.v2 {
		err = l.killV2(ctx, dir)
	} else {
		err = l.killV1(ctx, dir)
	}
	if err != nil {
		return fmt.Errorf("destroying container %s: %w", id, err)
	}
	if err := rmdirTree(ctx, dir); err != nil {
		return fmt.Errorf("destroying container %s: %w", id, err)
	}
	l.forget(id, c)
	return nil
}

// killV2 kills the cgroup's processes and waits until it is unpopulated.
func (l *Launcher) killV2(ctx context.Context, dir string) error {
	populated := func() (bool, error) {
		b, err := readSmall(filepath.Join(dir, "cgroup.events"), make([]byte, 128))
		if err != nil {
			return false, err
		}
		return !strings.Contains(string(b), "populated 0"), nil
	}
	if p, err := populated(); err != nil || !p {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	deadline := time.Now().Add(emptyWait)
	for attempt := 0; ; attempt++ {
		// Re-killed every few rounds: cgroup.kill is final even for forks
		// under way, but the fallback is not.
		if attempt%16 == 0 {
			if l.hasKill {
				if err := writeFile(filepath.Join(dir, "cgroup.kill"), "1"); err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
			} else {
				l.freezeKillThawV2(ctx, dir)
			}
		}
		p, err := populated()
		if errors.Is(err, os.ErrNotExist) || (err == nil && !p) {
			return nil
		}
		if err != nil {
			return err
		}
		if time.Now().After(deadline) {
			pids, _ := readPids(filepath.Join(dir, "cgroup.procs"))
			return fmt.Errorf("cgroup %s still populated %v after kill (processes %s)", dir, emptyWait, describePids(pids))
		}
		if err := sleep(ctx, backoff(attempt, 50*time.Microsecond, 10*time.Millisecond)); err != nil {
			return err
		}
	}
}

// freezeKillThawV2 is the kill for kernels without cgroup.kill: freeze the
// cgroup (cgroup.freeze, Linux 5.2+) so nothing forks or exits, SIGKILL every
// process of the subtree, thaw.
func (l *Launcher) freezeKillThawV2(ctx context.Context, dir string) {
	frozen := writeFile(filepath.Join(dir, "cgroup.freeze"), "1") == nil &&
		waitFor(ctx, freezeWait, func() bool {
			b, err := readSmall(filepath.Join(dir, "cgroup.events"), make([]byte, 128))
			return err == nil && strings.Contains(string(b), "frozen 1")
		})
	l.killAll(dir, frozen)
	_ = writeFile(filepath.Join(dir, "cgroup.freeze"), "0")
}

// killV1 freezes the container's freezer cgroup, SIGKILLs every process in
// it, thaws it and waits until it is empty.
func (l *Launcher) killV1(ctx context.Context, dir string) error {
	pids, err := readPids(filepath.Join(dir, "cgroup.procs"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(pids) == 0 && !hasChildCgroups(dir) {
		return nil // ended by itself: nothing to freeze
	}
	deadline := time.Now().Add(emptyWait)
	for round := 0; ; round++ {
		frozen := l.freezeV1(ctx, dir)
		l.killAll(dir, frozen)
		_ = writeFile(filepath.Join(dir, "freezer.state"), "THAWED")
		// Killed processes need a moment to run their exit.
		for attempt := 0; attempt < 12; attempt++ {
			if empty(dir) {
				return nil
			}
			if err := sleep(ctx, backoff(attempt, 50*time.Microsecond, 10*time.Millisecond)); err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			pids, _ := readPids(filepath.Join(dir, "cgroup.procs"))
			return fmt.Errorf("cgroup %s not empty %v after kill (processes %s)", dir, emptyWait, describePids(pids))
		}
	}
}

// freezeV1 freezes dir, retrying a freeze that does not complete: a task
// stuck in the kernel can hold a freeze in FREEZING for ever. It reports
// whether the cgroup is frozen.
func (l *Launcher) freezeV1(ctx context.Context, dir string) bool {
	state := filepath.Join(dir, "freezer.state")
	for attempt := 0; attempt < freezeAttempts; attempt++ {
		if err := writeFile(state, "FROZEN"); err != nil {
			return false
		}
		if waitFor(ctx, freezeWait, func() bool {
			b, err := readSmall(state, make([]byte, 32))
			return err == nil && strings.HasPrefix(string(b), "FROZEN")
		}) {
			return true
		}
		_ = writeFile(state, "THAWED")
		if sleep(ctx, time.Duration(attempt+1)*10*time.Millisecond) != nil {
			return false
		}
	}
	return false
}

// killAll SIGKILLs every process in dir's subtree, through pidfds. In a
// frozen cgroup no process can exit, so no PID read from cgroup.procs can be
// reused before it is signalled; unfrozen, each process is checked to be in
// the cgroup once its pidfd is open.
func (l *Launcher) killAll(dir string, frozen bool) {
	var check func(int) bool
	if !frozen {
		rel := "/" + strings.TrimPrefix(dir, l.base+"/")
		check = func(pid int) bool { return memberOf(pid, l.v2, rel) }
	}
	for _, d := range subtree(dir) {
		pids, _ := readPids(filepath.Join(d, "cgroup.procs"))
		for _, pid := range pids {
			killPid(pid, check)
		}
	}
}

func empty(dir string) bool {
	for _, d := range subtree(dir) {
		pids, err := readPids(filepath.Join(d, "cgroup.procs"))
		if err == nil && len(pids) > 0 {
			return false
		}
	}
	return true
}

func hasChildCgroups(dir string) bool { return len(subtree(dir)) > 1 }

// waitFor polls cond with a short backoff for at most d.
func waitFor(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for attempt := 0; ; attempt++ {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || sleep(ctx, backoff(attempt, 20*time.Microsecond, 5*time.Millisecond)) != nil {
			return false
		}
	}
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
		rel, ok := trackingCgroupOf(p.Pid(), l.v2)
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
func (l *Launcher) thaw(dir string) error {
	file, thawed := filepath.Join(dir, "freezer.state"), "THAWED"
	if l.v2 {
		file, thawed = filepath.Join(dir, "cgroup.freeze"), "0"
	}
	b, err := readSmall(file, make([]byte, 32))
	if errors.Is(err, os.ErrNotExist) {
		return nil // a kernel without cgroup.freeze, or the cgroup just went
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", file, err)
	}
	if strings.TrimSpace(string(b)) == thawed {
		return nil
	}
	if err := writeFile(file, thawed); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("thawing %s: %w", dir, err)
	}
	return nil
}

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
