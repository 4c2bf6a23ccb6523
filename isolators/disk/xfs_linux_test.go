package disk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral/corral/container"
	"github.com/corral/corral/internal/testsupport"
)

// quotaKinds are the file systems disk/xfs supports.
var quotaKinds = []string{"xfs", "ext4"}

type xfsEnv struct {
	x      *XFS
	work   string
	prefix string
	set    func(*Settings)
}

// newXFSEnv mounts a fresh kind file system with project quotas and builds
// disk/xfs on it (enforcing, watching every 20ms, the default range, unless
// set says otherwise).
func newXFSEnv(t *testing.T, kind string, set func(*Settings)) *xfsEnv {
	t.Helper()
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	mnt := loopFS(t, kind, prefix, true)
	work := filepath.Join(mnt, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	env := &xfsEnv{work: work, prefix: prefix, set: func(s *Settings) {
		s.Enforce, s.WatchInterval = true, 20*time.Millisecond
		if set != nil {
			set(s)
		}
	}}
	env.x = env.build(t)
	return env
}

// build makes an isolator on the env's file system (a second one plays
// the agent after a restart).
func (e *xfsEnv) build(t *testing.T) *XFS {
	t.Helper()
	x, err := newXFS(options(e.work, e.set))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = x.Close() })
	return x
}

func (e *xfsEnv) sandbox(t *testing.T, name string) string {
	t.Helper()
	sb := filepath.Join(e.work, name)
	if err := os.MkdirAll(sb, 0o755); err != nil {
		t.Fatal(err)
	}
	return sb
}

func forKinds(t *testing.T, f func(t *testing.T, kind string)) {
	for _, kind := range quotaKinds {
		t.Run(kind, func(t *testing.T) { f(t, kind) })
	}
}

