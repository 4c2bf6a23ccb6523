package cgroups

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/corral/corral/container"
	"github.com/corral/corral/container/cgroupfs"
)

// base is the part every cgroups isolator shares: where the container's
// cgroups are, creating them (v1), moving the init in (v1), finding orphans
// and removing cgroups.
type base struct {
	name    string
	root    string
	unified bool
	// mount is the cgroup2 hierarchy on a unified host (Mesos'
	// --cgroups_hierarchy, default /sys/fs/cgroup); the linux launcher
	// makes the containers' cgroups below it.
	mount string
	// ctrls are the v1 controllers this isolator owns, the primary first;
	// mounts maps them to their hierarchy's mount point.
	ctrls  []string
	mounts map[string]string
	// hierarchies are the distinct mount points of ctrls (co-mounted
	// controllers share one).
	hierarchies []string
	log         *slog.Logger
}

// newBase checks that the host offers what the isolator needs: v1ctrls
// mounted on a v1 (or hybrid) host, v2ctrls enabled at the v2 root.
func newBase(name string, o container.Options, v1ctrls, v2ctrls []string) (*base, error) {
	h, err := cgroupfs.ReadHost()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	root, err := cgroupfs.CleanRoot(o.CgroupsRoot)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	b := &base{name: name, root: root, unified: h.Unified, mounts: map[string]string{}, log: slog.Default().With("isolator", name)}
	if h.Unified {
		b.mount = cgroupfs.DefaultMount
		if m := o.CgroupsHierarchy; m != "" {
			b.mount = filepath.Clean(m)
		}
		have, err := cgroupfs.Controllers(b.mount)
		if err != nil {
			return nil, fmt.Errorf("%s: --cgroups_hierarchy: reading the cgroup v2 controllers: %w", name, err)
		}
		var missing []string
		for _, c := range v2ctrls {
			if !slices.Contains(have, c) {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			sort.Strings(have)
			return nil, fmt.Errorf("%s: cgroup v2 controller(s) %s not available (%s/cgroup.controllers has: %s)",
				name, strings.Join(missing, ", "), b.mount, strings.Join(have, " "))
		}
		return b, nil
	}
	seen := map[string]bool{}
	for _, c := range v1ctrls {
		m, ok := h.V1[c]
		if !ok {
			return nil, fmt.Errorf("%s: the cgroup v1 controller %q is not mounted (no cgroup mount with it in /proc/self/mountinfo)", name, c)
		}
		b.ctrls = append(b.ctrls, c)
		b.mounts[c] = m
		if !seen[m] {
			seen[m] = true
			b.hierarchies = append(b.hierarchies, m)
		}
	}
	return b, nil
}

// dirs is where one container's cgroups are.
type dirs struct {
	// unified is the container's cgroup on v2; empty on v1.
	unified string
	// v1 maps each owned controller to the container's cgroup in its
	// hierarchy.
	v1 map[string]string
}

// of is the directory holding ctrl's files.
func (d dirs) of(ctrl string) string {
	if d.unified != "" {
		return d.unified
	}
	return d.v1[ctrl]
}

func (b *base) dirsFor(id string) dirs {
	if b.unified {
		return dirs{unified: filepath.Join(b.mount, b.root, id)}
	}
	d := dirs{v1: make(map[string]string, len(b.ctrls))}
	for _, c := range b.ctrls {
		d.v1[c] = filepath.Join(b.mounts[c], b.root, id)
	}
	return d
}

// v1Dirs lists the container's cgroups, one per owned hierarchy.
func (b *base) v1Dirs(id string) []string {
	out := make([]string, len(b.hierarchies))
	for i, m := range b.hierarchies {
		out[i] = filepath.Join(m, b.root, id)
	}
	return out
}

// create makes the container's v1 cgroups.
func (b *base) create(id string) error {
	for _, d := range b.v1Dirs(id) {
		if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
			return fmt.Errorf("creating cgroups root: %w", err)
		}
		if err := os.Mkdir(d, 0o755); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("cgroup %s already exists (left by an earlier container with this ID?)", d)
			}
			return fmt.Errorf("creating cgroup: %w", err)
		}
	}
	return nil
}

