// Package gc is the agent's sandbox garbage collector.
//
// When an executor run ends the agent schedules its directories for removal
// gc_delay later (Schedule); a new run for the same framework or executor
// takes its parents back (Unschedule). Run's loop removes what is due and,
// every disk_watch_interval, measures the work_dir file system and prunes
// early by Mesos' rule (max_age = gc_delay * max(0, 1 - headroom - usage)),
// then oldest-first while inode usage is over a threshold or more sandboxes
// are kept than allowed. Removal unmounts what is left mounted below a
// path (without following it), never follows a symlink and never crosses
// into another mount; at most Parallelism removals run at once. A failing
// removal is logged, counted and retried later: nothing here is fatal to the
// agent.
package gc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Defaults, as Mesos' flags where Mesos has one.
const (
	DefaultDelay             = 7 * 24 * time.Hour // --gc_delay
	DefaultDiskWatchInterval = time.Minute        // --disk_watch_interval
	DefaultDiskHeadroom      = 0.1                // --gc_disk_headroom
	DefaultParallelism       = 4                  // --gc_parallelism
	DefaultRetryInterval     = time.Minute
	// maxRetryInterval caps the back-off of a path that keeps failing: an
	// operator who fixes the cause (chattr -i, a busy mount) sees it go
	// within the hour.
	maxRetryInterval = time.Hour
)

// Usage is how full the file system holding the sandboxes is, as fractions
// in [0, 1].
type Usage struct {
	Blocks float64
	Inodes float64
}

// UsageReader measures the file system holding path. The default reads
// statfs(2); tests inject their own to simulate a filling disk.
type UsageReader interface {
	DiskUsage(path string) (Usage, error)
}

// UsageFunc adapts a function to UsageReader.
type UsageFunc func(path string) (Usage, error)

// DiskUsage implements UsageReader.
func (f UsageFunc) DiskUsage(path string) (Usage, error) { return f(path) }

// Config configures a collector. Zero values take the defaults above;
// a zero threshold or maximum turns its check off.
type Config struct {
	// WorkDir is the agent's --work_dir: the file system measured, and the
	// only tree paths may be scheduled in (a path outside it is refused, so
	// a bug elsewhere cannot make the collector remove /usr).
	WorkDir string
	// Delay is --gc_delay: how long a finished sandbox is kept when the disk
	// has room.
	Delay time.Duration
	// DiskWatchInterval is --disk_watch_interval; negative turns the disk
	// watch off (removals still happen when due).
	DiskWatchInterval time.Duration
	// DiskHeadroom is --gc_disk_headroom, in [0, 1]. Zero takes the
	// default unless DiskHeadroomSet says it was given (the flag may be 0).
	DiskHeadroom    float64
	DiskHeadroomSet bool
	// InodeThreshold is --gc_inode_threshold: while the fraction of inodes
	// in use is above it, the oldest scheduled paths are removed. 0: off.
	InodeThreshold float64
	// MaxSandboxes is --gc_max_sandboxes: while more scheduled sandboxes
	// are kept, the oldest are removed. A scheduled path counts when no
	// other scheduled path lies below it (a run directory, not the executor
	// and framework directories scheduled with it). 0: off.
	MaxSandboxes int
	// Parallelism is --gc_parallelism: removals running at once.
	Parallelism int
	// RetryInterval is the first wait before a failed removal is tried
	// again; it doubles per failure up to an hour.
	RetryInterval time.Duration
	// Usage measures WorkDir's file system; nil reads statfs.
	Usage  UsageReader
	Logger *slog.Logger
	// Now is the clock; nil is time.Now. Tests move it.
	Now func() time.Time
}

// Entry is a path found on disk at recovery, with the time its run ended
// (the agent takes it from the run directory's mtime, see Ended).
type Entry struct {
	Path  string
	Ended time.Time
}

// Metrics are the collector's counters, for /metrics/snapshot.
type Metrics struct {
	// Succeeded and Failed count removals (a path failing three times
	// counts three failures).
	Succeeded uint64
	Failed    uint64
	// Pending is the number of paths scheduled and not yet removed,
	// including those being removed and those waiting for a retry.
	Pending  int
	Removing int
	Retrying int
	// BytesFreed sums the blocks of the files removed (hard-linked files
	// still linked elsewhere free nothing and count nothing).
	BytesFreed uint64
	// Unmounted counts mounts found below a path and detached.
	Unmounted uint64
	// LastPrune is when a disk check or Prune last ran (zero: never).
	LastPrune time.Time
	// LastUsage is the last file system reading of the disk watch.
	LastUsage Usage
}

