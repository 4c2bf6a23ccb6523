package containerizer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/corral/corral/container"
	"github.com/corral/corral/launcher/containerinit"
)

// Containerizer launches, watches and destroys containers with one launcher
// and an ordered list of isolators.
type Containerizer struct {
	launcher  container.Launcher
	isolators []container.Isolator
	initPath  string
	runtime   string
	log       *slog.Logger

	mu         sync.Mutex
	containers map[string]*live
	// ended keeps how recently ended containers ended, oldest first in
	// endedOrder, so that a Wait coming after the end (a task that exits
	// before its launcher's caller gets to Wait) still learns it.
	ended      map[string]*container.Termination
	endedOrder []endedEntry
	// retain keeps ended containers' runtime directories until Forget.
	retain bool
}

// maxEnded bounds how many ended containers' terminations are kept for a
// late Wait.
const maxEnded = 4096

// live is a container the containerizer launched or recovered.
type live struct {
	cfg  *container.Config
	proc *container.Process
	done chan struct{}
	term *container.Termination

	mu         sync.Mutex
	limitation *container.Limitation
	destroying bool
}

// New builds a containerizer. initPath is the corral-init binary; runtimeDir
// holds per-container runtime files (pid, spec, exit status).
func New(l container.Launcher, isolators []container.Isolator, initPath, runtimeDir string, log *slog.Logger) (*Containerizer, error) {
	if _, err := os.Stat(initPath); err != nil {
		return nil, fmt.Errorf("container init %s: %w (set --launcher_dir to the folder holding corral-init)", initPath, err)
	}
	if err := checkNamespaces(l, isolators); err != nil {
		return nil, err
	}
	for _, iso := range isolators {
		if lc, ok := iso.(container.LauncherChecker); ok {
			if err := lc.CheckLauncher(l); err != nil {
				return nil, err
			}
		}
	}
	if err := os.MkdirAll(filepath.Join(runtimeDir, "containers"), 0o755); err != nil {
		return nil, fmt.Errorf("runtime dir: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Containerizer{
		launcher: l, isolators: isolators, initPath: initPath, runtime: runtimeDir,
		log: log, containers: map[string]*live{}, ended: map[string]*container.Termination{},
	}, nil
}

// checkNamespaces refuses isolators that need namespaces with a launcher
// that cannot create them (posix).
func checkNamespaces(l container.Launcher, isolators []container.Isolator) error {
	if nl, ok := l.(container.NamespaceLauncher); ok && nl.CreatesNamespaces() {
		return nil
	}
	for _, iso := range isolators {
		if ni, ok := iso.(container.NamespaceIsolator); ok && ni.NeedsNamespaces() {
			return fmt.Errorf("isolator %s needs namespaces, which the %s launcher cannot create; use --launcher=linux", iso.Name(), l.Name())
		}
	}
	return nil
}

func (c *Containerizer) dir(id string) string { return filepath.Join(c.runtime, "containers", id) }

// Launch starts a container and returns once its task has been started (or
// failed to start). The container's end is learned with Wait.
func (c *Containerizer) Launch(ctx context.Context, cfg *container.Config) (err error) {
	if err := validateID(cfg.ID); err != nil {
		return err
	}
	if len(cfg.Argv) == 0 {
		return errors.New("container has no command")
	}
	ct := &live{cfg: cfg, done: make(chan struct{})}
	c.mu.Lock()
	if _, dup := c.containers[cfg.ID]; dup {
		c.mu.Unlock()
		return fmt.Errorf("container %s already exists", cfg.ID)
	}
	c.containers[cfg.ID] = ct
	// A new container of an old ID: Wait must not find the old one's end.
	delete(c.ended, cfg.ID)
	c.mu.Unlock()

	prepared := 0
	defer func() {
		if err == nil {
			return
		}
		// Undo in reverse; nothing of a failed launch may stay behind.
		if ct.proc != nil {
			_ = c.launcher.Destroy(context.WithoutCancel(ctx), cfg.ID)
			_ = ct.proc.Close()
		}
		for i := prepared - 1; i >= 0; i-- {
			if cerr := c.isolators[i].Cleanup(context.WithoutCancel(ctx), cfg.ID); cerr != nil {
				c.log.Warn("cleanup after failed launch", "container", cfg.ID, "isolator", c.isolators[i].Name(), "err", cerr)
			}
		}
		_ = os.RemoveAll(c.dir(cfg.ID))
		c.mu.Lock()
		delete(c.containers, cfg.ID)
		c.mu.Unlock()
	}()

	dir := c.dir(cfg.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("runtime dir: %w", err)
	}
	spec := containerinit.Spec{Argv: cfg.Argv, Path: cfg.Path, Dir: cfg.Sandbox, StatusPath: filepath.Join(dir, "status"),
		StartedPath: filepath.Join(dir, "started")}
	env := cfg.Env
	var cloneFlags uintptr
	var remountProc bool
	var final []containerinit.Mount
	for _, iso := range c.isolators {
		li, err := iso.Prepare(ctx, cfg)
		prepared++
		if err != nil {
			return fmt.Errorf("isolator %s: %w", iso.Name(), err)
		}
		if li == nil {
			continue
		}
		cloneFlags |= li.CloneFlags
		env = append(env, li.Env...)
		spec.Mounts = append(spec.Mounts, li.Mounts...)
		final = append(final, li.FinalMounts...)
		remountProc = remountProc || li.RemountProc
		if li.Hostname != "" {
			spec.Hostname = li.Hostname
		}
		if li.WorkDir != "" {
			spec.Dir = li.WorkDir
		}
		spec.CgroupNS = spec.CgroupNS || li.CgroupNS
		spec.ReadonlyRoot = spec.ReadonlyRoot || li.ReadonlyRoot
		spec.NoNewPrivs = spec.NoNewPrivs || li.NoNewPrivs
		if li.Capabilities != nil {
			spec.Capabilities = intersectCaps(spec.Capabilities, li.Capabilities)
		}
		if li.Seccomp != nil {
			if spec.Seccomp != nil {
				return fmt.Errorf("isolator %s: a second seccomp filter (one per container)", iso.Name())
			}
			spec.Seccomp = li.Seccomp
		}
	}
	if remountProc {
		// A fresh /proc for the container's PID namespace, before the masks
		// over it.
		spec.Mounts = append(spec.Mounts, containerinit.Mount{Source: "proc", Target: "/proc", FSType: "proc",
			Flags: syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC})
	}
	spec.Mounts = append(spec.Mounts, final...)
	owner := [2]int{-1, -1}
	if cfg.User != "" && os.Geteuid() == 0 {
		uid, gid, groups, err := lookupUser(cfg.User)
		if err != nil {
			return err
		}
		if uid != 0 {
			spec.UID, spec.GID, spec.Groups = &uid, &gid, groups
			owner = [2]int{int(uid), int(gid)}
		}
	}
	if err := ownSandbox(cfg.Sandbox, owner); err != nil {
		return err
	}
	specJSON, err := json.Marshal(&spec)
	if err != nil {
		return fmt.Errorf("encoding init spec: %w", err)
	}

	stdout, err := openLog(filepath.Join(cfg.Sandbox, "stdout"), owner)
	if err != nil {
		return err
	}
	defer stdout.Close()
	stderr, err := openLog(filepath.Join(cfg.Sandbox, "stderr"), owner)
	if err != nil {
		return err
	}
	defer stderr.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	syncR, syncW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer syncW.Close()

	proc, err := c.launcher.Fork(ctx, &container.ForkSpec{
		ID:         cfg.ID,
		Path:       c.initPath,
		Argv:       []string{"corral-init"},
		Env:        withDefaultPath(overrideEnv(env)),
		Dir:        cfg.Sandbox,
		Files:      []*os.File{devnull, stdout, stderr, syncR},
		CloneFlags: cloneFlags,
	})
	syncR.Close()
	if err != nil {
		return fmt.Errorf("launcher %s: %w", c.launcher.Name(), err)
	}
	ct.proc = proc
	// The spec is a few hundred bytes, far below the pipe's buffer, and the
	// init reads it at once, so this write does not block.
	if _, err := syncW.Write(append(specJSON, '\n')); err != nil {
		return fmt.Errorf("sending spec to container init: %w", err)
	}
	if err := c.writePid(cfg.ID, proc.Pid()); err != nil {
		return err
	}
	for _, iso := range c.isolators {
		if err := iso.Isolate(ctx, cfg.ID, proc.Pid()); err != nil {
			return fmt.Errorf("isolator %s: %w", iso.Name(), err)
		}
	}
	for _, iso := range c.isolators {
		if w, ok := iso.(container.Watcher); ok {
			if err := w.Watch(cfg.ID, func(l container.Limitation) { c.limit(ct, l) }); err != nil {
				return fmt.Errorf("isolator %s: watch: %w", iso.Name(), err)
			}
		}
	}
	if _, err := syncW.Write([]byte{1}); err != nil {
		return fmt.Errorf("releasing container init: %w", err)
	}
	go c.reap(ct)
	return nil
}

// limit destroys a container that an isolator found over its limits; the
// first limitation is the one reported.
func (c *Containerizer) limit(ct *live, l container.Limitation) {
	ct.mu.Lock()
	if ct.limitation == nil {
		ct.limitation = &l
	}
	ct.mu.Unlock()
	c.log.Info("container limitation", "container", ct.cfg.ID, "reason", l.Reason, "message", l.Message)
	go func() { _, _ = c.Destroy(context.Background(), ct.cfg.ID) }()
}

// reap waits for the container's init to exit, then removes what is left of
// the container and publishes its termination.
func (c *Containerizer) reap(ct *live) {
	id := ct.cfg.ID
	ws, known, err := ct.proc.Wait(context.Background())
	if err != nil {
		c.log.Error("waiting for container", "container", id, "err", err)
	}
	term := &container.Termination{}
	// The init records the task's own status; its exit code mirrors it, but
	// the file also survives an agent restart and tells a signal apart.
	if st, ok := readStatus(filepath.Join(c.dir(id), "status")); ok {
		term.Status, term.StatusKnown = st, true
	} else if known && !(ws.Exited() && (ws.ExitStatus() == containerinit.ExitSetupFailed || ws.ExitStatus() == containerinit.ExitAborted)) {
		// The init itself was killed before it could record anything.
		term.Status, term.StatusKnown = ws, true
	} else if known {
		term.Message = fmt.Sprintf("container init failed (exit %d); see the sandbox's stderr", ws.ExitStatus())
	}
	c.finish(ct, term)
}

func (c *Containerizer) finish(ct *live, term *container.Termination) {
	id := ct.cfg.ID
	ctx := context.Background()
	// Last looks while the container's cgroups still exist (an OOM kill
	// whose notification is still in flight).
	for _, iso := range c.isolators {
		if f, ok := iso.(container.Finalizer); ok {
			f.Finalize(ctx, id)
		}
	}
	// Whatever the task left running dies with it.
	if err := c.launcher.Destroy(ctx, id); err != nil {
		c.log.Warn("destroying container processes", "container", id, "err", err)
	}
	for i := len(c.isolators) - 1; i >= 0; i-- {
		if err := c.isolators[i].Cleanup(ctx, id); err != nil {
			c.log.Warn("isolator cleanup", "container", id, "isolator", c.isolators[i].Name(), "err", err)
		}
	}
	if ct.proc != nil {
		_ = ct.proc.Close()
	}
	ct.mu.Lock()
	term.Limitation = ct.limitation
	term.Destroyed = ct.destroying
	ct.mu.Unlock()
	if !term.StatusKnown && !term.Destroyed && term.Limitation == nil && !exists(filepath.Join(c.dir(id), "started")) {
		// The init records the go-ahead before it starts anything: without
		// that record the task never ran.
		term.NotStarted = true
		term.Message = "the container's task never started"
	}
	c.mu.Lock()
	retain := c.retain
	c.mu.Unlock()
	if !retain {
		_ = os.RemoveAll(c.dir(id))
	}
	if term.Message == "" {
		term.Message = describe(term)
	}
	ct.term = term
	c.mu.Lock()
	delete(c.containers, id)
	c.rememberEnd(id, term)
	c.mu.Unlock()
	close(ct.done)
}

func describe(t *container.Termination) string {
	switch {
	case t.Limitation != nil:
		return t.Limitation.Message
	case !t.StatusKnown:
		return "exit status unknown"
	case t.Status.Exited():
		return "Command exited with status " + strconv.Itoa(t.Status.ExitStatus())
	case t.Status.Signaled():
		return "Command terminated with signal " + unixSignalName(t.Status.Signal())
	}
	return "Command ended with wait status " + strconv.Itoa(int(t.Status))
}

func unixSignalName(s syscall.Signal) string {
	// Mesos writes strsignal()'s text, e.g. "Killed", "Terminated".
	name := s.String()
	if name == "" {
		return strconv.Itoa(int(s))
	}
	return strings.ToUpper(name[:1]) + name[1:]
}

type endedEntry struct {
	id   string
	term *container.Termination
}

// rememberEnd keeps term for a late Wait, forgetting the oldest beyond
// maxEnded. c.mu is held.
func (c *Containerizer) rememberEnd(id string, term *container.Termination) {
	c.ended[id] = term
	c.endedOrder = append(c.endedOrder, endedEntry{id, term})
	for len(c.endedOrder) > maxEnded {
		old := c.endedOrder[0]
		c.endedOrder = c.endedOrder[1:]
		// Only if no newer end of that ID replaced the entry.
		if c.ended[old.id] == old.term {
			delete(c.ended, old.id)
		}
	}
}

// Wait returns how the container ended, blocking until it has. A container
// that ended recently is still known to Wait; one never launched (or long
// forgotten) is an error wrapping os.ErrNotExist.
func (c *Containerizer) Wait(ctx context.Context, id string) (*container.Termination, error) {
	c.mu.Lock()
	ct, ok := c.containers[id]
	term := c.ended[id]
	c.mu.Unlock()
	if !ok && term != nil {
		return term, nil
	}
	if !ok {
		return nil, fmt.Errorf("container %s: %w", id, os.ErrNotExist)
	}
	select {
	case <-ct.done:
		return ct.term, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Signal sends sig to the container's init, which forwards it to the task.
func (c *Containerizer) Signal(id string, sig syscall.Signal) error {
	c.mu.Lock()
	ct, ok := c.containers[id]
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("container %s: %w", id, os.ErrNotExist)
	}
	return ct.proc.Signal(sig)
}

// Destroy kills every process of the container, waits until it is gone and
// returns how it ended. An unknown (or already ended) container is an error
// wrapping os.ErrNotExist.
func (c *Containerizer) Destroy(ctx context.Context, id string) (*container.Termination, error) {
	c.mu.Lock()
	ct, ok := c.containers[id]
	c.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("container %s: %w", id, os.ErrNotExist)
	}
	ct.mu.Lock()
	ct.destroying = true
	ct.mu.Unlock()
	if err := c.launcher.Destroy(ctx, id); err != nil {
		return nil, fmt.Errorf("destroying container %s: %w", id, err)
	}
	// The destroy is repeated until the init is gone: a launcher that asks
	// the init to do the killing (posix) can find it still starting, before
	// its signal handler is in place (Launch returns once the init is
	// released, not once it runs), and the request is then lost. An init
	// that does not finish in time (stopped, or wedged in the kernel) is
	// killed outright; what it leaves is the launcher's to find.
	grace := time.NewTimer(destroyGrace)
	defer grace.Stop()
	again := time.NewTicker(destroyRepeat)
	defer again.Stop()
wait:
	for {
		select {
		case <-ct.done:
			return ct.term, nil
		case <-again.C:
			if err := c.launcher.Destroy(ctx, id); err != nil {
				c.log.Warn("repeating destroy", "container", id, "err", err)
			}
		case <-grace.C:
			c.log.Warn("container init did not exit after destroy; killing it", "container", id)
			_ = ct.proc.Signal(syscall.SIGKILL)
			break wait
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	select {
	case <-ct.done:
		return ct.term, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// destroyGrace is how long a container init gets to kill its container.
const destroyGrace = 10 * time.Second

// destroyRepeat is how often Destroy repeats the launcher's destroy while the
// container's init has not exited.
const destroyRepeat = 100 * time.Millisecond

// Update changes the container's limits in place.
func (c *Containerizer) Update(ctx context.Context, id string, r container.Resources) error {
	c.mu.Lock()
	ct, ok := c.containers[id]
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("container %s: %w", id, os.ErrNotExist)
	}
	for _, iso := range c.isolators {
		if u, ok := iso.(container.Updater); ok {
			if err := u.Update(ctx, id, r); err != nil {
				return fmt.Errorf("isolator %s: %w", iso.Name(), err)
			}
		}
	}
	ct.cfg.Resources = r
	return nil
}

// Usage collects the container's statistics from every isolator that reports
// any.
func (c *Containerizer) Usage(ctx context.Context, id string) (*container.Usage, error) {
	c.mu.Lock()
	_, ok := c.containers[id]
	c.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("container %s: %w", id, os.ErrNotExist)
	}
	u := &container.Usage{Set: map[string]bool{}}
	for _, iso := range c.isolators {
		if r, ok := iso.(container.UsageReporter); ok {
			if err := r.Usage(ctx, id, u); err != nil {
				return nil, fmt.Errorf("isolator %s: %w", iso.Name(), err)
			}
		}
	}
	return u, nil
}

// Close stops the isolators' background work and releases what they hold
// for the agent's lifetime (disk/du's helper cgroup, disk/xfs's file
// system handles): the isolators that are io.Closers are closed. Running
// containers are left alone; a later containerizer recovers them.
func (c *Containerizer) Close() {
	CloseIsolators(c.isolators, c.log)
}

// CloseIsolators closes the isolators that are io.Closers, logging what
// fails; also for isolators built for a containerizer that never ran.
func CloseIsolators(isolators []container.Isolator, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	for _, iso := range isolators {
		if cl, ok := iso.(io.Closer); ok {
			if err := cl.Close(); err != nil {
				log.Warn("closing isolator", "isolator", iso.Name(), "err", err)
			}
		}
	}
}

// Containers lists the IDs of the running containers.
func (c *Containerizer) Containers() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.containers))
	for id := range c.containers {
		out = append(out, id)
	}
	return out
}