// A write past the disk resource fails with EDQUOT; usage is read from the
// quota and matches what was written; the limit is the project's.
func TestProjectQuotaEnforced(t *testing.T) {
	forKinds(t, func(t *testing.T, kind string) {
		e := newXFSEnv(t, kind, nil)
		sb := e.sandbox(t, "run1")
		id := e.prefix + "c1"
		prepare(t, e.x, id, sb, 4<<20)
		proj, ok := e.x.project(id)
		if !ok {
			t.Fatal("no project recorded")
		}
		if got, err := projectID(sb); err != nil || got != proj || proj != 5000 {
			t.Fatalf("sandbox project %d (%v), isolator says %d, want 5000", got, err, proj)
		}
		// New files and directories inherit the project.
		if err := os.MkdirAll(filepath.Join(sb, "a", "b"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := writeFile(filepath.Join(sb, "a", "b", "one"), 1<<20); err != nil {
			t.Fatalf("writing 1 MiB under a 4 MiB limit: %v", err)
		}
		if got, _ := projectID(filepath.Join(sb, "a", "b")); got != proj {
			t.Errorf("subdirectory project %d, want %d", got, proj)
		}
		u := usage(t, e.x, id)
		if !u.Set["disk_used_bytes"] || u.DiskUsedBytes < 1<<20 || u.DiskUsedBytes > 1<<20+128<<10 {
			t.Errorf("usage %d bytes after writing 1 MiB", u.DiskUsedBytes)
		}
		if u.DiskLimitBytes != 4<<20 || !u.Set["disk_limit_bytes"] {
			t.Errorf("limit %d", u.DiskLimitBytes)
		}
		err := writeAsTask(filepath.Join(sb, "two"), 8<<20)
		if !errors.Is(err, overQuota(kind)) {
			t.Fatalf("writing past the limit: %v, want %v", err, overQuota(kind))
		}
		if u := usage(t, e.x, id); u.DiskUsedBytes > 4<<20 {
			t.Errorf("usage %d past the hard limit", u.DiskUsedBytes)
		}
		// Update raises the limit in place.
		if err := e.x.Update(context.Background(), id, container.Resources{DiskBytes: 64 << 20}); err != nil {
			t.Fatal(err)
		}
		if err := writeAsTask(filepath.Join(sb, "three"), 8<<20); err != nil {
			t.Errorf("writing after the limit was raised: %v", err)
		}
	})
}

// IDs come back after Cleanup (and the files of the ended container no
// longer count against the ID); after a restart Recover finds each
// container's ID on its sandbox.
func TestProjectIDsReusedAndRecovered(t *testing.T) {
	forKinds(t, func(t *testing.T, kind string) {
		e := newXFSEnv(t, kind, nil)
		ctx := context.Background()
		sb1 := e.sandbox(t, "run1")
		prepare(t, e.x, e.prefix+"c1", sb1, 8<<20)
		p1, _ := e.x.project(e.prefix + "c1")
		if err := writeFile(filepath.Join(sb1, "out"), 1<<20); err != nil {
			t.Fatal(err)
		}
		sb2 := e.sandbox(t, "run2")
		prepare(t, e.x, e.prefix+"c2", sb2, 8<<20)
		p2, _ := e.x.project(e.prefix + "c2")
		if p1 == p2 {
			t.Fatalf("two containers share project %d", p1)
		}
		if err := e.x.Cleanup(ctx, e.prefix+"c1"); err != nil {
			t.Fatal(err)
		}
		// The files go back to project 0 in the background.
		e.x.waitDrained()
		if got, _ := projectID(filepath.Join(sb1, "out")); got != 0 {
			t.Errorf("a cleaned-up sandbox's file is still in project %d", got)
		}
		if err := e.x.Cleanup(ctx, e.prefix+"c1"); err != nil {
			t.Errorf("second Cleanup: %v", err)
		}
		sb3 := e.sandbox(t, "run3")
		prepare(t, e.x, e.prefix+"c3", sb3, 8<<20)
		if p3, _ := e.x.project(e.prefix + "c3"); p3 != p1 {
			t.Errorf("new container got project %d, want the released %d", p3, p1)
		}
		if u := usage(t, e.x, e.prefix+"c3"); u.DiskUsedBytes > 64<<10 {
			t.Errorf("the reused project starts with %d bytes of the old sandbox", u.DiskUsedBytes)
		}
		if err := writeFile(filepath.Join(sb3, "out"), 2<<20); err != nil {
			t.Fatal(err)
		}

		// The agent restarts: a new isolator, told of c2 and c3.
		_ = e.x.Close()
		x2 := e.build(t)
		known := []*container.Config{
			{ID: e.prefix + "c2", Sandbox: sb2, Resources: container.Resources{DiskBytes: 8 << 20}},
			{ID: e.prefix + "c3", Sandbox: sb3, Resources: container.Resources{DiskBytes: 8 << 20}},
		}
		if err := x2.Recover(ctx, known); err != nil {
			t.Fatal(err)
		}
		for _, c := range known {
			t.Cleanup(func() { _ = x2.Cleanup(ctx, c.ID) })
		}
		if p, ok := x2.project(e.prefix + "c2"); !ok || p != p2 {
			t.Errorf("recovered c2 in project %d (%v), want %d", p, ok, p2)
		}
		if p, ok := x2.project(e.prefix + "c3"); !ok || p != p1 {
			t.Errorf("recovered c3 in project %d (%v), want %d", p, ok, p1)
		}
		if u := usage(t, x2, e.prefix+"c3"); u.DiskUsedBytes < 2<<20 {
			t.Errorf("recovered usage %d, want >= 2 MiB", u.DiskUsedBytes)
		}
		// The recovered limit holds.
		if err := writeAsTask(filepath.Join(sb3, "more"), 16<<20); !errors.Is(err, overQuota(kind)) {
			t.Errorf("writing past a recovered limit: %v, want %v", err, overQuota(kind))
		}
		sb4 := e.sandbox(t, "run4")
		prepare(t, x2, e.prefix+"c4", sb4, 8<<20)
		if p4, _ := x2.project(e.prefix + "c4"); p4 == p1 || p4 == p2 {
			t.Errorf("a new container got recovered project %d", p4)
		}
	})
}

// Bad input gets clear errors: too small a disk for what the sandbox
// already holds, an exhausted range, a project left on files on disk is
// not handed out.
func TestProjectQuotaBadInput(t *testing.T) {
	forKinds(t, func(t *testing.T, kind string) {
		e := newXFSEnv(t, kind, func(s *Settings) { s.ProjectRange = "[7000-7002]" })
		ctx := context.Background()

		full := e.sandbox(t, "full")
		if err := writeFile(filepath.Join(full, "fetched"), 3<<20); err != nil {
			t.Fatal(err)
		}
		_, err := e.x.Prepare(ctx, &container.Config{ID: e.prefix + "full", Sandbox: full, Resources: container.Resources{DiskBytes: 1 << 20}})
		if err == nil || !strings.Contains(err.Error(), "already holds") || !strings.Contains(err.Error(), "1MB") {
			t.Fatalf("Prepare with a disk smaller than the sandbox: %v", err)
		}
		if got, _ := projectID(filepath.Join(full, "fetched")); got != 0 {
			t.Errorf("a refused sandbox keeps project %d", got)
		}

		// Files left in project 7000 (say, by an agent killed before its
		// cleanup) keep it out of use.
		stale := e.sandbox(t, "stale")
		if err := writeFile(filepath.Join(stale, "f"), 64<<10); err != nil {
			t.Fatal(err)
		}
		if err := setProjectTree(stale, 7000); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			prepare(t, e.x, fmt.Sprint(e.prefix, "c", i), e.sandbox(t, fmt.Sprint("run", i)), 1<<20)
		}
		if p, _ := e.x.project(e.prefix + "c0"); p != 7001 {
			t.Errorf("first container got %d, want 7001 (7000 is on files)", p)
		}
		_, err = e.x.Prepare(ctx, &container.Config{ID: e.prefix + "c2", Sandbox: e.sandbox(t, "run2"), Resources: container.Resources{DiskBytes: 1 << 20}})
		if !errors.Is(err, ErrNoProjectID) || !strings.Contains(err.Error(), "[7000-7002]") || !strings.Contains(err.Error(), "1 by files") {
			t.Errorf("Prepare with the range exhausted: %v", err)
		}
		// Once the stale files go, 7000 is free. XFS frees unlinked inodes
		// (and their quota) in the background; syncfs flushes that.
		if err := os.RemoveAll(stale); err != nil {
			t.Fatal(err)
		}
		syncfs(t, e.work)
		q, err := e.x.fss.get(e.work)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the removed files' quota to be released", func() bool {
			u, err := q.get(7000)
			return err == nil && u.Inodes == 0
		})
		prepare(t, e.x, e.prefix+"c3", e.sandbox(t, "run3"), 1<<20)
		if p, _ := e.x.project(e.prefix + "c3"); p != 7000 {
			t.Errorf("got %d after the stale files went, want 7000", p)
		}
	})
}