// attach moves pid (and so everything it will start) into the container's
// v1 cgroups.
func (b *base) attach(id string, pid int) error {
	for _, d := range b.v1Dirs(id) {
		if err := cgroupfs.Write(d, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return err
		}
	}
	return nil
}

// v2Ready checks that the linux launcher made the container's cgroup and put
// the init in it.
func (b *base) v2Ready(id string, pid int) (string, error) {
	dir := filepath.Join(b.mount, b.root, id)
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("container cgroup %s: %w: cgroups isolators on cgroup v2 need --launcher=linux", dir, err)
	}
	want := "/" + b.root + "/" + id
	if pid > 0 {
		p, ok, err := cgroupfs.CgroupOf(pid, "")
		if err != nil {
			return "", fmt.Errorf("reading the cgroup of the container init: %w", err)
		}
		if ok && p != want && !strings.HasPrefix(p, want+"/") {
			return "", fmt.Errorf("the container init is in cgroup %s, not %s: cgroups isolators on cgroup v2 need --launcher=linux", p, want)
		}
	}
	return dir, nil
}

// remove removes the container's v1 cgroups and anything nested in them.
func (b *base) remove(ctx context.Context, id string) error {
	var errs []error
	for _, d := range b.v1Dirs(id) {
		if err := cgroupfs.RemoveTree(ctx, d, removeOptions); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeOrphans removes every container cgroup under the root of the owned
// v1 hierarchies that is not among known, killing what still runs in it.
func (b *base) removeOrphans(ctx context.Context, known map[string]bool) error {
	var errs []error
	for _, m := range b.hierarchies {
		rootDir := filepath.Join(m, b.root)
		entries, err := os.ReadDir(rootDir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range entries {
			if !e.IsDir() || known[e.Name()] {
				continue
			}
			b.log.Info("removing orphan cgroup", "cgroup", filepath.Join(rootDir, e.Name()))
			if err := cgroupfs.RemoveTree(ctx, filepath.Join(rootDir, e.Name()), removeOptions); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// removeOptions: removing one container's v1 cgroup retries for at most
// 10 s, killing what is still in it (the launcher has killed the processes
// by then, unless the cgroup is an orphan; stragglers are killed).
var removeOptions = cgroupfs.RemoveOptions{Timeout: 10 * time.Second, KillBusy: true}

// policy is what one isolator writes into a container's cgroups.
type policy interface {
	// check validates the container's resources before anything is made;
	// its error is the task's reason.
	check(r *container.Resources) error
	// apply writes the limits for r. initial is true for the first write
	// (Prepare on v1, Isolate on v2) and false for Update.
	apply(d dirs, r *container.Resources, initial bool) error
}

// usager is a policy that reads statistics.
type usager interface {
	usage(d dirs, r *container.Resources, u *container.Usage) error
}

// isolator runs a policy over the shared cgroup life cycle.
type isolator struct {
	*base
	pol policy

	mu   sync.Mutex
	ctrs map[string]*ctr
}

type ctr struct {
	res container.Resources
	d   dirs
}

func newIsolator(b *base, p policy) *isolator {
	return &isolator{base: b, pol: p, ctrs: map[string]*ctr{}}
}

// Name implements container.Isolator.
func (i *isolator) Name() string { return i.name }

// CheckLauncher implements container.LauncherChecker: on cgroup v2 a
// container has one cgroup, the linux launcher's, and the isolators only
// write into it; on v1 they make their own and work with any launcher.
func (i *isolator) CheckLauncher(l container.Launcher) error {
	if i.unified && l.Name() != "linux" {
		return fmt.Errorf("%s on cgroup v2 needs --launcher=linux (the container's cgroup is the launcher's), not %s", i.name, l.Name())
	}
	return nil
}

func (i *isolator) get(id string) (*ctr, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	c, ok := i.ctrs[id]
	if !ok {
		return nil, fmt.Errorf("%s: unknown container %s", i.name, id)
	}
	return c, nil
}

// Recover implements container.Isolator: known containers are taken
// back; on v1, cgroups under the root that belong to no known container are
// orphans and are removed with whatever still runs in them. (On v2 the
// container cgroups are the launcher's, and so are their orphans.)
func (i *isolator) Recover(ctx context.Context, known []*container.Config) error {
	ids := make(map[string]bool, len(known))
	i.mu.Lock()
	for _, c := range known {
		ids[c.ID] = true
		i.ctrs[c.ID] = &ctr{res: copyResources(c.Resources), d: i.dirsFor(c.ID)}
	}
	i.mu.Unlock()
	if i.unified {
		return nil
	}
	if err := i.removeOrphans(ctx, ids); err != nil {
		return fmt.Errorf("%s: %w", i.name, err)
	}
	return nil
}

// Prepare implements container.Isolator. On v1 the cgroups are made and
// limited before any process exists.
func (i *isolator) Prepare(_ context.Context, c *container.Config) (*container.LaunchInfo, error) {
	res := copyResources(c.Resources)
	if err := i.pol.check(&res); err != nil {
		return nil, err
	}
	st := &ctr{res: res, d: i.dirsFor(c.ID)}
	i.mu.Lock()
	if _, dup := i.ctrs[c.ID]; dup {
		i.mu.Unlock()
		return nil, fmt.Errorf("container %s already prepared", c.ID)
	}
	i.ctrs[c.ID] = st
	i.mu.Unlock()
	if i.unified {
		return nil, nil
	}
	if err := i.create(c.ID); err != nil {
		return nil, err
	}
	if err := i.pol.apply(st.d, &st.res, true); err != nil {
		return nil, err
	}
	return nil, nil
}

// Isolate implements container.Isolator: on v1 the paused init joins the
// cgroups; on v2 the limits are written into the cgroup the launcher put it
// in.
func (i *isolator) Isolate(_ context.Context, id string, pid int) error {
	st, err := i.get(id)
	if err != nil {
		return err
	}
	if !i.unified {
		return i.attach(id, pid)
	}
	if _, err := i.v2Ready(id, pid); err != nil {
		return err
	}
	return i.pol.apply(st.d, &st.res, true)
}

// Update implements container.Updater.
func (i *isolator) Update(_ context.Context, id string, r container.Resources) error {
	st, err := i.get(id)
	if err != nil {
		return err
	}
	res := copyResources(r)
	if err := i.pol.check(&res); err != nil {
		return err
	}
	if err := i.pol.apply(st.d, &res, false); err != nil {
		return err
	}
	i.mu.Lock()
	st.res = res
	i.mu.Unlock()
	return nil
}

// Usage implements container.UsageReporter.
func (i *isolator) Usage(_ context.Context, id string, u *container.Usage) error {
	up, ok := i.pol.(usager)
	if !ok {
		return nil
	}
	st, err := i.get(id)
	if err != nil {
		return err
	}
	i.mu.Lock()
	res := st.res
	i.mu.Unlock()
	if u.Set == nil {
		u.Set = map[string]bool{}
	}
	return up.usage(st.d, &res, u)
}

// Cleanup implements container.Isolator. On v1 the cgroups are removed
// (the launcher has killed the processes by now; stragglers are killed); on
// v2 the cgroup is the launcher's to remove.
func (i *isolator) Cleanup(ctx context.Context, id string) error {
	i.mu.Lock()
	delete(i.ctrs, id)
	i.mu.Unlock()
	if i.unified {
		return nil
	}
	return i.remove(ctx, id)
}

func copyResources(r container.Resources) container.Resources {
	if r.Labels != nil {
		l := make(map[string]string, len(r.Labels))
		for k, v := range r.Labels {
			l[k] = v
		}
		r.Labels = l
	}
	return r
}