type state int

const (
	idle state = iota
	removing
)

type entry struct {
	path string
	// removeAt is when the path is due: schedule time + delay. It orders
	// the oldest-first pruning and Mesos' age rule.
	removeAt time.Time
	// notBefore holds a path back after a failure.
	notBefore time.Time
	failures  int
	state     state
	// done is closed when a removal in progress ends.
	done chan struct{}
	// rescheduled: Schedule was called while the path was being
	// removed (the caller made it anew); the entry outlives the removal.
	rescheduled bool
}

// GC is the collector. Its methods are safe for concurrent use.
type GC struct {
	cfg     Config
	workDir string
	log     *slog.Logger
	usage   UsageReader
	now     func() time.Time
	sem     chan struct{}

	mu      sync.Mutex
	entries map[string]*entry
	m       Metrics
	wake    chan struct{}
	// checking: a disk check is in progress; the loop skips a tick rather
	// than pile up checks behind a slow removal.
	checking bool
	inflight sync.WaitGroup

	// beforeRemove, when set (tests), runs in each removal goroutine
	// before the path is touched.
	beforeRemove func(path string)
}

// New builds a collector; Run starts its loop.
func New(cfg Config) (*GC, error) {
	if cfg.WorkDir == "" {
		return nil, errors.New("gc: no work_dir")
	}
	if !filepath.IsAbs(cfg.WorkDir) {
		return nil, fmt.Errorf("gc: work_dir %q is not absolute", cfg.WorkDir)
	}
	if cfg.Delay == 0 {
		cfg.Delay = DefaultDelay
	}
	if cfg.Delay < 0 {
		return nil, fmt.Errorf("gc: --gc_delay %v is negative", cfg.Delay)
	}
	if cfg.DiskWatchInterval == 0 {
		cfg.DiskWatchInterval = DefaultDiskWatchInterval
	}
	if cfg.DiskHeadroom == 0 && !cfg.DiskHeadroomSet {
		cfg.DiskHeadroom = DefaultDiskHeadroom
	}
	if cfg.DiskHeadroom < 0 || cfg.DiskHeadroom > 1 || math.IsNaN(cfg.DiskHeadroom) {
		return nil, fmt.Errorf("gc: --gc_disk_headroom %v is not in [0, 1]", cfg.DiskHeadroom)
	}
	if cfg.InodeThreshold < 0 || cfg.InodeThreshold > 1 || math.IsNaN(cfg.InodeThreshold) {
		return nil, fmt.Errorf("gc: --gc_inode_threshold %v is not in [0, 1]", cfg.InodeThreshold)
	}
	if cfg.MaxSandboxes < 0 {
		return nil, fmt.Errorf("gc: --gc_max_sandboxes %d is negative", cfg.MaxSandboxes)
	}
	if cfg.Parallelism == 0 {
		cfg.Parallelism = DefaultParallelism
	}
	if cfg.Parallelism < 0 {
		return nil, fmt.Errorf("gc: --gc_parallelism %d is negative", cfg.Parallelism)
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = DefaultRetryInterval
	}
	g := &GC{
		cfg:     cfg,
		workDir: filepath.Clean(cfg.WorkDir),
		log:     cfg.Logger,
		usage:   cfg.Usage,
		now:     cfg.Now,
		sem:     make(chan struct{}, cfg.Parallelism),
		entries: map[string]*entry{},
		wake:    make(chan struct{}, 1),
	}
	if g.log == nil {
		g.log = slog.Default()
	}
	g.log = g.log.With("component", "gc")
	if g.usage == nil {
		g.usage = UsageFunc(StatfsUsage)
	}
	if g.now == nil {
		g.now = time.Now
	}
	return g, nil
}

// Delay is the configured gc_delay.
func (g *GC) Delay() time.Duration { return g.cfg.Delay }

func (g *GC) checkPath(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("gc: %q is not an absolute path", path)
	}
	p := filepath.Clean(path)
	if !strings.HasPrefix(p, g.workDir+"/") {
		return "", fmt.Errorf("gc: %s is not inside the work_dir %s", p, g.workDir)
	}
	return p, nil
}

// Schedule removes path delay from now. A path already scheduled is
// rescheduled; one being removed is scheduled again after the removal, as
// the caller may have made it anew.
func (g *GC) Schedule(path string, delay time.Duration) error {
	p, err := g.checkPath(path)
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.scheduleLocked(p, g.now().Add(max(delay, 0)))
	g.mu.Unlock()
	g.poke()
	return nil
}

