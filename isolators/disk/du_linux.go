package disk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/corral/corral/container"
	"github.com/corral/corral/container/cgroupfs"
)

// DU is the disk/du isolator: it measures each container's sandbox with a
// du walk every interval, one walk at a time across all containers, and
// with enforcement reports a container over its disk resource.
type DU struct {
	interval time.Duration
	enforce  bool
	log      *slog.Logger
	runner   *duRunner

	mu   sync.Mutex
	ctrs map[string]*duCtr
	wake chan struct{}

	stop context.CancelFunc
	done chan struct{}
}

type duCtr struct {
	id      string
	sandbox string
	limit   uint64
	// used is the last measurement; measured says there was one.
	used     uint64
	measured bool
	walks    uint64
	next     time.Time
	report   func(container.Limitation)
	reported bool
}

// NewDU builds disk/du (containerizer constructor).
func NewDU(o container.Options) (container.Isolator, error) {
	return newDU(o)
}

func newDU(o container.Options) (*DU, error) {
	set := container.SettingsOf[*Settings](o)
	if err := set.Validate(); err != nil {
		return nil, fmt.Errorf("disk/du: %w", err)
	}
	interval, enforce := set.WatchInterval, set.Enforce
	log := slog.Default().With("isolator", "disk/du")
	cg := set.DUCgroup
	if cg == "" {
		root := strings.Trim(o.CgroupsRoot, "/")
		if root == "" {
			root = cgroupfs.DefaultRoot
		}
		cg = root + "_disk_du"
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &DU{
		interval: interval,
		enforce:  enforce,
		log:      log,
		runner:   newDURunner(log, cg),
		ctrs:     map[string]*duCtr{},
		wake:     make(chan struct{}, 1),
		stop:     cancel,
		done:     make(chan struct{}),
	}
	go d.loop(ctx)
	return d, nil
}

// Name implements container.Isolator.
func (d *DU) Name() string { return "disk/du" }

// Close stops the walks and removes the helper's cgroups (tests; the agent
// keeps its isolators for its lifetime).
func (d *DU) Close() error {
	d.stop()
	<-d.done
	return d.runner.remove()
}

func (d *DU) add(c *container.Config) {
	d.mu.Lock()
	old := d.ctrs[c.ID]
	e := &duCtr{id: c.ID, sandbox: c.Sandbox, limit: c.Resources.DiskBytes, next: time.Now().Add(d.interval)}
	if old != nil {
		e.report, e.reported = old.report, old.reported
	}
	d.ctrs[c.ID] = e
	d.mu.Unlock()
	d.poke()
}

func (d *DU) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Recover implements container.Isolator: the known containers are
// measured again from the next interval on. disk/du makes nothing on disk
// or in the kernel, so there is nothing of unknown containers to remove.
func (d *DU) Recover(_ context.Context, known []*container.Config) error {
	for _, c := range known {
		if c.Sandbox != "" {
			d.add(c)
		}
	}
	return nil
}

// Prepare implements container.Isolator. It only records the
// container: nothing is walked on the launch path.
func (d *DU) Prepare(_ context.Context, c *container.Config) (*container.LaunchInfo, error) {
	if c.Sandbox == "" {
		return nil, fmt.Errorf("disk/du: container %s has no sandbox", c.ID)
	}
	if !filepath.IsAbs(c.Sandbox) {
		return nil, fmt.Errorf("disk/du: sandbox %q is not absolute", c.Sandbox)
	}
	d.add(c)
	return nil, nil
}

// Isolate implements container.Isolator.
func (d *DU) Isolate(context.Context, string, int) error { return nil }

// Watch implements container.Watcher. A container already measured
// over its limit (say, before the agent restarted) is reported at once.
func (d *DU) Watch(id string, report func(container.Limitation)) error {
	d.mu.Lock()
	e := d.ctrs[id]
	if e == nil {
		d.mu.Unlock()
		return fmt.Errorf("disk/du: unknown container %s", id)
	}
	e.report = report
	l, fire := d.checkLocked(e)
	d.mu.Unlock()
	if fire {
		report(l)
	}
	return nil
}

// Update implements container.Updater: the new disk limit applies from
// the next measurement.
func (d *DU) Update(_ context.Context, id string, r container.Resources) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.ctrs[id]
	if e == nil {
		return fmt.Errorf("disk/du: unknown container %s", id)
	}
	e.limit = r.DiskBytes
	return nil
}