func (c *Containerizer) writePid(id string, pid int) error {
	st, err := container.ProcessStartTime(pid)
	if err != nil {
		return fmt.Errorf("reading start time of %d: %w", pid, err)
	}
	// Written in place: the file is new, and a reader that finds it torn (the
	// agent died mid-write) knows the init never got its go-ahead.
	return os.WriteFile(filepath.Join(c.dir(id), "pid"), []byte(fmt.Sprintf("%d %d\n", pid, st)), 0o644)
}

func validateID(id string) error {
	if id == "" || len(id) > 200 || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return fmt.Errorf("invalid container ID %q", id)
	}
	return nil
}

// ownSandbox gives the sandbox to the task's user (owner is uid, gid; -1
// keeps the agent's) with mode 0750: the task can write its own sandbox, and
// nobody else but the agent can read it.
func ownSandbox(dir string, owner [2]int) error {
	if owner[0] >= 0 {
		if err := os.Lchown(dir, owner[0], owner[1]); err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	return nil
}

// openLog opens stdout or stderr of the sandbox, owned as the sandbox is,
// 0640: another task's user cannot read it.
func openLog(path string, owner [2]int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o640)
	if err != nil {
		return nil, fmt.Errorf("sandbox log: %w", err)
	}
	if owner[0] >= 0 {
		if err := f.Chown(owner[0], owner[1]); err != nil {
			f.Close()
			return nil, fmt.Errorf("sandbox log: %w", err)
		}
	}
	return f, nil
}