func (g *GC) scheduleLocked(p string, at time.Time) {
	e := g.entries[p]
	if e == nil {
		g.entries[p] = &entry{path: p, removeAt: at}
		return
	}
	e.removeAt = at
	e.notBefore, e.failures = time.Time{}, 0
	if e.state == removing {
		e.rescheduled = true
	}
}

// Unschedule takes path back from the collector and reports whether it was
// scheduled. When path, or a scheduled path above it, is being removed it
// waits for that removal to end (and reports false): a caller about to
// reuse the directory must not race the removal.
func (g *GC) Unschedule(path string) bool {
	p, err := g.checkPath(path)
	if err != nil {
		return false
	}
	for {
		g.mu.Lock()
		var wait chan struct{}
		for q := p; q != g.workDir && q != "/" && q != "."; q = filepath.Dir(q) {
			if e := g.entries[q]; e != nil && e.state == removing {
				if q == p {
					// A Schedule during the removal must not bring it back.
					e.rescheduled = false
				}
				wait = e.done
				break
			}
		}
		if wait == nil {
			_, ok := g.entries[p]
			delete(g.entries, p)
			g.mu.Unlock()
			g.poke()
			return ok
		}
		g.mu.Unlock()
		<-wait
	}
}

// Scheduled reports when path is due, if it is scheduled.
func (g *GC) Scheduled(path string) (time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.entries[filepath.Clean(path)]
	if !ok {
		return time.Time{}, false
	}
	return e.removeAt, true
}

// Recover schedules what the agent found on disk after a restart: each path
// is due gc_delay after its run ended, so a run that ended while the agent
// was down is not kept longer for it, and one that ended more than gc_delay
// ago is removed by the next pass of the loop. Bad paths are skipped and
// returned joined; the rest are scheduled.
func (g *GC) Recover(entries []Entry) error {
	var errs []error
	g.mu.Lock()
	for _, e := range entries {
		p, err := g.checkPath(e.Path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ended := e.Ended
		if ended.IsZero() {
			ended = g.now()
		}
		g.scheduleLocked(p, ended.Add(g.cfg.Delay))
	}
	g.mu.Unlock()
	g.poke()
	return errors.Join(errs...)
}

// Ended is the time a run ended as recovery sees it: path's own mtime (the
// agent touches the run directory when the run ends; without that, the last
// write into it).
func Ended(path string) (time.Time, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return time.Time{}, fmt.Errorf("gc: %w", err)
	}
	return fi.ModTime(), nil
}

// Metrics returns a snapshot of the counters.
func (g *GC) Metrics() Metrics {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.m
	m.Pending = len(g.entries)
	now := g.now()
	for _, e := range g.entries {
		switch {
		case e.state == removing:
			m.Removing++
		case e.failures > 0 && e.notBefore.After(now):
			m.Retrying++
		}
	}
	return m
}

func (g *GC) poke() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// claimable: idle and not held back by a failure.
func (e *entry) claimable(now time.Time) bool {
	return e.state == idle && !e.notBefore.After(now)
}

// claimLocked marks entries as being removed and returns them.
func (g *GC) claimLocked(es []*entry) []*entry {
	for _, e := range es {
		e.state = removing
		e.done = make(chan struct{})
	}
	return es
}

// Prune removes now every scheduled path whose remaining time is within
// gc_delay - maxAge — for paths scheduled with gc_delay, those that ended
// at least maxAge ago — and returns how many were removed. It is Mesos'
// prune(gc_delay - max_age); Prune(0) removes everything scheduled.
func (g *GC) Prune(maxAge time.Duration) int {
	now := g.now()
	horizon := now.Add(g.cfg.Delay - max(maxAge, 0))
	g.mu.Lock()
	var es []*entry
	for _, e := range g.entries {
		if e.claimable(now) && !e.removeAt.After(horizon) {
			es = append(es, e)
		}
	}
	g.claimLocked(es)
	g.m.LastPrune = now
	g.mu.Unlock()
	return g.removeBatch(es)
}

// removeDue removes (in the background) what is due now; the loop calls it
// when the earliest deadline passes.
func (g *GC) removeDue() {
	now := g.now()
	g.mu.Lock()
	var es []*entry
	for _, e := range g.entries {
		if e.claimable(now) && !e.removeAt.After(now) {
			es = append(es, e)
		}
	}
	g.claimLocked(es)
	if len(es) > 0 {
		g.inflight.Add(1)
	}
	g.mu.Unlock()
	if len(es) == 0 {
		return
	}
	go func() {
		defer g.inflight.Done()
		g.removeBatch(es)
	}()
}

