package disk

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral/corral/container"
	"github.com/corral/corral/internal/testsupport"
)

// waitFor polls cond; the limit only ends a failing test, it asserts no
// timing.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testsupport.Eventually(t, what, 60*time.Second, cond)
}

// options are Options for the disk isolators with the default settings as
// changed by set (nil: the defaults).
func options(workDir string, set func(*Settings)) container.Options {
	s := DefaultSettings()
	if set != nil {
		set(s)
	}
	return container.Options{WorkDir: workDir, Settings: container.NewSettings().With(s)}
}

// newTestDU builds disk/du measuring every 20ms, its helper's cgroup named
// by the test's prefix, holding containers to their disk if enforce.
func newTestDU(t *testing.T, prefix string, enforce bool) *DU {
	t.Helper()
	d, err := newDU(options("", func(s *Settings) {
		s.WatchInterval, s.DUCgroup, s.Enforce = 20*time.Millisecond, prefix+"du", enforce
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("closing disk/du: %v", err)
		}
	})
	return d
}

func (d *DU) walksOf(id string) uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e := d.ctrs[id]; e != nil {
		return e.walks
	}
	return 0
}

// limitations collects what an isolator reports.
type limitations struct {
	mu sync.Mutex
	ls []container.Limitation
	ch chan struct{}
}

func newLimitations() *limitations { return &limitations{ch: make(chan struct{}, 16)} }

func (l *limitations) report(x container.Limitation) {
	l.mu.Lock()
	l.ls = append(l.ls, x)
	l.mu.Unlock()
	l.ch <- struct{}{}
}

func (l *limitations) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ls)
}

func prepare(t *testing.T, iso container.Isolator, id, sandbox string, disk uint64) *container.Config {
	t.Helper()
	c := &container.Config{ID: id, Sandbox: sandbox, Resources: container.Resources{DiskBytes: disk}}
	if _, err := iso.Prepare(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = iso.Cleanup(context.Background(), id) })
	return c
}

func usage(t *testing.T, r container.UsageReporter, id string) *container.Usage {
	t.Helper()
	u := &container.Usage{Set: map[string]bool{}}
	if err := r.Usage(context.Background(), id, u); err != nil {
		t.Fatal(err)
	}
	return u
}

// A container writing past its disk resource is reported with the disk
// reason and a message giving usage and limit.
func TestDUOverLimit(t *testing.T) {
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	d := newTestDU(t, prefix, true)
	sb := filepath.Join(t.TempDir(), prefix+"sandbox")
	if err := os.Mkdir(sb, 0o755); err != nil {
		t.Fatal(err)
	}
	id := prefix + "c"
	prepare(t, d, id, sb, 1<<20)
	lim := newLimitations()
	if err := d.Watch(id, lim.report); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(filepath.Join(sb, "big"), 3<<20); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lim.ch:
	case <-time.After(60 * time.Second):
		t.Fatal("no limitation reported for a sandbox 3x over its limit")
	}
	l := lim.ls[0]
	if l.Reason != ReasonDisk {
		t.Errorf("reason %q, want %q", l.Reason, ReasonDisk)
	}
	if !strings.Contains(l.Message, "1MB") || !strings.Contains(l.Message, fmt.Sprint(1<<20)) || !strings.Contains(l.Message, "exceeds") {
		t.Errorf("message %q does not give usage and limit", l.Message)
	}
	u := usage(t, d, id)
	if !u.Set["disk_used_bytes"] || !u.Set["disk_limit_bytes"] || u.DiskLimitBytes != 1<<20 || u.DiskUsedBytes < 3<<20 {
		t.Errorf("usage %+v", u)
	}
	// Reported once, however many walks follow.
	w := d.walksOf(id)
	waitFor(t, "two more walks", func() bool { return d.walksOf(id) >= w+2 })
	if n := lim.count(); n != 1 {
		t.Errorf("%d limitations, want 1", n)
	}
}