// overrideEnv keeps one value per variable, the last given: an isolator's
// (MESOS_SANDBOX as seen in the container) over the agent's.
func overrideEnv(env []string) []string {
	last := make(map[string]int, len(env))
	for i, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		last[k] = i
	}
	out := env[:0:0]
	for i, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if last[k] == i {
			out = append(out, kv)
		}
	}
	return out
}

func withDefaultPath(env []string) []string {
	for _, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			return env
		}
	}
	return append(env[:len(env):len(env)], "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
}

func lookupUser(name string) (uid, gid uint32, groups []uint32, err error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("user %q: %w", name, err)
	}
	id, _ := strconv.ParseUint(u.Uid, 10, 32)
	g, _ := strconv.ParseUint(u.Gid, 10, 32)
	gids, _ := u.GroupIds()
	for _, s := range gids {
		if v, err := strconv.ParseUint(s, 10, 32); err == nil {
			groups = append(groups, uint32(v))
		}
	}
	return uint32(id), uint32(g), groups, nil
}

// intersectCaps is the capabilities in both sets; nil is no bound.
func intersectCaps(a, b *[]uint) *[]uint {
	if a == nil {
		return b
	}
	in := map[uint]bool{}
	for _, c := range *b {
		in[c] = true
	}
	out := []uint{}
	for _, c := range *a {
		if in[c] {
			out = append(out, c)
		}
	}
	return &out
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func readStatus(path string) (syscall.WaitStatus, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, false
	}
	return syscall.WaitStatus(v), true
}