// The kill mode: the disk resource is a soft limit; a container over it is
// reported (and the agent destroys it) while its writes still succeed.
func TestProjectQuotaKillMode(t *testing.T) {
	forKinds(t, func(t *testing.T, kind string) {
		e := newXFSEnv(t, kind, func(s *Settings) { s.Kill = true })
		sb := e.sandbox(t, "run")
		id := e.prefix + "c"
		prepare(t, e.x, id, sb, 2<<20)
		lim := newLimitations()
		if err := e.x.Watch(id, lim.report); err != nil {
			t.Fatal(err)
		}
		if err := writeAsTask(filepath.Join(sb, "f"), 3<<20); err != nil {
			t.Fatalf("write over the soft limit failed: %v", err)
		}
		select {
		case <-lim.ch:
		case <-time.After(60 * time.Second):
			t.Fatal("no limitation reported over the soft limit")
		}
		l := lim.ls[0]
		if l.Reason != ReasonDisk || !strings.Contains(l.Message, "2MB") {
			t.Errorf("limitation %+v", l)
		}
		// The hard limit is the backstop.
		if err := writeAsTask(filepath.Join(sb, "g"), 64<<20); !errors.Is(err, overQuota(kind)) {
			t.Errorf("writing far past the soft limit: %v, want %v", err, overQuota(kind))
		}
	})
}

