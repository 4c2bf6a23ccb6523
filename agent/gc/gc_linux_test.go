package gc

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/corral/corral/internal/testsupport"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeUsage is an injected disk reading.
type fakeUsage struct {
	mu sync.Mutex
	u  Usage
	fn func() Usage
}

func (f *fakeUsage) DiskUsage(string) (Usage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fn != nil {
		return f.fn(), nil
	}
	return f.u, nil
}

func (f *fakeUsage) set(u Usage) {
	f.mu.Lock()
	f.u = u
	f.mu.Unlock()
}

// workDir makes a work_dir named by the test's prefix, so anything left
// mounted in it is found by CheckLeaks.
func workDir(t testing.TB) (string, string) {
	t.Helper()
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	dir := filepath.Join(t.TempDir(), prefix+"work")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, prefix
}

// sandbox makes a run directory with a couple of files.
func sandbox(t testing.TB, path string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(path, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"stdout", "stderr", "sub/data"} {
		if err := os.WriteFile(filepath.Join(path, f), []byte("some output\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func newGC(t testing.TB, cfg Config) *GC {
	t.Helper()
	if cfg.Logger == nil && os.Getenv("CORRAL_TEST_LOG") == "" {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// waitFor polls cond; the limit only bounds a failing test, it asserts no
// timing.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testsupport.Eventually(t, what, 30*time.Second, cond)
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{WorkDir: "relative"},
		{WorkDir: "/w", DiskHeadroom: 1.5},
		{WorkDir: "/w", InodeThreshold: -0.1},
		{WorkDir: "/w", MaxSandboxes: -1},
		{WorkDir: "/w", Parallelism: -2},
		{WorkDir: "/w", Delay: -time.Second},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func TestMaxAge(t *testing.T) {
	week := 7 * 24 * time.Hour
	for _, c := range []struct {
		headroom, usage float64
		want            time.Duration
	}{
		{0.1, 0, week * 9 / 10},
		{0.1, 0.5, week * 4 / 10},
		{0.1, 0.9, 0},
		{0.1, 0.99, 0},
		{0, 0.25, week * 3 / 4},
	} {
		got := MaxAge(week, c.headroom, c.usage)
		if d := got - c.want; d > time.Second || d < -time.Second {
			t.Errorf("MaxAge(week, %v, %v) = %v, want %v", c.headroom, c.usage, got, c.want)
		}
	}
}

// A headroom given as 0 (DiskHeadroomSet) stays 0 rather than taking the
// default, and MaxAllowedAge follows the last disk reading: gc_delay
// before the first, Mesos' rule after it.
func TestZeroHeadroomAndMaxAllowedAge(t *testing.T) {
	dir, _ := workDir(t)
	fu := &fakeUsage{u: Usage{Blocks: 0.25}}
	for _, c := range []struct {
		set  bool
		want time.Duration
	}{
		{false, 100 * time.Hour * 65 / 100}, // the default 0.1
		{true, 100 * time.Hour * 75 / 100},  // none
	} {
		g := newGC(t, Config{WorkDir: dir, Delay: 100 * time.Hour, DiskHeadroomSet: c.set, Usage: fu, DiskWatchInterval: -1})
		if got := g.MaxAllowedAge(); got != 100*time.Hour {
			t.Errorf("before any reading MaxAllowedAge = %v, want gc_delay", got)
		}
		if err := g.CheckDisk(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := g.MaxAllowedAge(); got-c.want > time.Second || c.want-got > time.Second {
			t.Errorf("DiskHeadroomSet %v: MaxAllowedAge at 0.25 used = %v, want %v", c.set, got, c.want)
		}
	}
}

func TestScheduleUnschedule(t *testing.T) {
	dir, _ := workDir(t)
	g := newGC(t, Config{WorkDir: dir, DiskWatchInterval: -1})
	a := sandbox(t, filepath.Join(dir, "a"))
	b := sandbox(t, filepath.Join(dir, "b"))

	for _, bad := range []string{"relative/x", "/etc", dir, filepath.Join(dir, "..", "x")} {
		if err := g.Schedule(bad, 0); err == nil {
			t.Errorf("Schedule(%q) accepted a path outside the work_dir", bad)
		}
	}
	if err := g.Schedule(a, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := g.Schedule(b, 0); err != nil {
		t.Fatal(err)
	}
	if _, ok := g.Scheduled(a); !ok {
		t.Fatal("a not scheduled")
	}
	if !g.Unschedule(a) {
		t.Error("Unschedule(a) = false for a scheduled path")
	}
	if g.Unschedule(a) {
		t.Error("Unschedule(a) = true twice")
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	waitFor(t, "b to be removed", func() bool { return !exists(b) })
	if !exists(a) {
		t.Error("the unscheduled sandbox was removed")
	}
	waitFor(t, "the metrics", func() bool { return g.Metrics().Succeeded == 1 })
	m := g.Metrics()
	if m.Pending != 0 || m.Failed != 0 || m.BytesFreed == 0 {
		t.Errorf("metrics after one removal: %+v", m)
	}
}

// Mesos' rule on an injected reading: with gc_delay 100h and headroom 0.1,
// usage 0.5 keeps sandboxes younger than 40h; usage 0.9 keeps none.
func TestPruneUnderDiskUsage(t *testing.T) {
	dir, _ := workDir(t)
	clk := newClock()
	fu := &fakeUsage{u: Usage{Blocks: 0.2}}
	g := newGC(t, Config{WorkDir: dir, Delay: 100 * time.Hour, DiskHeadroom: 0.1, Usage: fu, Now: clk.Now})
	ages := map[string]time.Duration{"r90": 90 * time.Hour, "r50": 50 * time.Hour, "r39": 39 * time.Hour, "r10": 10 * time.Hour}
	var entries []Entry
	for name, age := range ages {
		entries = append(entries, Entry{Path: sandbox(t, filepath.Join(dir, name)), Ended: clk.Now().Add(-age)})
	}
	if err := g.Recover(entries); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// 0.2 used: max_age 70h.
	if err := g.CheckDisk(ctx); err != nil {
		t.Fatal(err)
	}
	wantGone(t, dir, []string{"r90"}, []string{"r50", "r39", "r10"})
	fu.set(Usage{Blocks: 0.5})
	if err := g.CheckDisk(ctx); err != nil {
		t.Fatal(err)
	}
	wantGone(t, dir, []string{"r50"}, []string{"r39", "r10"})
	fu.set(Usage{Blocks: 0.9})
	if err := g.CheckDisk(ctx); err != nil {
		t.Fatal(err)
	}
	wantGone(t, dir, []string{"r39", "r10"}, nil)
	if m := g.Metrics(); m.Succeeded != 4 || m.Pending != 0 || m.LastPrune.IsZero() || m.LastUsage.Blocks != 0.9 {
		t.Errorf("metrics: %+v", m)
	}
}

func wantGone(t *testing.T, dir string, gone, kept []string) {
	t.Helper()
	for _, n := range gone {
		if exists(filepath.Join(dir, n)) {
			t.Errorf("%s still there", n)
		}
	}
	for _, n := range kept {
		if !exists(filepath.Join(dir, n)) {
			t.Errorf("%s removed too early", n)
		}
	}
}

// Prune(maxAge) is Mesos' prune(gc_delay - max_age) on what is scheduled.
func TestPrune(t *testing.T) {
	dir, _ := workDir(t)
	clk := newClock()
	g := newGC(t, Config{WorkDir: dir, Delay: 10 * time.Hour, Now: clk.Now})
	old := sandbox(t, filepath.Join(dir, "old"))
	young := sandbox(t, filepath.Join(dir, "young"))
	if err := g.Schedule(old, 10*time.Hour); err != nil {
		t.Fatal(err)
	}
	clk.Add(6 * time.Hour)
	if err := g.Schedule(young, 10*time.Hour); err != nil {
		t.Fatal(err)
	}
	if n := g.Prune(7 * time.Hour); n != 0 {
		t.Errorf("Prune(7h) removed %d, want 0 (oldest is 6h)", n)
	}
	if n := g.Prune(5 * time.Hour); n != 1 || exists(old) || !exists(young) {
		t.Errorf("Prune(5h) removed %d; old there: %v, young there: %v", n, exists(old), exists(young))
	}
	if n := g.Prune(0); n != 1 || exists(young) {
		t.Errorf("Prune(0) removed %d", n)
	}
}

// A run directory is scheduled with its executor and framework directories
// (in work and meta trees, as the agent does); removing a parent takes the
// children's entries with it, and a new run takes the parents back.
func TestParentsAndChildren(t *testing.T) {
	dir, _ := workDir(t)
	g := newGC(t, Config{WorkDir: dir})
	fw := filepath.Join(dir, "slaves/S/frameworks/F")
	ex := filepath.Join(fw, "executors/E")
	run1 := sandbox(t, filepath.Join(ex, "runs/R1"))
	for _, p := range []string{run1, ex, fw} {
		if err := g.Schedule(p, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	// A new run of the same executor.
	if !g.Unschedule(ex) || !g.Unschedule(fw) {
		t.Fatal("the parents were not scheduled")
	}
	run2 := sandbox(t, filepath.Join(ex, "runs/R2"))
	if n := g.Prune(0); n != 1 || exists(run1) || !exists(run2) {
		t.Fatalf("Prune(0) removed %d; run1 there: %v, run2 there: %v", n, exists(run1), exists(run2))
	}
	// Now everything ends: the framework directory goes with what is below.
	for _, p := range []string{run2, ex, fw} {
		if err := g.Schedule(p, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	g.Prune(0)
	if exists(fw) || g.Metrics().Pending != 0 {
		t.Errorf("framework dir there: %v; pending %d", exists(fw), g.Metrics().Pending)
	}
}

func TestRemoveSymlinksNotFollowed(t *testing.T) {
	dir, _ := workDir(t)
	outside := t.TempDir()
	precious := filepath.Join(outside, "precious")
	if err := os.WriteFile(precious, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	sb := sandbox(t, filepath.Join(dir, "run"))
	for name, target := range map[string]string{"to-dir": outside, "to-file": precious, "to-root": "/", "dangling": "/nonexistent"} {
		if err := os.Symlink(target, filepath.Join(sb, "sub", name)); err != nil {
			t.Fatal(err)
		}
	}
	// A scheduled path that is itself a symlink is removed as a link.
	link := filepath.Join(dir, "latest")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	g := newGC(t, Config{WorkDir: dir})
	for _, p := range []string{sb, link} {
		if err := g.Schedule(p, 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := g.Prune(0); n != 2 {
		t.Fatalf("Prune(0) removed %d, want 2: %+v", n, g.Metrics())
	}
	if exists(sb) || exists(link) {
		t.Error("sandbox or link still there")
	}
	if b, err := os.ReadFile(precious); err != nil || string(b) != "keep" {
		t.Errorf("the symlinks' target was touched: %q, %v", b, err)
	}
}

func bindMount(t *testing.T, src, dst string) {
	t.Helper()
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount %s on %s: %v", src, dst, err)
	}
	// In case the test fails before the collector detaches it.
	t.Cleanup(func() {
		for unix.Unmount(dst, unix.MNT_DETACH) == nil {
		}
	})
}

func mountedAt(path string) bool {
	mps, _ := mountPoints()
	for _, mp := range mps {
		if mp == path {
			return true
		}
	}
	return false
}

// A sandbox with a bind mount left inside (a persistent volume, a host
// path) is removed with the mount detached first; the mount's source, on
// the same file system, survives with its contents.
func TestRemoveWithBindMountInside(t *testing.T) {
	testsupport.RequireRoot(t)
	dir, prefix := workDir(t)
	src := filepath.Join(t.TempDir(), prefix+"volume")
	if err := os.MkdirAll(filepath.Join(src, "deep"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "deep", "data"), []byte("volume data"), 0o644); err != nil {
		t.Fatal(err)
	}
	srcFile := filepath.Join(t.TempDir(), prefix+"file")
	if err := os.WriteFile(srcFile, []byte("host file"), 0o644); err != nil {
		t.Fatal(err)
	}
	sb := sandbox(t, filepath.Join(dir, "run"))
	mnt := filepath.Join(sb, "sub", "volume")
	nested := filepath.Join(mnt, "deep")
	fileMnt := filepath.Join(sb, "hostfile")
	for _, d := range []string{mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(fileMnt, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	bindMount(t, src, mnt)
	bindMount(t, src, nested) // a mount on a mount
	bindMount(t, srcFile, fileMnt)

	g := newGC(t, Config{WorkDir: dir})
	if err := g.Schedule(sb, 0); err != nil {
		t.Fatal(err)
	}
	if n := g.Prune(0); n != 1 {
		t.Fatalf("Prune(0) removed %d: %+v", n, g.Metrics())
	}
	if exists(sb) {
		t.Error("sandbox still there")
	}
	for _, p := range []string{mnt, nested, fileMnt} {
		if mountedAt(p) {
			t.Errorf("%s still mounted", p)
		}
	}
	if b, err := os.ReadFile(filepath.Join(src, "deep", "data")); err != nil || string(b) != "volume data" {
		t.Errorf("the bind mount's source lost its contents: %q, %v", b, err)
	}
	if b, err := os.ReadFile(srcFile); err != nil || string(b) != "host file" {
		t.Errorf("the bind-mounted file lost its contents: %q, %v", b, err)
	}
	if m := g.Metrics(); m.Unmounted != 3 {
		t.Errorf("Unmounted = %d, want 3", m.Unmounted)
	}
}

// Should a mount survive the detaching (here: removal called without it),
// the removal refuses to cross into it and fails; the source is untouched.
func TestRemoveTreeRefusesToCrossMounts(t *testing.T) {
	testsupport.RequireRoot(t)
	dir, prefix := workDir(t)
	src := filepath.Join(t.TempDir(), prefix+"volume")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "data"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	sb := sandbox(t, filepath.Join(dir, "run"))
	mnt := filepath.Join(sb, "volume")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	bindMount(t, src, mnt)
	if _, err := removeTree(sb); err == nil || !strings.Contains(err.Error(), "mount") {
		t.Fatalf("removeTree with a mount inside: %v", err)
	}
	if !exists(filepath.Join(src, "data")) {
		t.Fatal("removal crossed into the mount")
	}
	if exists(filepath.Join(sb, "stdout")) {
		t.Error("the rest of the sandbox should have been removed")
	}
	if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
}

// fsIocSetflags and immutable are FS_IOC_SETFLAGS and FS_IMMUTABLE_FL, to
// make a file that even root cannot unlink.
const (
	fsIocGetflags = 0x80086601
	fsIocSetflags = 0x40086602
	immutable     = 0x10
)

func setImmutable(t *testing.T, path string, on bool) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var flags int32
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocGetflags, uintptr(unsafe.Pointer(&flags))); e != 0 {
		t.Skipf("FS_IOC_GETFLAGS on %s: %v", path, e)
	}
	if on {
		flags |= immutable
	} else {
		flags &^= immutable
	}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocSetflags, uintptr(unsafe.Pointer(&flags))); e != 0 {
		t.Skipf("FS_IOC_SETFLAGS on %s: %v", path, e)
	}
}

// A removal that fails is counted, kept and retried after a back-off; it
// does not stop the other removals.
func TestFailedRemovalRetried(t *testing.T) {
	testsupport.RequireRoot(t)
	dir, _ := workDir(t)
	clk := newClock()
	g := newGC(t, Config{WorkDir: dir, RetryInterval: time.Minute, Now: clk.Now})
	stuck := sandbox(t, filepath.Join(dir, "stuck"))
	fine := sandbox(t, filepath.Join(dir, "fine"))
	setImmutable(t, filepath.Join(stuck, "sub", "data"), true)
	t.Cleanup(func() {
		if exists(filepath.Join(stuck, "sub", "data")) {
			setImmutable(t, filepath.Join(stuck, "sub", "data"), false)
		}
	})
	for _, p := range []string{stuck, fine} {
		if err := g.Schedule(p, 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := g.Prune(0); n != 1 {
		t.Fatalf("Prune(0) removed %d, want 1", n)
	}
	m := g.Metrics()
	if m.Failed != 1 || m.Succeeded != 1 || m.Pending != 1 || m.Retrying != 1 {
		t.Fatalf("metrics after a failure: %+v", m)
	}
	if exists(fine) || !exists(stuck) {
		t.Fatal("wrong sandbox removed")
	}
	// Held back until the retry time.
	if n := g.Prune(0); n != 0 {
		t.Errorf("retried before the back-off: %d", n)
	}
	clk.Add(2 * time.Minute)
	if n := g.Prune(0); n != 0 {
		t.Errorf("removed an immutable file: %d", n)
	}
	if m := g.Metrics(); m.Failed != 2 {
		t.Errorf("Failed = %d after the second attempt", m.Failed)
	}
	setImmutable(t, filepath.Join(stuck, "sub", "data"), false)
	clk.Add(time.Minute) // the back-off doubled to 2 min
	if n := g.Prune(0); n != 0 {
		t.Errorf("retried before the doubled back-off")
	}
	clk.Add(time.Minute)
	if n := g.Prune(0); n != 1 || exists(stuck) {
		t.Errorf("retry removed %d; stuck there: %v", n, exists(stuck))
	}
	if m := g.Metrics(); m.Pending != 0 || m.Retrying != 0 || m.Succeeded != 2 {
		t.Errorf("metrics after the retry: %+v", m)
	}
}

// No more than Parallelism removals run at once, across concurrent prunes.
func TestParallelismCap(t *testing.T) {
	dir, _ := workDir(t)
	const par, n = 3, 12
	g := newGC(t, Config{WorkDir: dir, Parallelism: par})
	var active, peak, started atomic.Int32
	release := make(chan struct{})
	g.beforeRemove = func(string) {
		a := active.Add(1)
		started.Add(1)
		for {
			p := peak.Load()
			if a <= p || peak.CompareAndSwap(p, a) {
				break
			}
		}
		<-release
		active.Add(-1)
	}
	for i := 0; i < n; i++ {
		if err := g.Schedule(sandbox(t, filepath.Join(dir, fmt.Sprint("r", i))), 0); err != nil {
			t.Fatal(err)
		}
	}
	// Two prunes at once: they claim disjoint paths and share the cap.
	var wg sync.WaitGroup
	var removed atomic.Int32
	for k := 0; k < 2; k++ {
		wg.Add(1)
		go func() { defer wg.Done(); removed.Add(int32(g.Prune(0))) }()
	}
	waitFor(t, "the cap to be reached", func() bool { return active.Load() == par })
	for i := 0; i < n; i++ {
		release <- struct{}{}
	}
	wg.Wait()
	if peak.Load() != par {
		t.Errorf("peak parallel removals %d, want %d", peak.Load(), par)
	}
	if removed.Load() != n || started.Load() != n {
		t.Errorf("removed %d, started %d, want %d", removed.Load(), started.Load(), n)
	}
}

// While inode usage is over the threshold the oldest go first, measuring
// again after each batch; it stops once under.
func TestInodeThreshold(t *testing.T) {
	dir, _ := workDir(t)
	clk := newClock()
	const n = 10
	// Each sandbox left is 10% of the inodes.
	fu := &fakeUsage{}
	fu.fn = func() Usage {
		left := 0
		for i := 0; i < n; i++ {
			if exists(filepath.Join(dir, fmt.Sprint("r", i))) {
				left++
			}
		}
		return Usage{Inodes: float64(left) / n}
	}
	g := newGC(t, Config{WorkDir: dir, Delay: time.Hour, Parallelism: 2, InodeThreshold: 0.45, Usage: fu, Now: clk.Now})
	for i := 0; i < n; i++ {
		if err := g.Schedule(sandbox(t, filepath.Join(dir, fmt.Sprint("r", i))), time.Hour); err != nil {
			t.Fatal(err)
		}
		clk.Add(time.Second)
	}
	if err := g.CheckDisk(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Batches of 2: 100% → 80 → 60 → 40%: the six oldest are gone.
	for i := 0; i < n; i++ {
		if got, want := exists(filepath.Join(dir, fmt.Sprint("r", i))), i >= 6; got != want {
			t.Errorf("r%d there: %v, want %v", i, got, want)
		}
	}
}

// Over --gc_max_sandboxes the oldest sandboxes go; the executor and
// framework directories scheduled above them do not count as sandboxes.
func TestMaxSandboxes(t *testing.T) {
	dir, _ := workDir(t)
	clk := newClock()
	g := newGC(t, Config{WorkDir: dir, Delay: time.Hour, MaxSandboxes: 4, Usage: &fakeUsage{}, Now: clk.Now})
	var runs []string
	for e := 0; e < 3; e++ {
		ex := filepath.Join(dir, "fw", fmt.Sprint("ex", e))
		for r := 0; r < 3; r++ {
			run := sandbox(t, filepath.Join(ex, "runs", fmt.Sprint("r", r)))
			runs = append(runs, run)
			if err := g.Schedule(run, time.Hour); err != nil {
				t.Fatal(err)
			}
			clk.Add(time.Second)
		}
		if err := g.Schedule(ex, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.CheckDisk(context.Background()); err != nil {
		t.Fatal(err)
	}
	// 9 runs, 4 kept: the 5 oldest runs went. ex0 was then empty of
	// scheduled runs and counted as a sandbox itself, oldest of what was
	// left, so it went too, taking nothing else.
	for i, run := range runs {
		if got, want := exists(run), i >= 5; got != want {
			t.Errorf("%s there: %v, want %v", run, got, want)
		}
	}
	kept := 0
	for _, run := range runs {
		if exists(run) {
			kept++
		}
	}
	if kept != 4 {
		t.Errorf("%d runs kept, want 4", kept)
	}
}

// After a restart the agent hands over what it found on disk with the
// time each run ended: those past gc_delay go at once, the others at
// end + gc_delay, not a full gc_delay after the restart.
func TestRecover(t *testing.T) {
	dir, _ := workDir(t)
	old := sandbox(t, filepath.Join(dir, "old"))
	recent := sandbox(t, filepath.Join(dir, "recent"))
	now := time.Now()
	if err := os.Chtimes(old, now, now.Add(-3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(recent, now, now.Add(-10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	g := newGC(t, Config{WorkDir: dir, Delay: time.Hour, DiskWatchInterval: -1})
	var entries []Entry
	for _, p := range []string{old, recent} {
		ended, err := Ended(p)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, Entry{Path: p, Ended: ended})
	}
	if err := g.Recover(append(entries, Entry{Path: "/etc"})); err == nil {
		t.Error("Recover accepted a path outside the work_dir")
	}
	at, ok := g.Scheduled(recent)
	if want := now.Add(50 * time.Minute); !ok || at.Sub(want) > time.Second || want.Sub(at) > time.Second {
		t.Errorf("recent due at %v, want %v", at, want)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "the expired sandbox to go", func() bool { return !exists(old) })
	if !exists(recent) {
		t.Error("the recent sandbox went too")
	}
}

// Unschedule of a path being removed waits for the removal, so the agent
// never makes a new run directory into a tree that is being deleted.
func TestUnscheduleWaitsForRemoval(t *testing.T) {
	dir, _ := workDir(t)
	g := newGC(t, Config{WorkDir: dir})
	fw := sandbox(t, filepath.Join(dir, "fw"))
	entered := make(chan struct{})
	release := make(chan struct{})
	g.beforeRemove = func(string) { close(entered); <-release }
	if err := g.Schedule(fw, 0); err != nil {
		t.Fatal(err)
	}
	go g.Prune(0)
	<-entered
	res := make(chan bool)
	go func() { res <- g.Unschedule(filepath.Join(fw, "executors", "e")) }()
	select {
	case <-res:
		t.Fatal("Unschedule returned while a parent was being removed")
	default:
	}
	close(release)
	if <-res {
		t.Error("Unschedule reported an unscheduled path as scheduled")
	}
	if exists(fw) {
		t.Error("the removal did not finish")
	}
}

// The real thing on a small loop-mounted ext4 with few inodes: statfs'
// reading drives the inode threshold.
func TestInodeThresholdRealFS(t *testing.T) {
	testsupport.RequireRoot(t)
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not installed (e2fsprogs)")
	}
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	tmp := t.TempDir()
	img := filepath.Join(tmp, "fs.img")
	mnt := filepath.Join(tmp, prefix+"mnt")
	run(t, "truncate", "-s", "32M", img)
	run(t, "mkfs.ext4", "-q", "-F", "-N", "512", img)
	dev := strings.TrimSpace(run(t, "losetup", "--find", "--show", img))
	t.Cleanup(func() { _, _ = exec.Command("losetup", "-d", dev).CombinedOutput() })
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(dev, mnt, "ext4", 0, ""); err != nil {
		t.Fatalf("mount %s: %v", dev, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("umount %s: %v", mnt, err)
		}
	})
	work := filepath.Join(mnt, "work")
	g := newGC(t, Config{WorkDir: work, InodeThreshold: 0.5, Parallelism: 4})
	for i := 0; i < 1000; i++ {
		u, err := StatfsUsage(mnt)
		if err != nil {
			t.Fatal(err)
		}
		if u.Inodes > 0.8 {
			break
		}
		// 4 inodes a sandbox, scheduled as the agent does (gc_delay).
		if err := g.Schedule(sandbox(t, filepath.Join(work, fmt.Sprint("r", i))), g.Delay()); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.CheckDisk(context.Background()); err != nil {
		t.Fatal(err)
	}
	u, _ := StatfsUsage(mnt)
	if u.Inodes > 0.5 {
		t.Errorf("inode usage %.2f after the check, want <= 0.5", u.Inodes)
	}
	if m := g.Metrics(); m.Succeeded == 0 || m.Pending == 0 {
		t.Errorf("removed everything or nothing: %+v", m)
	}
	if exists(filepath.Join(work, "r0")) {
		t.Error("the oldest sandbox was kept")
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// The loop retries a failed removal by itself once its back-off ends.
func TestRunRetriesFailedRemoval(t *testing.T) {
	testsupport.RequireRoot(t)
	dir, _ := workDir(t)
	g := newGC(t, Config{WorkDir: dir, RetryInterval: 20 * time.Millisecond, DiskWatchInterval: -1})
	stuck := sandbox(t, filepath.Join(dir, "stuck"))
	file := filepath.Join(stuck, "sub", "data")
	setImmutable(t, file, true)
	t.Cleanup(func() {
		if exists(file) {
			setImmutable(t, file, false)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if err := g.Schedule(stuck, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a failed attempt", func() bool { return g.Metrics().Failed > 0 })
	setImmutable(t, file, false)
	waitFor(t, "the retry to remove it", func() bool { return g.Metrics().Succeeded == 1 })
	if m := g.Metrics(); exists(stuck) || m.Pending != 0 {
		t.Errorf("still there: %v; metrics: %+v", exists(stuck), m)
	}
}