// Below the limit nothing is reported, walk after walk; without
// enforcement nothing is reported above it either.
func TestDUUnderLimitAndNotEnforced(t *testing.T) {
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	for _, c := range []struct {
		name    string
		enforce bool
		write   int
		limit   uint64
	}{
		{"under", true, 100 << 10, 10 << 20},
		{"not-enforced", false, 2 << 20, 1 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newTestDU(t, prefix+c.name, c.enforce)
			sb := filepath.Join(t.TempDir(), prefix+"sandbox")
			if err := os.Mkdir(sb, 0o755); err != nil {
				t.Fatal(err)
			}
			id := prefix + "c"
			prepare(t, d, id, sb, c.limit)
			lim := newLimitations()
			if err := d.Watch(id, lim.report); err != nil {
				t.Fatal(err)
			}
			if err := writeFile(filepath.Join(sb, "data"), c.write); err != nil {
				t.Fatal(err)
			}
			// Measured (after the write) twice: the decision was made.
			w := d.walksOf(id)
			waitFor(t, "two walks", func() bool { return d.walksOf(id) >= w+2 })
			if n := lim.count(); n != 0 {
				t.Errorf("%d limitations reported: %+v", n, lim.ls)
			}
			u := usage(t, d, id)
			if u.DiskUsedBytes < uint64(c.write) || u.DiskLimitBytes != c.limit {
				t.Errorf("usage %d/%d, wrote %d with limit %d", u.DiskUsedBytes, u.DiskLimitBytes, c.write, c.limit)
			}
		})
	}
}

// cgroupOf reads /proc/<pid>/cgroup into hierarchy ID → path.
func cgroupOf(t *testing.T, pid string) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) == 3 {
			out[f[0]+":"+f[1]] = f[2]
		}
	}
	return out
}

