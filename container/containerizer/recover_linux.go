package containerizer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/corral/corral/container"
)

// RetainEnded keeps an ended container's runtime directory (its init's pid
// and exit status record) until Forget, instead of removing it as soon as
// the container ends. The agent sets it so that a container ending just
// before the agent is killed, with its end not yet checkpointed, still tells
// the restarted agent how it ended: checkpoint before act.
func (c *Containerizer) RetainEnded() {
	c.mu.Lock()
	c.retain = true
	c.mu.Unlock()
}

// Forget removes the runtime record of an ended container (RetainEnded).
// It does nothing to a container that is still running.
func (c *Containerizer) Forget(id string) {
	if validateID(id) != nil {
		return
	}
	c.mu.Lock()
	_, live := c.containers[id]
	c.mu.Unlock()
	if !live {
		_ = os.RemoveAll(c.dir(id))
	}
}

// orphanGrace bounds how long an orphan's init gets to kill its container
// before it is killed outright.
const orphanGrace = 10 * time.Second

// Recover is the start-up counterpart of Launch, called before any launch:
// known are the containers the agent's checkpoints say should exist (the
// configs they were launched with, as last updated). For each it reports
// whether it still runs (and re-attaches it: pidfd, launcher, isolators,
// limitation watches, a reaper), ended while the agent was down (with the
// init's record of the task's exit status) or never started. Everything
// else under the runtime directory and the launcher's and isolators' roots
// is an orphan and is destroyed, processes and all.
//
// Processes are found through the init's runtime record — its PID and its
// start time, checked after a pidfd is opened — never through a bare PID.
func (c *Containerizer) Recover(ctx context.Context, known []*container.Config) (map[string]*Recovered, error) {
	root := filepath.Join(c.runtime, "containers")
	entries, err := os.ReadDir(root)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("recovering containers: %w", err)
	}
	onDisk := make(map[string]bool, len(entries))
	for _, e := range entries {
		if e.IsDir() {
			onDisk[e.Name()] = true
		}
	}
	out := make(map[string]*Recovered, len(known))
	var todo []*container.Config
	for _, cfg := range known {
		if validateID(cfg.ID) != nil {
			continue
		}
		if _, dup := out[cfg.ID]; dup {
			continue
		}
		out[cfg.ID] = &Recovered{State: NotStarted}
		if onDisk[cfg.ID] {
			todo = append(todo, cfg)
		}
	}
	// Each container is a few system calls; a thousand of them are looked
	// at in parallel.
	found := make([]*container.Process, len(todo))
	parallel(len(todo), func(i int) {
		cfg := todo[i]
		found[i] = c.recoverOne(cfg.ID, out[cfg.ID])
	})
	procs := map[string]*container.Process{} // handed to the launcher
	running := map[string]*container.Config{}
	var runningCfgs []*container.Config
	for i, cfg := range todo {
		if p := found[i]; p != nil {
			procs[cfg.ID] = p
			running[cfg.ID] = cfg
			runningCfgs = append(runningCfgs, cfg)
		}
	}
	// Orphans that still run: their inits are handed to the launcher too so
	// that it can destroy them its way (posix: through the init).
	orphans := map[string]*container.Process{}
	for id := range onDisk {
		if _, ok := out[id]; ok || validateID(id) != nil {
			continue
		}
		if pid, start, ok := readPid(filepath.Join(c.dir(id), "pid")); ok {
			if p, err := container.OpenProcess(pid, start); err == nil {
				orphans[id] = p
				procs[id] = p
			}
		}
	}
	var errs []error
	if err := c.launcher.Recover(ctx, procs); err != nil {
		errs = append(errs, fmt.Errorf("launcher %s: %w", c.launcher.Name(), err))
	}
	for _, iso := range c.isolators {
		if err := iso.Recover(ctx, runningCfgs); err != nil {
			errs = append(errs, fmt.Errorf("isolator %s: %w", iso.Name(), err))
		}
	}
	for id, p := range orphans {
		c.log.Warn("destroying orphan container", "container", id, "pid", p.Pid())
		if err := c.destroyOrphan(ctx, id, p); err != nil {
			errs = append(errs, fmt.Errorf("orphan container %s: %w", id, err))
		}
	}
	for id := range onDisk {
		r, ok := out[id]
		switch {
		case !ok:
			// An orphan, dead or destroyed above.
			_ = c.launcher.Destroy(ctx, id)
			_ = os.RemoveAll(c.dir(id))
		case r.State == NotStarted:
			_ = c.launcher.Destroy(ctx, id)
			_ = os.RemoveAll(c.dir(id))
		case r.State == Ended:
			// Its cgroups went with the orphans of launcher and isolators;
			// anything its task left (posix) is the launcher's to find.
			_ = c.launcher.Destroy(ctx, id)
		}
	}
	c.mu.Lock()
	retain := c.retain
	for id, r := range out {
		if r.State == Ended {
			c.rememberEnd(id, r.Termination)
			if !retain {
				_ = os.RemoveAll(c.dir(id))
			}
		}
	}
	c.mu.Unlock()
	var errMu sync.Mutex
	parallel(len(runningCfgs), func(i int) {
		cfg := runningCfgs[i]
		id := cfg.ID
		ct := &live{cfg: cfg, proc: procs[id], done: make(chan struct{})}
		c.mu.Lock()
		c.containers[id] = ct
		delete(c.ended, id)
		c.mu.Unlock()
		for _, iso := range c.isolators {
			if ra, ok := iso.(container.Reattacher); ok {
				ra.Reattach(id, ct.proc.Pid())
			}
		}
		for _, iso := range c.isolators {
			if w, ok := iso.(container.Watcher); ok {
				if err := w.Watch(id, func(l container.Limitation) { c.limit(ct, l) }); err != nil {
					errMu.Lock()
					errs = append(errs, fmt.Errorf("container %s: isolator %s: watch: %w", id, iso.Name(), err))
					errMu.Unlock()
				}
			}
		}
		go c.reap(ct)
	})
	return out, errors.Join(errs...)
}