// nextWake is when the loop must look again: the earliest deadline or
// retry among idle entries (zero: nothing scheduled).
func (g *GC) nextWake() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	var next time.Time
	for _, e := range g.entries {
		if e.state != idle {
			continue
		}
		t := e.removeAt
		if e.notBefore.After(t) {
			t = e.notBefore
		}
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	return next
}

// Run removes scheduled paths as they fall due and watches the disk every
// DiskWatchInterval, until ctx ends; it then waits for removals in
// progress and returns.
func (g *GC) Run(ctx context.Context) {
	defer g.inflight.Wait()
	var tick <-chan time.Time
	if g.cfg.DiskWatchInterval > 0 {
		t := time.NewTicker(g.cfg.DiskWatchInterval)
		defer t.Stop()
		tick = t.C
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		g.removeDue()
		wait := time.Hour
		if next := g.nextWake(); !next.IsZero() {
			// The clock may be a test's: never sleep less than a
			// millisecond, nor longer than an hour (a stepped wall clock
			// gets looked at again).
			wait = min(max(next.Sub(g.now()), time.Millisecond), time.Hour)
		}
		// Since Go 1.23 Reset drops a value the timer may already hold.
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-g.wake:
		case <-timer.C:
		case <-tick:
			g.mu.Lock()
			busy := g.checking
			g.checking = true
			g.mu.Unlock()
			if busy {
				continue
			}
			g.inflight.Add(1)
			go func() {
				defer g.inflight.Done()
				if err := g.CheckDisk(ctx); err != nil {
					g.log.Warn("disk check", "err", err)
				}
				g.mu.Lock()
				g.checking = false
				g.mu.Unlock()
			}()
		}
	}
}

// MaxAllowedAge is how old a finished sandbox may get by the last disk
// reading (Mesos' slave/executor_directory_max_allowed_age_secs); before
// the first reading, gc_delay.
func (g *GC) MaxAllowedAge() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m.LastPrune.IsZero() {
		return g.cfg.Delay
	}
	return MaxAge(g.cfg.Delay, g.cfg.DiskHeadroom, g.m.LastUsage.Blocks)
}

// MaxAge is Mesos' rule: how old a finished sandbox may get when the file
// system is usage full, gc_delay * max(0, 1 - headroom - usage).
func MaxAge(delay time.Duration, headroom, usage float64) time.Duration {
	f := math.Max(0, 1-headroom-usage)
	return time.Duration(float64(delay) * f)
}

// CheckDisk is one pass of the disk watch: measure the work_dir file
// system, prune by Mesos' age rule, then oldest-first while inodes are over
// InodeThreshold (measuring again after each batch) and while more than
// MaxSandboxes are kept. A measuring error stops the pass after the count
// check (which needs no measure) and is returned.
func (g *GC) CheckDisk(ctx context.Context) error {
	u, err := g.usage.DiskUsage(g.workDir)
	if err != nil {
		err = fmt.Errorf("gc: measuring %s: %w", g.workDir, err)
	} else {
		g.mu.Lock()
		g.m.LastUsage = u
		g.mu.Unlock()
		age := MaxAge(g.cfg.Delay, g.cfg.DiskHeadroom, u.Blocks)
		if n := g.Prune(age); n > 0 {
			g.log.Info("pruned sandboxes for disk usage", "usage", u.Blocks, "max_age", age, "removed", n)
		}
		for g.cfg.InodeThreshold > 0 && u.Inodes > g.cfg.InodeThreshold && ctx.Err() == nil {
			es := g.claimOldest(g.cfg.Parallelism, false)
			if len(es) == 0 {
				break
			}
			n := g.removeBatch(es)
			g.log.Info("pruned sandboxes for inode usage", "inodes", u.Inodes, "threshold", g.cfg.InodeThreshold, "removed", n)
			if u, err = g.usage.DiskUsage(g.workDir); err != nil {
				err = fmt.Errorf("gc: measuring %s: %w", g.workDir, err)
				break
			}
			g.mu.Lock()
			g.m.LastUsage = u
			g.mu.Unlock()
		}
	}
	for g.cfg.MaxSandboxes > 0 && ctx.Err() == nil {
		es := g.claimOldest(0, true)
		if len(es) == 0 {
			break
		}
		n := g.removeBatch(es)
		g.log.Info("pruned sandboxes over --gc_max_sandboxes", "max", g.cfg.MaxSandboxes, "removed", n)
	}
	return err
}