// Usage implements container.UsageReporter from the last walk: it
// never walks itself, so /monitor/statistics stays cheap.
func (d *DU) Usage(_ context.Context, id string, u *container.Usage) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.ctrs[id]
	if e == nil {
		return nil
	}
	if e.limit > 0 {
		u.DiskLimitBytes = e.limit
		u.Set["disk_limit_bytes"] = true
	}
	if e.measured {
		u.DiskUsedBytes = e.used
		u.Set["disk_used_bytes"] = true
	}
	return nil
}

// Cleanup implements container.Isolator. A walk in progress that
// includes the container finishes (it measures others too); its result
// for the container is dropped.
func (d *DU) Cleanup(_ context.Context, id string) error {
	d.mu.Lock()
	delete(d.ctrs, id)
	d.mu.Unlock()
	return nil
}

// checkLocked decides whether e is to be reported now.
func (d *DU) checkLocked(e *duCtr) (container.Limitation, bool) {
	if !d.enforce || e.report == nil || e.reported || !e.measured || e.limit == 0 || e.used <= e.limit {
		return container.Limitation{}, false
	}
	e.reported = true
	return container.Limitation{
		Reason: ReasonDisk,
		Message: fmt.Sprintf("Disk usage (%s, %d bytes) exceeds quota (%s, %d bytes) in sandbox %s",
			humanBytes(e.used), e.used, humanBytes(e.limit), e.limit, e.sandbox),
	}, true
}

// loop runs the walks: the containers due, oldest-due first, in batches of
// at most maxBatch through one helper, one batch at a time. Each container
// is measured at most once per interval, counted from the end of its last
// walk, so a slow walk stretches the period rather than stacking walks.
func (d *DU) loop(ctx context.Context) {
	defer close(d.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		d.mu.Lock()
		var due []*duCtr
		next := now.Add(time.Hour)
		for _, e := range d.ctrs {
			if !e.next.After(now) {
				due = append(due, e)
			} else if e.next.Before(next) {
				next = e.next
			}
		}
		if len(due) > 0 {
			sort.Slice(due, func(i, j int) bool { return due[i].next.Before(due[j].next) })
			if len(due) > maxBatch {
				due = due[:maxBatch]
			}
			d.mu.Unlock()
			d.walk(ctx, due)
			continue
		}
		d.mu.Unlock()
		timer.Reset(next.Sub(now))
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-timer.C:
		}
	}
}

// walk measures a batch and applies the results.
func (d *DU) walk(ctx context.Context, batch []*duCtr) {
	dirs := make([]string, len(batch))
	for i, e := range batch {
		dirs[i] = e.sandbox
	}
	res, err := d.runner.du(ctx, dirs)
	type fire struct {
		report func(container.Limitation)
		l      container.Limitation
	}
	var fires []fire
	d.mu.Lock()
	now := time.Now()
	for i, e := range batch {
		e.next = now.Add(d.interval)
		if d.ctrs[e.id] != e {
			continue // cleaned up (or prepared again) during the walk
		}
		switch {
		case err != nil:
		case res.Errs[i] != nil:
			d.log.Warn("measuring sandbox", "container", e.id, "err", res.Errs[i])
		default:
			e.used, e.measured = res.Bytes[i], true
			e.walks++
			if l, ok := d.checkLocked(e); ok {
				fires = append(fires, fire{e.report, l})
				d.log.Info("container over its disk limit", "container", e.id, "used", e.used, "limit", e.limit)
			}
		}
	}
	d.mu.Unlock()
	if err != nil && !errors.Is(err, context.Canceled) {
		d.log.Warn("measuring sandboxes", "containers", len(batch), "err", err)
	}
	for _, f := range fires {
		f.report(f.l)
	}
}
