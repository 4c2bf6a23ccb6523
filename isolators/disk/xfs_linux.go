package disk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/corral/corral/container"
)

// ErrNoProjectID is returned (wrapped) by Prepare when every project ID of
// the range is taken.
var ErrNoProjectID = errors.New("no free project ID")

// XFS is the disk/xfs isolator: a project quota per sandbox.
type XFS struct {
	lo, hi   uint32
	enforce  bool
	kill     bool
	interval time.Duration
	log      *slog.Logger
	fss      fsCache

	mu   sync.Mutex
	ctrs map[string]*xfsCtr
	// owner maps each project ID in use (by a container, or draining) to
	// its container.
	owner map[uint32]string
	// draining are the projects of cleaned-up containers whose sandbox
	// files are being given back to project 0, in the background; the ID
	// is free once that is done.
	draining map[uint32]drain
	drainCh  chan struct{}
	drained  *sync.Cond // signalled when draining shrinks

	stop context.CancelFunc
	wg   sync.WaitGroup
}

type drain struct {
	sandbox string
}

type xfsCtr struct {
	id       string
	sandbox  string
	proj     uint32
	q        *quotaFS
	limit    uint64
	report   func(container.Limitation)
	reported bool
}

// NewXFS builds disk/xfs (containerizer constructor). The work_dir
// (Options.WorkDir) must be on a file system with project quotas enabled.
func NewXFS(o container.Options) (container.Isolator, error) {
	return newXFS(o)
}