// The walk runs in a helper process outside the agent's cgroup (here: the
// test process's), at idle I/O priority and nice 19, and only ever one at
// a time across containers.
func TestDUHelperPlacement(t *testing.T) {
	testsupport.RequireRoot(t)
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	d := newTestDU(t, prefix, false)
	if len(d.runner.cgroups) == 0 {
		t.Fatal("no cgroup made for the helper")
	}
	self := cgroupOf(t, "self")
	type seen struct {
		cg       map[string]string
		ioprio   int
		nice     int
		siblings int
	}
	var mu sync.Mutex
	var walks []seen
	d.runner.beforeRelease = func(pid int) {
		s := seen{cg: cgroupOf(t, fmt.Sprint(pid))}
		r, _, e := unix.Syscall(unix.SYS_IOPRIO_GET, ioprioWhoProcess, uintptr(pid), 0)
		if e == 0 {
			s.ioprio = int(r)
		}
		p, err := unix.Getpriority(unix.PRIO_PROCESS, pid)
		if err == nil {
			s.nice = 20 - p // the raw syscall returns 20 - nice
		}
		// Other helpers alive now (the sandboxes carry the prefix).
		procs, _ := os.ReadDir("/proc")
		for _, pr := range procs {
			if pr.Name() == fmt.Sprint(pid) {
				continue
			}
			if b, err := os.ReadFile("/proc/" + pr.Name() + "/cmdline"); err == nil && bytes.Contains(b, []byte(prefix+"sb")) {
				s.siblings++
			}
		}
		mu.Lock()
		walks = append(walks, s)
		mu.Unlock()
	}
	const n = 4
	for i := 0; i < n; i++ {
		sb := filepath.Join(t.TempDir(), fmt.Sprint(prefix, "sb", i))
		if err := os.Mkdir(sb, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := writeFile(filepath.Join(sb, "f"), 8<<10); err != nil {
			t.Fatal(err)
		}
		prepare(t, d, fmt.Sprint(prefix, "c", i), sb, 0)
	}
	waitFor(t, "a walk of each container", func() bool {
		for i := 0; i < n; i++ {
			if d.walksOf(fmt.Sprint(prefix, "c", i)) == 0 {
				return false
			}
		}
		return true
	})
	// The walks' CPU time was charged to the helper's cgroup.
	charged := false
	for _, dir := range d.runner.cgroups {
		if b, err := os.ReadFile(filepath.Join(dir, "cpuacct.usage")); err == nil {
			charged = charged || strings.TrimSpace(string(b)) != "0"
		}
		if b, err := os.ReadFile(filepath.Join(dir, "cpu.stat")); err == nil {
			charged = charged || !strings.HasPrefix(string(b), "usage_usec 0\n")
		}
	}
	if !charged {
		t.Errorf("no CPU time charged to the helper's cgroups %v", d.runner.cgroups)
	}
	t.Logf("helper cgroups: %v", d.runner.cgroups)
	mu.Lock()
	defer mu.Unlock()
	if len(walks) == 0 {
		t.Fatal("no walk seen")
	}
	for _, w := range walks {
		moved := 0
		for h, path := range w.cg {
			if strings.HasSuffix(path, "/"+prefix+"du") {
				moved++
				if self[h] == path {
					t.Errorf("helper shares the agent's cgroup %s %s", h, path)
				}
			}
		}
		if moved != len(d.runner.cgroups) {
			t.Errorf("helper in %d of the %d helper cgroups: %v", moved, len(d.runner.cgroups), w.cg)
		}
		if w.ioprio>>ioprioClassShift != ioprioClassIdle {
			t.Errorf("helper I/O priority %#x, want the idle class", w.ioprio)
		}
		if w.nice != 19 {
			t.Errorf("helper nice %d, want 19", w.nice)
		}
		if w.siblings != 0 {
			t.Errorf("%d other helpers ran alongside", w.siblings)
		}
	}
}

// Cleanup during a walk drops the container's result and forgets it.
func TestDUCleanupDuringWalk(t *testing.T) {
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	d := newTestDU(t, prefix, false)
	entered := make(chan int, 1)
	release := make(chan struct{})
	var once sync.Once
	d.runner.beforeRelease = func(pid int) {
		once.Do(func() {
			entered <- pid
			<-release
		})
	}
	var ids []string
	for i := 0; i < 2; i++ {
		sb := filepath.Join(t.TempDir(), fmt.Sprint(prefix, "sandbox", i))
		if err := os.Mkdir(sb, 0o755); err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprint(prefix, "c", i)
		ids = append(ids, id)
		if _, err := d.Prepare(context.Background(), &container.Config{ID: id, Sandbox: sb}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = d.Cleanup(context.Background(), ids[1]) })
	<-entered
	if err := d.Cleanup(context.Background(), ids[0]); err != nil {
		t.Fatal(err)
	}
	close(release)
	// c1 was due after c0: once it is measured, c0's walk is over.
	waitFor(t, "the other container's walk", func() bool { return d.walksOf(ids[1]) > 0 })
	if err := d.Cleanup(context.Background(), ids[0]); err != nil {
		t.Errorf("second Cleanup: %v", err)
	}
	u := usage(t, d, ids[0])
	if len(u.Set) != 0 {
		t.Errorf("usage of a cleaned-up container: %+v", u)
	}
	if err := d.Watch(ids[0], func(container.Limitation) {}); err == nil {
		t.Error("Watch of a cleaned-up container succeeded")
	}
}

// A sandbox that du cannot measure (gone) is an error for it alone.
func TestDUMissingSandbox(t *testing.T) {
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	d := newTestDU(t, prefix, false)
	good := filepath.Join(t.TempDir(), prefix+"good")
	if err := os.Mkdir(good, 0o755); err != nil {
		t.Fatal(err)
	}
	res, err := d.runner.du(context.Background(), []string{filepath.Join(t.TempDir(), prefix+"gone"), good, "/nonexistent/" + prefix})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errs[0] == nil || res.Errs[1] != nil || res.Errs[2] == nil {
		t.Errorf("errors %v", res.Errs)
	}
}

// Recovered containers are measured (and enforced) again; one found over
// its limit is reported as soon as it is watched.
func TestDURecover(t *testing.T) {
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	d := newTestDU(t, prefix, true)
	sb := filepath.Join(t.TempDir(), prefix+"sandbox")
	if err := os.Mkdir(sb, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(filepath.Join(sb, "big"), 2<<20); err != nil {
		t.Fatal(err)
	}
	id := prefix + "c"
	if err := d.Recover(context.Background(), []*container.Config{{ID: id, Sandbox: sb, Resources: container.Resources{DiskBytes: 1 << 20}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Cleanup(context.Background(), id) })
	waitFor(t, "a walk", func() bool { return d.walksOf(id) > 0 })
	lim := newLimitations()
	if err := d.Watch(id, lim.report); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lim.ch:
	case <-time.After(60 * time.Second):
		t.Fatal("no limitation for a recovered container over its limit")
	}
	// Update raises the limit: the next walks do not report again.
	if err := d.Update(context.Background(), id, container.Resources{DiskBytes: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	if u := usage(t, d, id); u.DiskLimitBytes != 1<<30 {
		t.Errorf("limit after Update: %d", u.DiskLimitBytes)
	}
}

func TestDUBadInput(t *testing.T) {
	if _, err := newDU(options("", func(s *Settings) { s.WatchInterval = 0 })); err == nil || !strings.Contains(err.Error(), "--container_disk_watch_interval") {
		t.Errorf("zero interval: %v", err)
	}
	d, err := newDU(options("", func(s *Settings) { s.DUCgroup = "none" }))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, sb := range []string{"", "relative"} {
		if _, err := d.Prepare(context.Background(), &container.Config{ID: "x", Sandbox: sb}); err == nil {
			t.Errorf("Prepare with sandbox %q accepted", sb)
		}
	}
}
