package linux_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral/corral/container"
	"github.com/corral/corral/container/containerizer"
	"github.com/corral/corral/internal/testsupport"
	"github.com/corral/corral/launcher/linux"

	_ "github.com/corral/corral/isolators/cgroups"
	_ "github.com/corral/corral/isolators/filesystem"
	_ "github.com/corral/corral/isolators/linux"
	_ "github.com/corral/corral/isolators/namespaces"
)

// mode is a cgroup mode the linux launcher can be tested in on this machine.
type mode struct {
	name      string
	hierarchy string // "" when the mode is absent
	why       string // why it is absent
}

// modes finds where each cgroup mode can be exercised: v1 needs a freezer
// hierarchy; v2 a cgroup2 mount, either /sys/fs/cgroup itself (unified) or
// the hybrid layout's /sys/fs/cgroup/unified (no controllers there, but
// cgroup.kill, cgroup.events and CLONE_INTO_CGROUP work the same).
func modes() []mode {
	v1 := mode{name: "v1", why: "no cgroup v1 freezer hierarchy at /sys/fs/cgroup/freezer (unified-only host); v1 is exercised on hybrid/legacy hosts"}
	if isFS("/sys/fs/cgroup/freezer", unix.CGROUP_SUPER_MAGIC) {
		v1.hierarchy, v1.why = "/sys/fs/cgroup", ""
	}
	v2 := mode{name: "v2", why: "no cgroup2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified; v2 is exercised in the VM tier"}
	for _, p := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		if isFS(p, unix.CGROUP2_SUPER_MAGIC) {
			v2.hierarchy, v2.why = p, ""
			break
		}
	}
	return []mode{v1, v2}
}

func isFS(p string, magic int64) bool {
	var st unix.Statfs_t
	return unix.Statfs(p, &st) == nil && int64(st.Type) == magic
}

// forEachMode runs f as a subtest per cgroup mode, skipping absent ones with
// the reason.
func forEachMode(t *testing.T, f func(t *testing.T, m mode)) {
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			if m.hierarchy == "" {
				t.Skip(m.why)
			}
			f(t, m)
		})
	}
}

func firstMode(t *testing.T) mode {
	for _, m := range modes() {
		if m.hierarchy != "" {
			return m
		}
	}
	t.Skip("no usable cgroup hierarchy")
	return mode{}
}

// newLauncher builds a linux launcher on a cgroups root of the test's own
// (named by prefix, removed at the end), so Recover here never touches
// anyone else's containers.
func newLauncher(t testing.TB, m mode, prefix string) *linux.Launcher {
	t.Helper()
	l, err := linux.New(container.Options{
		CgroupsRoot:      prefix + "root",
		CgroupsHierarchy: m.hierarchy,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.RemoveRoot(); err != nil {
			t.Errorf("removing cgroups root: %v", err)
		}
	})
	return l
}

func newContainerizer(t testing.TB, l container.Launcher, isolation ...string) *containerizer.Containerizer {
	t.Helper()
	var isos []container.Isolator
	// The isolators' cgroups go under the launcher's (test-named) root too.
	o := container.Options{}
	if ll, ok := l.(*linux.Launcher); ok {
		o.CgroupsRoot = ll.CgroupsRoot()
		t.Cleanup(func() { testsupport.RemoveCgroupsRoot(t, o.CgroupsRoot) })
	}
	for _, name := range isolation {
		iso, err := container.NewIsolator(name, o)
		if err != nil {
			t.Fatal(err)
		}
		isos = append(isos, iso)
	}
	c, err := containerizer.New(l, isos, filepath.Join(testsupport.BinDir(t), "corral-init"), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// setup is the common start of a root test.
func setup(t *testing.T, m mode, isolation ...string) (*containerizer.Containerizer, *linux.Launcher, string) {
	t.Helper()
	testsupport.RequireRoot(t)
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	l := newLauncher(t, m, prefix)
	return newContainerizer(t, l, isolation...), l, prefix
}

// launch starts a shell script in a fresh sandbox; the ID and the MARKER
// variable carry the prefix, so leaks are found.
func launch(t *testing.T, c *containerizer.Containerizer, cfg *container.Config, script string) string {
	t.Helper()
	if cfg.Sandbox == "" {
		cfg.Sandbox = filepath.Join(t.TempDir(), cfg.ID)
		if err := os.Mkdir(cfg.Sandbox, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Argv = []string{"/bin/sh", "-c", script}
	cfg.Env = append(cfg.Env, "MARKER="+cfg.ID)
	if err := c.Launch(context.Background(), cfg); err != nil {
		t.Fatalf("launch %s: %v", cfg.ID, err)
	}
	t.Cleanup(func() { _, _ = c.Destroy(context.Background(), cfg.ID) })
	return cfg.Sandbox
}

func wait(t *testing.T, c *containerizer.Containerizer, id string) *container.Termination {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	term, err := c.Wait(ctx, id)
	if err != nil {
		t.Fatalf("wait %s: %v", id, err)
	}
	return term
}

// run launches script, waits for its end and returns its stdout; a non-zero
// exit fails the test with stderr.
func run(t *testing.T, c *containerizer.Containerizer, cfg *container.Config, script string) string {
	t.Helper()
	sandbox := launch(t, c, cfg, script)
	term := wait(t, c, cfg.ID)
	out, _ := os.ReadFile(filepath.Join(sandbox, "stdout"))
	if !term.StatusKnown || !term.Status.Exited() || term.Status.ExitStatus() != 0 {
		errb, _ := os.ReadFile(filepath.Join(sandbox, "stderr"))
		t.Fatalf("%s: %s\nstdout: %s\nstderr: %s", cfg.ID, term.Message, out, errb)
	}
	return string(out)
}

// A hang guard, not a timing check: emulated VM guests fork only a few
// processes a second.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testsupport.Eventually(t, what, 2*time.Minute, cond)
}

func procsIn(dir string) []string {
	b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	return strings.Fields(string(b))
}

// removeIsolatorRoots removes the (by now empty) cgroups root that the v1
// cgroups isolators made in each hierarchy.
func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