func newXFS(o container.Options) (*XFS, error) {
	set := container.SettingsOf[*Settings](o)
	if err := set.Validate(); err != nil {
		return nil, fmt.Errorf("disk/xfs: %w", err)
	}
	lo, hi, _ := parseRange(set.ProjectRange) // Validate refused a bad range
	enforce, kill, interval := set.Enforce, set.Kill, set.WatchInterval
	workDir := o.WorkDir
	if workDir == "" {
		return nil, fmt.Errorf("disk/xfs: the work_dir is not known (Options.WorkDir)")
	}
	x := &XFS{
		lo: lo, hi: hi, enforce: enforce, kill: kill, interval: interval,
		log:      slog.Default().With("isolator", "disk/xfs"),
		ctrs:     map[string]*xfsCtr{},
		owner:    map[uint32]string{},
		draining: map[uint32]drain{},
		drainCh:  make(chan struct{}, 1),
	}
	x.drained = sync.NewCond(&x.mu)
	if _, err := x.fss.get(workDir); err != nil {
		return nil, fmt.Errorf("disk/xfs: --work_dir: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	x.stop = cancel
	x.wg.Add(1)
	go x.drainLoop(ctx)
	if enforce && kill {
		x.wg.Add(1)
		go x.watchLoop(ctx)
	}
	return x, nil
}

// Name implements container.Isolator.
func (x *XFS) Name() string { return "disk/xfs" }

// Close stops the background work and closes the file systems (tests; the
// agent keeps its isolators). Projects still draining keep their files'
// IDs, which keeps those IDs out of use until the files are removed.
func (x *XFS) Close() error {
	x.stop()
	x.wg.Wait()
	x.fss.close()
	return nil
}

// limits are the soft and hard block limits, in bytes, for a disk
// resource.
func (x *XFS) limits(disk uint64) (soft, hard uint64) {
	switch {
	case !x.enforce || disk == 0:
		return 0, 0
	case x.kill:
		return disk, disk + KillHeadroom(disk)
	}
	return 0, disk
}

// alloc takes the lowest project ID that no container holds and that no
// file on q's file system carries (the quota shows it empty): the files of
// a container whose cleanup failed, or that ended while the agent was
// down, keep their ID out of use until the sandbox GC removes them.
func (x *XFS) allocLocked(q *quotaFS, id string) (uint32, error) {
	dirty := 0
	for p := x.lo; ; p++ {
		_, held := x.owner[p]
		_, draining := x.draining[p]
		if !held && !draining {
			u, err := q.get(p)
			if err != nil {
				return 0, err
			}
			if u.Inodes == 0 && u.Bytes == 0 {
				x.owner[p] = id
				return p, nil
			}
			dirty++
		}
		if p == x.hi {
			break
		}
	}
	return 0, fmt.Errorf("%w in [%d-%d]: %d held by containers, %d being released from ended containers' sandboxes, %d by files of ended containers still on disk (freed as the sandbox GC removes them; widen --xfs_project_range)",
		ErrNoProjectID, x.lo, x.hi, len(x.owner)-len(x.draining), len(x.draining), dirty)
}

func (x *XFS) release(p uint32) {
	x.mu.Lock()
	delete(x.owner, p)
	x.mu.Unlock()
}

// Prepare implements container.Isolator: the sandbox (and whatever is
// already in it) gets a project ID of its own, and the project its limit.
// The walk that tags existing files is over what the sandbox holds before
// the task starts: normally nothing, or the fetched files.
func (x *XFS) Prepare(_ context.Context, c *container.Config) (*container.LaunchInfo, error) {
	if c.Sandbox == "" || !filepath.IsAbs(c.Sandbox) {
		return nil, fmt.Errorf("disk/xfs: container %s: sandbox %q is not an absolute path", c.ID, c.Sandbox)
	}
	q, err := x.fss.get(c.Sandbox)
	if err != nil {
		return nil, fmt.Errorf("disk/xfs: sandbox: %w", err)
	}
	x.mu.Lock()
	if _, dup := x.ctrs[c.ID]; dup {
		x.mu.Unlock()
		return nil, fmt.Errorf("disk/xfs: container %s is already prepared", c.ID)
	}
	proj, err := x.allocLocked(q, c.ID)
	x.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("disk/xfs: container %s: %w", c.ID, err)
	}
	ok := false
	defer func() {
		if !ok {
			x.release(proj)
		}
	}()
	// A previous holder's limit must not apply while the files move in.
	if err := q.setLimit(proj, 0, 0); err != nil {
		return nil, fmt.Errorf("disk/xfs: container %s: %w", c.ID, err)
	}
	if err := setProjectTree(c.Sandbox, proj); err != nil {
		_ = setProjectTree(c.Sandbox, 0)
		return nil, fmt.Errorf("disk/xfs: container %s: setting project %d: %w", c.ID, proj, err)
	}
	limit := c.Resources.DiskBytes
	if x.enforce && limit > 0 {
		u, err := q.get(proj)
		if err != nil {
			_ = setProjectTree(c.Sandbox, 0)
			return nil, fmt.Errorf("disk/xfs: container %s: %w", c.ID, err)
		}
		if u.Bytes > limit {
			_ = setProjectTree(c.Sandbox, 0)
			return nil, fmt.Errorf("disk/xfs: container %s: the sandbox %s already holds %s (%d bytes), more than its disk resource of %s (%d bytes)",
				c.ID, c.Sandbox, humanBytes(u.Bytes), u.Bytes, humanBytes(limit), limit)
		}
	}
	soft, hard := x.limits(limit)
	if err := q.setLimit(proj, soft, hard); err != nil {
		_ = setProjectTree(c.Sandbox, 0)
		return nil, fmt.Errorf("disk/xfs: container %s: %w", c.ID, err)
	}
	x.mu.Lock()
	x.ctrs[c.ID] = &xfsCtr{id: c.ID, sandbox: c.Sandbox, proj: proj, q: q, limit: limit}
	x.mu.Unlock()
	ok = true
	return nil, nil
}

// Isolate implements container.Isolator.
func (x *XFS) Isolate(context.Context, string, int) error { return nil }

// Recover implements container.Isolator: each known container's
// project ID is read back from its sandbox directory and its limit set
// again. Projects of the range that no known container holds get their
// limits lifted; their IDs return to use once their files are gone.
func (x *XFS) Recover(_ context.Context, known []*container.Config) error {
	var errs []error
	for _, c := range known {
		if c.Sandbox == "" {
			continue
		}
		q, err := x.fss.get(c.Sandbox)
		if err != nil {
			errs = append(errs, fmt.Errorf("disk/xfs: recovering %s: %w", c.ID, err))
			continue
		}
		proj, err := projectID(c.Sandbox)
		if err != nil {
			if !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("disk/xfs: recovering %s: %w", c.ID, err))
			}
			continue
		}
		if proj < x.lo || proj > x.hi {
			// Launched before disk/xfs was on (or the range changed): it
			// stays unaccounted.
			x.log.Warn("recovered container has no project of the range; its disk is not accounted", "container", c.ID, "project", proj)
			continue
		}
		x.mu.Lock()
		if other, held := x.owner[proj]; held && other != c.ID {
			x.mu.Unlock()
			errs = append(errs, fmt.Errorf("disk/xfs: recovering %s: project %d is also %s's", c.ID, proj, other))
			continue
		}
		x.owner[proj] = c.ID
		x.ctrs[c.ID] = &xfsCtr{id: c.ID, sandbox: c.Sandbox, proj: proj, q: q, limit: c.Resources.DiskBytes}
		x.mu.Unlock()
		soft, hard := x.limits(c.Resources.DiskBytes)
		if err := q.setLimit(proj, soft, hard); err != nil {
			errs = append(errs, fmt.Errorf("disk/xfs: recovering %s: %w", c.ID, err))
		}
	}
	x.liftOrphanLimits()
	return errors.Join(errs...)
}