// claimOldest claims the oldest claimable entries: n of any kind, or (over)
// the sandboxes beyond MaxSandboxes when overCount.
func (g *GC) claimOldest(n int, overCount bool) []*entry {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	var cands []*entry
	if overCount {
		// Sandboxes are the scheduled paths with no scheduled path below
		// them; those being removed no longer count as kept.
		parent := map[string]bool{}
		for p, e := range g.entries {
			if e.state == removing {
				continue
			}
			for q := filepath.Dir(p); q != g.workDir && q != "/" && q != "."; q = filepath.Dir(q) {
				if parent[q] {
					break
				}
				parent[q] = true
			}
		}
		kept := 0
		for p, e := range g.entries {
			if e.state == removing || parent[p] {
				continue
			}
			kept++
			if e.claimable(now) {
				cands = append(cands, e)
			}
		}
		n = kept - g.cfg.MaxSandboxes
		if n <= 0 {
			return nil
		}
	} else {
		for _, e := range g.entries {
			if e.claimable(now) {
				cands = append(cands, e)
			}
		}
	}
	sort.Slice(cands, func(i, j int) bool {
		if !cands[i].removeAt.Equal(cands[j].removeAt) {
			return cands[i].removeAt.Before(cands[j].removeAt)
		}
		return cands[i].path < cands[j].path
	})
	if len(cands) > n {
		cands = cands[:n]
	}
	return g.claimLocked(cands)
}

// removeBatch removes claimed entries, at most Parallelism at once overall,
// and returns how many were removed. Mounts below them are detached first,
// from one read of the mount table for the whole batch.
func (g *GC) removeBatch(es []*entry) int {
	if len(es) == 0 {
		return 0
	}
	// A path below another of the batch goes with it: removing both at
	// once would only have two walkers racing through one tree.
	inBatch := make(map[string]bool, len(es))
	for _, e := range es {
		inBatch[e.path] = true
	}
	covered := make([]string, len(es)) // the batch path above es[i], if any
	var paths []string
	for i, e := range es {
		for q := filepath.Dir(e.path); q != g.workDir && q != "/" && q != "."; q = filepath.Dir(q) {
			if inBatch[q] {
				covered[i] = q
			}
		}
		if covered[i] == "" {
			paths = append(paths, e.path)
		}
	}
	unmounted, err := unmountBelow(paths)
	if err != nil {
		// Removal still runs: it refuses to cross into a mount, so a mount
		// left in place fails that one path, which is retried.
		g.log.Warn("detaching mounts below scheduled paths", "err", err)
	}
	var wg sync.WaitGroup
	results := make([]error, len(es))
	freed := make([]uint64, len(es))
	for i, e := range es {
		if covered[i] != "" {
			continue
		}
		g.sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-g.sem; wg.Done() }()
			if g.beforeRemove != nil {
				g.beforeRemove(e.path)
			}
			freed[i], results[i] = removeTree(e.path)
		}()
	}
	wg.Wait()

	now := g.now()
	n := 0
	removed := map[string]bool{}
	// The loop's next wake may depend on what happened here (a retry
	// time); it looks again once the lock is released.
	defer g.poke()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.m.Unmounted += uint64(unmounted)
	ok := map[string]bool{}
	for i, e := range es {
		if covered[i] == "" && results[i] == nil {
			ok[e.path] = true
		}
	}
	for i, e := range es {
		g.m.BytesFreed += freed[i]
		close(e.done)
		e.state = idle
		if covered[i] != "" && !ok[covered[i]] {
			// The path above failed; this one is tried again with it
			// (or alone) next time, without a failure of its own.
			continue
		}
		if results[i] != nil {
			g.m.Failed++
			e.failures++
			backoff := g.cfg.RetryInterval << min(e.failures-1, 20)
			backoff = min(backoff, maxRetryInterval)
			e.notBefore = now.Add(backoff)
			g.log.Warn("removing sandbox failed; will retry", "path", e.path, "failures", e.failures, "retry_in", backoff, "err", results[i])
			continue
		}
		g.m.Succeeded++
		n++
		if e.rescheduled {
			e.rescheduled = false
			continue
		}
		removed[e.path] = true
		if g.entries[e.path] == e {
			delete(g.entries, e.path)
		}
	}
	// What was scheduled below a removed path went with it. One pass,
	// looking up each entry's ancestors, rather than a pass per path.
	if len(removed) > 0 {
		for p, d := range g.entries {
			if d.state != idle {
				continue
			}
			for q := filepath.Dir(p); q != g.workDir && q != "/" && q != "."; q = filepath.Dir(q) {
				if removed[q] {
					delete(g.entries, p)
					break
				}
			}
		}
	}
	return n
}