// recoverOne looks at one known container's runtime records and process.
// It fills r and returns the init, held by a pidfd, when it still runs.
func (c *Containerizer) recoverOne(id string, r *Recovered) *container.Process {
	pid, start, ok := readPid(filepath.Join(c.dir(id), "pid"))
	if !ok {
		return nil // never released: the init aborts when the sync pipe closes
	}
	// An init that is alive is re-attached even if it has not started the
	// task yet: it starts it if the go-ahead reached it, and ends without,
	// which its end then says (Termination.NotStarted).
	if p, err := container.OpenProcess(pid, start); err == nil && !p.Exited() {
		r.State = Running
		return p
	} else if err == nil {
		p.Close() // exited, not yet reaped by its new parent
	}
	// Gone. The records are read only now: an init that exits between the
	// two looks is seen either alive or with its records.
	st, known := readStatus(filepath.Join(c.dir(id), "status"))
	if !known && !exists(filepath.Join(c.dir(id), "started")) {
		return nil // the go-ahead never reached it: the task never ran
	}
	r.State = Ended
	r.Termination = &container.Termination{}
	if known {
		r.Termination.Status, r.Termination.StatusKnown = st, true
	} else {
		r.Termination.Message = "the container's init ended while the agent was down without recording the task's exit status"
	}
	r.Termination.Message = firstNonEmpty(r.Termination.Message, describe(r.Termination))
	return nil
}

// parallel runs f(0..n-1) on a few goroutines: recovery's work is system
// calls, which overlap well even on few CPUs.
func parallel(n int, f func(i int)) {
	workers := min(n, max(4, 2*runtime.GOMAXPROCS(0)))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				f(i)
			}
		})
	}
	wg.Wait()
}

// destroyOrphan destroys a container no checkpoint claims, through the
// launcher, and waits for its init to go.
func (c *Containerizer) destroyOrphan(ctx context.Context, id string, p *container.Process) error {
	defer p.Close()
	if err := c.launcher.Destroy(ctx, id); err != nil {
		c.log.Warn("destroying orphan container", "container", id, "err", err)
	}
	wctx, cancel := context.WithTimeout(ctx, orphanGrace)
	defer cancel()
	for {
		rctx, rcancel := context.WithTimeout(wctx, destroyRepeat)
		_, _, err := p.Wait(rctx)
		rcancel()
		if err == nil {
			break
		}
		if wctx.Err() != nil {
			c.log.Warn("orphan container init did not exit; killing it", "container", id)
			_ = p.Signal(syscall.SIGKILL)
			break
		}
		// As Destroy does: a request the init missed is repeated.
		_ = c.launcher.Destroy(ctx, id)
	}
	return c.launcher.Destroy(ctx, id)
}

// readPid reads the runtime pid record "<pid> <start time>"; ok is false
// when it is missing or torn.
func readPid(path string) (pid int, start uint64, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 || b[len(b)-1] != '\n' {
		return 0, 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, false
	}
	pid, err = strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return 0, 0, false
	}
	start, err = strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return pid, start, true
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