// liftOrphanLimits clears the limits of the range's projects that no
// container holds, walking only the projects that exist
// (Q_XGETNEXTQUOTA), not the whole range. Best effort: a kernel without
// the call leaves them, which only matters if their files are written to.
func (x *XFS) liftOrphanLimits() {
	x.fss.mu.Lock()
	fss := make([]*quotaFS, 0, len(x.fss.fss))
	for _, q := range x.fss.fss {
		fss = append(fss, q)
	}
	x.fss.mu.Unlock()
	for _, q := range fss {
		n := 0
		for p := x.lo; p <= x.hi; {
			var d fsDiskQuota
			if err := q.ctl(qXGetNextQuota, p, unsafe.Pointer(&d)); err != nil {
				break // ENOENT: no more projects; anything else: not supported
			}
			if d.ID < p || d.ID > x.hi {
				break
			}
			x.mu.Lock()
			_, held := x.owner[d.ID]
			x.mu.Unlock()
			if !held && (d.BlkHardLimit != 0 || d.BlkSoftLimit != 0) {
				if err := q.setLimit(d.ID, 0, 0); err == nil {
					n++
				}
			}
			if d.ID == x.hi {
				break
			}
			p = d.ID + 1
		}
		if n > 0 {
			x.log.Info("lifted the limits of projects no container holds", "projects", n)
		}
	}
}

// Watch implements container.Watcher. Only the kill mode reports;
// with a hard limit the kernel enforces it (EDQUOT) and nothing is
// destroyed.
func (x *XFS) Watch(id string, report func(container.Limitation)) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	e := x.ctrs[id]
	if e == nil {
		return fmt.Errorf("disk/xfs: unknown container %s", id)
	}
	e.report = report
	return nil
}

// Update implements container.Updater: the project's limit follows the
// new disk resource at once.
func (x *XFS) Update(_ context.Context, id string, r container.Resources) error {
	x.mu.Lock()
	e := x.ctrs[id]
	if e != nil {
		e.limit = r.DiskBytes
	}
	x.mu.Unlock()
	if e == nil {
		return fmt.Errorf("disk/xfs: unknown container %s", id)
	}
	soft, hard := x.limits(r.DiskBytes)
	if err := e.q.setLimit(e.proj, soft, hard); err != nil {
		return fmt.Errorf("disk/xfs: container %s: %w", id, err)
	}
	return nil
}

// Usage implements container.UsageReporter: one quotactl, whatever
// the sandbox holds.
func (x *XFS) Usage(_ context.Context, id string, u *container.Usage) error {
	x.mu.Lock()
	e := x.ctrs[id]
	x.mu.Unlock()
	if e == nil {
		return nil
	}
	pu, err := e.q.get(e.proj)
	if err != nil {
		return fmt.Errorf("disk/xfs: container %s: %w", id, err)
	}
	u.DiskUsedBytes = pu.Bytes
	u.Set["disk_used_bytes"] = true
	if e.limit > 0 {
		u.DiskLimitBytes = e.limit
		u.Set["disk_limit_bytes"] = true
	}
	return nil
}

