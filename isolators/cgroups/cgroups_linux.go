package cgroups

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	cgroupsv3 "github.com/containerd/cgroups/v3"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/corral/corral/container"
)

// unifiedMount is where the cgroup v2 hierarchy is mounted on a unified host.
const unifiedMount = "/sys/fs/cgroup"

// HierarchyKey is the Options.Extra key of Mesos' --cgroups_hierarchy, shared
// with the linux launcher: on a unified host the cgroup2 mount the
// containers' cgroups are under.
const HierarchyKey = "cgroups_hierarchy"

// DefaultRoot is the cgroup that holds every container when
// Options.CgroupsRoot is empty (Mesos' --cgroups_root default is "mesos").
const DefaultRoot = "corral"

// hostInfo is what the isolators know of the host's cgroups; it is read once
// per process, never on the launch path.
type hostInfo struct {
	unified bool
	// v1 maps a v1 controller to its hierarchy's mount point.
	v1 map[string]string
}

var (
	hostOnce sync.Once
	host     *hostInfo
	hostErr  error
)

func detectHost() (*hostInfo, error) {
	hostOnce.Do(func() { host, hostErr = readHost() })
	return host, hostErr
}

func readHost() (*hostInfo, error) {
	h := &hostInfo{v1: map[string]string{}}
	switch cgroupsv3.Mode() {
	case cgroupsv3.Unavailable:
		return nil, fmt.Errorf("no cgroup file system mounted at %s", unifiedMount)
	case cgroupsv3.Unified:
		h.unified = true
		return h, nil
	}
	// Legacy or hybrid: the controllers are v1 hierarchies, found in
	// mountinfo (cpu and cpuacct may share one, or not).
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup"))
	if err != nil {
		return nil, err
	}
	for _, m := range mounts {
		mnt := m.Mountpoint
		for _, opt := range strings.Split(m.VFSOptions, ",") {
			if opt == "rw" || opt == "ro" || strings.Contains(opt, "=") {
				continue
			}
			// Prefer the mount under /sys/fs/cgroup when a hierarchy is
			// mounted more than once.
			if cur, ok := h.v1[opt]; !ok || (!strings.HasPrefix(cur, unifiedMount+"/") && strings.HasPrefix(mnt, unifiedMount+"/")) {
				h.v1[opt] = mnt
			}
		}
	}
	return h, nil
}

