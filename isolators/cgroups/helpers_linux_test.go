package cgroups_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cgroupsv3 "github.com/containerd/cgroups/v3"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/corral/corral/container"
	"github.com/corral/corral/container/containerizer"
	"github.com/corral/corral/internal/testsupport"
	"github.com/corral/corral/launcher/linux"

	_ "github.com/corral/corral/isolators/cgroups"
	_ "github.com/corral/corral/isolators/namespaces"
)

// cgroupRoot is where the host mounts cgroups; the tests run on the host's
// own layout (v1 hybrid here, v2 in the VM tier).
const cgroupRoot = "/sys/fs/cgroup"

// unified reports whether the host is cgroup v2 only; the isolators follow
// the host's mode, so the files a test checks do too.
func unified() bool { return cgroupsv3.Mode() == cgroupsv3.Unified }

// env is one test's containerizer: a linux launcher and the isolators asked
// for, all on a cgroups root named by the test's prefix.
type env struct {
	c      *containerizer.Containerizer
	l      *linux.Launcher
	prefix string
	root   string
}

// setup builds the containerizer for a root test. flags are agent flags
// (--cgroups_enable_cfs ...), parsed as the agent parses them; the cgroups root is the test's own, so nothing here can
// touch another agent's containers, and it is removed at the end.
func setup(t *testing.T, flags []string, isolation ...string) *env {
	t.Helper()
	testsupport.RequireRoot(t)
	if cgroupsv3.Mode() == cgroupsv3.Unavailable {
		t.Skip("no cgroup file system mounted at /sys/fs/cgroup")
	}
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	root := prefix + "root"
	o, err := optionsWithFlags(flags)
	if err != nil {
		t.Fatal(err)
	}
	o.CgroupsRoot = root
	l, err := linux.New(o)
	if err != nil {
		t.Fatal(err)
	}
	// Registered before the containers' cleanups, so it runs after them.
	t.Cleanup(func() {
		if err := l.RemoveRoot(); err != nil {
			t.Errorf("removing the launcher's cgroups root: %v", err)
		}
		removeIsolatorRoots(t, root)
	})
	var isos []container.Isolator
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
	return &env{c: c, l: l, prefix: prefix, root: root}
}

// removeIsolatorRoots removes the (by now empty) cgroups root the v1
// isolators made in each hierarchy; a container cgroup still in it makes
// the rmdir fail, and the leak check names it.
func removeIsolatorRoots(t *testing.T, root string) {
	if unified() {
		return
	}
	entries, _ := os.ReadDir(cgroupRoot)
	for _, e := range entries {
		dir := filepath.Join(cgroupRoot, e.Name(), root)
		if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) {
			t.Errorf("removing %s: %v", dir, err)
		}
	}
}

// dir is the cgroup holding ctrl's files for container id.
func (e *env) dir(ctrl, id string) string {
	if unified() {
		return filepath.Join(cgroupRoot, e.root, id)
	}
	return filepath.Join(cgroupRoot, ctrl, e.root, id)
}

// launch starts script in a fresh sandbox; the ID and the MARKER variable
// carry the prefix, so the leak check finds what a test leaves.
func (e *env) launch(t *testing.T, cfg *container.Config, script string) string {
	t.Helper()
	if cfg.Sandbox == "" {
		cfg.Sandbox = filepath.Join(t.TempDir(), cfg.ID)
		if err := os.Mkdir(cfg.Sandbox, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Argv = []string{"/bin/sh", "-c", script}
	cfg.Env = append(cfg.Env, "MARKER="+cfg.ID)
	if err := e.c.Launch(context.Background(), cfg); err != nil {
		t.Fatalf("launch %s: %v", cfg.ID, err)
	}
	t.Cleanup(func() { _, _ = e.c.Destroy(context.Background(), cfg.ID) })
	return cfg.Sandbox
}

func (e *env) wait(t *testing.T, id string) *container.Termination {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	term, err := e.c.Wait(ctx, id)
	if err != nil {
		t.Fatalf("wait %s: %v", id, err)
	}
	return term
}

// waitFor polls cond for a generous while: the machine is noisy, and only
// a condition never reached fails.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testsupport.Eventually(t, what, 30*time.Second, cond)
}

func readFile(t testing.TB, dir, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// sandboxFile reads a file the task wrote into its sandbox.
func sandboxFile(sandbox, name string) string {
	b, _ := os.ReadFile(filepath.Join(sandbox, name))
	return string(b)
}

// optionsWithFlags is Options with the settings the agent would parse from
// flags; a value the flag set refuses is the error.
func optionsWithFlags(flags []string) (container.Options, error) {
	set := container.NewSettings()
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	set.Flags(fs)
	if err := fs.Parse(flags); err != nil {
		return container.Options{}, err
	}
	return container.Options{Settings: set}, nil
}