// Without enforcement the projects only account.
func TestProjectQuotaAccountingOnly(t *testing.T) {
	forKinds(t, func(t *testing.T, kind string) {
		e := newXFSEnv(t, kind, func(s *Settings) { s.Enforce = false })
		sb := e.sandbox(t, "run")
		id := e.prefix + "c"
		prepare(t, e.x, id, sb, 1<<20)
		if err := writeAsTask(filepath.Join(sb, "f"), 3<<20); err != nil {
			t.Fatalf("write without enforcement: %v", err)
		}
		if u := usage(t, e.x, id); u.DiskUsedBytes < 3<<20 {
			t.Errorf("usage %d", u.DiskUsedBytes)
		}
	})
}

// Symlinks in the sandbox are not followed when the project is set, and a
// file system mounted below the sandbox is left alone.
func TestProjectTreeStaysInSandbox(t *testing.T) {
	forKinds(t, func(t *testing.T, kind string) {
		e := newXFSEnv(t, kind, nil)
		outside := e.sandbox(t, "outside")
		if err := writeFile(filepath.Join(outside, "precious"), 4096); err != nil {
			t.Fatal(err)
		}
		sb := e.sandbox(t, "run")
		if err := os.Symlink(outside, filepath.Join(sb, "link-dir")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(outside, "precious"), filepath.Join(sb, "link-file")); err != nil {
			t.Fatal(err)
		}
		prepare(t, e.x, e.prefix+"c", sb, 8<<20)
		for _, p := range []string{outside, filepath.Join(outside, "precious")} {
			if got, _ := projectID(p); got != 0 {
				t.Errorf("%s was given project %d through a symlink", p, got)
			}
		}
	})
}

// A work_dir without project quotas is refused at construction, saying
// why; so is a missing work_dir setting.
func TestNoProjectQuotaSupport(t *testing.T) {
	if _, err := newXFS(options("", nil)); err == nil || !strings.Contains(err.Error(), "work_dir") {
		t.Errorf("without a work_dir: %v", err)
	}
	// The host's temporary directory: tmpfs, or a file system mounted
	// without prjquota.
	_, err := newXFS(options(t.TempDir(), nil))
	if err == nil {
		t.Skip("the host's temporary directory has project quotas")
	}
	if !strings.Contains(err.Error(), "project quota") {
		t.Errorf("error does not say project quotas: %v", err)
	}
	t.Logf("as the agent reports it: %v", err)

	for _, kind := range quotaKinds {
		t.Run(kind+"-without-prjquota", func(t *testing.T) {
			prefix := testsupport.Prefix(t)
			testsupport.CheckLeaks(t, prefix)
			mnt := loopFS(t, kind, prefix, false)
			_, err := newXFS(options(mnt, nil))
			if err == nil || !strings.Contains(err.Error(), "project quota") || !strings.Contains(err.Error(), kind) {
				t.Errorf("%s without prjquota: %v", kind, err)
			}
			t.Logf("as the agent reports it: %v", err)
		})
	}
	if _, err := newXFS(options("/", func(s *Settings) { s.ProjectRange = "[0-10]" })); err == nil || !strings.Contains(err.Error(), "--xfs_project_range") {
		t.Errorf("bad range: %v", err)
	}
}

func syncfs(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
}