// v2Controllers reads the controllers a cgroup2 hierarchy offers.
func v2Controllers(mount string) (map[string]bool, error) {
	b, err := os.ReadFile(filepath.Join(mount, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("reading the cgroup v2 controllers: %w", err)
	}
	out := map[string]bool{}
	for _, c := range strings.Fields(string(b)) {
		out[c] = true
	}
	return out, nil
}

// cleanRoot validates Options.CgroupsRoot: a relative cgroup path, possibly
// nested ("corral" or "agents/corral").
func cleanRoot(root string) (string, error) {
	if root == "" {
		return DefaultRoot, nil
	}
	r := filepath.Clean(strings.Trim(root, "/"))
	if r == "." || r == ".." || strings.HasPrefix(r, "../") || strings.Contains(r, "/../") {
		return "", fmt.Errorf("invalid cgroups root %q", root)
	}
	return r, nil
}

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
	h, err := detectHost()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	root, err := cleanRoot(o.CgroupsRoot)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	b := &base{name: name, root: root, unified: h.unified, mounts: map[string]string{}, log: slog.Default().With("isolator", name)}
	if h.unified {
		b.mount = unifiedMount
		if m := o.Extra[HierarchyKey]; m != "" {
			b.mount = filepath.Clean(m)
		}
		avail, err := v2Controllers(b.mount)
		if err != nil {
			return nil, fmt.Errorf("%s: --%s: %w", name, HierarchyKey, err)
		}
		var missing []string
		for _, c := range v2ctrls {
			if !avail[c] {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			have := make([]string, 0, len(avail))
			for c := range avail {
				have = append(have, c)
			}
			sort.Strings(have)
			return nil, fmt.Errorf("%s: cgroup v2 controller(s) %s not available (%s/cgroup.controllers has: %s)",
				name, strings.Join(missing, ", "), b.mount, strings.Join(have, " "))
		}
		return b, nil
	}
	seen := map[string]bool{}
	for _, c := range v1ctrls {
		m, ok := h.v1[c]
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
		if err := writeFile(d, "cgroup.procs", strconv.Itoa(pid)); err != nil {
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
		cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err != nil {
			return "", fmt.Errorf("reading the cgroup of the container init: %w", err)
		}
		for _, line := range strings.Split(string(cg), "\n") {
			if p, ok := strings.CutPrefix(line, "0::"); ok {
				if p != want && !strings.HasPrefix(p, want+"/") {
					return "", fmt.Errorf("the container init is in cgroup %s, not %s: cgroups isolators on cgroup v2 need --launcher=linux", p, want)
				}
				break
			}
		}
	}
	return dir, nil
}

// remove removes the container's v1 cgroups and anything nested in them.
func (b *base) remove(ctx context.Context, id string) error {
	var errs []error
	for _, d := range b.v1Dirs(id) {
		if err := removeTree(ctx, d); err != nil {
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
			if err := removeTree(ctx, filepath.Join(rootDir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// removeTimeout bounds how long removing one cgroup may keep retrying.
const removeTimeout = 10 * time.Second

// removeTree removes a cgroup and its descendants, deepest first. A cgroup
// that is busy has its processes killed (named by the cgroup, held by pidfd)
// and is retried with backoff, for at most removeTimeout.
func removeTree(ctx context.Context, dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeTree(ctx, filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	deadline := time.Now().Add(removeTimeout)
	delay := time.Millisecond
	for {
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("removing cgroup %s: %w", dir, err)
		}
		killAll(dir)
		if time.Now().After(deadline) {
			return fmt.Errorf("removing cgroup %s: still busy after %v (processes: %v)", dir, removeTimeout, readPids(dir))
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("removing cgroup %s: %w", dir, ctx.Err())
		case <-t.C:
		}
		delay = min(delay*2, 100*time.Millisecond)
	}
}

// killAll sends SIGKILL to every process in the cgroup. Each is held by a
// pidfd taken while it was listed, and signalled only if it is still listed
// afterwards, so a reused PID is never hit.
func killAll(dir string) {
	pids := readPids(dir)
	if len(pids) == 0 {
		return
	}
	fds := make(map[int]int, len(pids))
	for _, pid := range pids {
		if fd, err := unix.PidfdOpen(pid, 0); err == nil {
			fds[pid] = fd
		}
	}
	still := map[int]bool{}
	for _, pid := range readPids(dir) {
		still[pid] = true
	}
	for pid, fd := range fds {
		if still[pid] {
			_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		}
		unix.Close(fd)
	}
}

func readPids(dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
			out = append(out, pid)
		}
	}
	return out
}

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

// File helpers. cgroup files are written with one write(2), as the kernel
// expects.

func writeFile(dir, file, val string) error {
	p := filepath.Join(dir, file)
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("writing %q to %s: %w", val, p, err)
	}
	_, err = f.WriteString(val)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %q to %s: %w", val, p, err)
	}
	return nil
}

// writeOptional is writeFile for a file the kernel may not have (a
// configuration option or an older kernel); reports whether it was written.
func writeOptional(dir, file, val string) (bool, error) {
	err := writeFile(dir, file, val)
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(dir); serr != nil {
			return false, err // the cgroup itself is gone
		}
		return false, nil
	}
	return err == nil, err
}

func readString(dir, file string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// unlimited is what readUint returns for "max" and for v1's "no limit"
// (PAGE_COUNTER_MAX in bytes, 0x7ffffffffffff000 on 4 KiB pages).
const unlimited = math.MaxUint64

func readUint(dir, file string) (uint64, error) {
	s, err := readString(dir, file)
	if err != nil {
		return 0, err
	}
	return parseLimit(s)
}

func parseLimit(s string) (uint64, error) {
	if s == "max" {
		return unlimited, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		// v1 reports -1 for some unlimited values (cpu.cfs_quota_us).
		if iv, ierr := strconv.ParseInt(s, 10, 64); ierr == nil && iv < 0 {
			return unlimited, nil
		}
		return 0, err
	}
	if v >= 1<<62 {
		return unlimited, nil
	}
	return v, nil
}

// readKV reads a flat-keyed file ("key value" lines: memory.stat, cpu.stat,
// memory.events, cpuacct.stat).
func readKV(dir, file string) (map[string]uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return nil, err
	}
	return parseKV(string(b)), nil
}

func parseKV(s string) map[string]uint64 {
	out := map[string]uint64{}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

// parseBool reads a boolean flag from Options.Extra, def when it is unset.
func parseBool(o container.Options, key string, def bool) (bool, error) {
	v, ok := o.Extra[key]
	if !ok || v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("--%s=%q: not a boolean", key, v)
	}
	return b, nil
}

// countLines counts the non-empty lines of a file (cgroup.procs).
func countLines(dir, file string) (uint32, error) {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return 0, err
	}
	var n uint32
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" {
			n++
		}
	}
	return n, nil
}