// Cleanup implements container.Isolator: the project's limit is
// lifted at once; the sandbox's files (left on disk for the sandbox GC) go
// back to project 0 in the background, after which the ID is free. That
// walk is proportional to the files (measured under TCG emulation: 30 s
// for 10^5 files), too long to hold up the report of a container's end.
func (x *XFS) Cleanup(_ context.Context, id string) error {
	x.mu.Lock()
	e := x.ctrs[id]
	delete(x.ctrs, id)
	if e != nil {
		x.draining[e.proj] = drain{sandbox: e.sandbox}
	}
	x.mu.Unlock()
	if e == nil {
		return nil
	}
	select {
	case x.drainCh <- struct{}{}:
	default:
	}
	if err := e.q.setLimit(e.proj, 0, 0); err != nil {
		return fmt.Errorf("disk/xfs: container %s: %w", id, err)
	}
	return nil
}

// drainLoop gives cleaned-up sandboxes back to project 0, one at a time,
// on a thread of its own at idle I/O priority: the walk is the agent's
// (the ioctl must be made by someone), but it yields the disk to tasks.
func (x *XFS) drainLoop(ctx context.Context) {
	defer x.wg.Done()
	runtime.LockOSThread() // never unlocked: the thread ends with the loop
	_, _, _ = unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(unix.Gettid()), ioprioClassIdle<<ioprioClassShift)
	for {
		x.mu.Lock()
		var proj uint32
		var d drain
		found := false
		for p, dd := range x.draining {
			proj, d, found = p, dd, true
			break
		}
		x.mu.Unlock()
		if !found {
			select {
			case <-ctx.Done():
				return
			case <-x.drainCh:
				continue
			}
		}
		if err := setProjectTree(d.sandbox, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			// The files left with the ID keep it out of use (allocLocked
			// checks the quota is empty) until the GC removes them.
			x.log.Warn("returning a sandbox's files to project 0", "sandbox", d.sandbox, "project", proj, "err", err)
		}
		x.mu.Lock()
		delete(x.draining, proj)
		delete(x.owner, proj)
		x.drained.Broadcast()
		x.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
	}
}

// waitDrained waits until every cleaned-up project is released (tests).
func (x *XFS) waitDrained() {
	x.mu.Lock()
	for len(x.draining) > 0 {
		x.drained.Wait()
	}
	x.mu.Unlock()
}

// watchLoop is the kill mode: every interval, one quota read per watched
// container; one over its disk resource is reported once.
func (x *XFS) watchLoop(ctx context.Context) {
	defer x.wg.Done()
	t := time.NewTicker(x.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		x.mu.Lock()
		var es []*xfsCtr
		for _, e := range x.ctrs {
			if e.report != nil && !e.reported && e.limit > 0 {
				es = append(es, e)
			}
		}
		x.mu.Unlock()
		for _, e := range es {
			x.check(e)
		}
	}
}

func (x *XFS) check(e *xfsCtr) {
	u, err := e.q.get(e.proj)
	if err != nil {
		x.log.Warn("reading quota", "container", e.id, "project", e.proj, "err", err)
		return
	}
	x.mu.Lock()
	if u.Bytes <= e.limit || e.reported || x.ctrs[e.id] != e {
		x.mu.Unlock()
		return
	}
	e.reported = true
	report, limit := e.report, e.limit
	x.mu.Unlock()
	x.log.Info("container over its disk limit", "container", e.id, "used", u.Bytes, "limit", limit)
	report(container.Limitation{
		Reason: ReasonDisk,
		Message: fmt.Sprintf("Disk usage (%s, %d bytes) exceeds quota (%s, %d bytes) in sandbox %s",
			humanBytes(u.Bytes), u.Bytes, humanBytes(limit), limit, e.sandbox),
	})
}

// project returns the container's project ID (tests).
func (x *XFS) project(id string) (uint32, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e := x.ctrs[id]
	if e == nil {
		return 0, false
	}
	return e.proj, true
}
