package posix_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral/corral/container"
	"github.com/corral/corral/container/containerizer"
	"github.com/corral/corral/internal/testsupport"
	"github.com/corral/corral/launcher/posix"
)

func newContainerizer(t testing.TB) *containerizer.Containerizer {
	t.Helper()
	bin := testsupport.BinDir(t)
	c, err := containerizer.New(posix.New(), nil, filepath.Join(bin, "corral-init"), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// launch starts a shell command in a fresh sandbox whose path (and the
// MARKER variable) carries the test's prefix, so leaks are found.
func launch(t *testing.T, c *containerizer.Containerizer, prefix, name, script string) (*container.Config, string) {
	t.Helper()
	id := prefix + name
	sandbox := filepath.Join(t.TempDir(), id)
	if err := os.Mkdir(sandbox, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := &container.Config{
		ID: id, Sandbox: sandbox,
		Argv: []string{"/bin/sh", "-c", script},
		Env:  []string{"MARKER=" + id},
	}
	if err := c.Launch(context.Background(), cfg); err != nil {
		t.Fatalf("launch %s: %v", name, err)
	}
	return cfg, sandbox
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

func TestPosixLifecycle(t *testing.T) {
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	c := newContainerizer(t)

	tests := []struct {
		name       string
		script     string
		exitCode   int
		signal     syscall.Signal
		stdout     string
		stderr     string
		noneRemain bool
	}{
		{name: "echo", script: "echo hello; echo oops >&2", stdout: "hello\n", stderr: "oops\n"},
		{name: "exit3", script: "exit 3", exitCode: 3},
		{name: "killed-by-signal", script: "kill -SEGV $$", signal: syscall.SIGSEGV},
		// The task ends but leaves a daemon that escaped its session: the
		// container still ends whole.
		{name: "leftover-daemon", script: "setsid sleep 1000 & sleep 1000 & exit 0", noneRemain: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, sandbox := launch(t, c, prefix, tc.name, tc.script)
			term := wait(t, c, cfg.ID)
			if !term.StatusKnown {
				t.Fatalf("status unknown: %+v", term)
			}
			if tc.signal != 0 {
				if !term.Status.Signaled() || term.Status.Signal() != tc.signal {
					t.Fatalf("status %v, want signal %v", term.Status, tc.signal)
				}
			} else if !term.Status.Exited() || term.Status.ExitStatus() != tc.exitCode {
				t.Fatalf("status %#x (%s), want exit %d", int(term.Status), term.Message, tc.exitCode)
			}
			if tc.stdout != "" {
				assertFile(t, filepath.Join(sandbox, "stdout"), tc.stdout)
				assertFile(t, filepath.Join(sandbox, "stderr"), tc.stderr)
			}
			if tc.noneRemain {
				if l := testsupport.Leaks(cfg.ID); len(l) > 0 {
					t.Fatalf("processes survived their container: %v", l)
				}
			}
		})
	}
}

func TestPosixDestroyKillsEverything(t *testing.T) {
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	c := newContainerizer(t)
	// Processes in the task's group, in a new session, and a stopped one.
	cfg, _ := launch(t, c, prefix, "tree",
		"sleep 1000 & setsid sleep 1000 & (sleep 1000 & kill -STOP $!; wait) & sh -c 'sleep 1000' & wait")
	waitFor(t, func() bool { return len(testsupport.Leaks(cfg.ID)) >= 5 })
	term, err := c.Destroy(context.Background(), cfg.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !term.Destroyed || !term.StatusKnown || term.Status.Signal() != syscall.SIGKILL {
		t.Fatalf("termination %+v, want destroyed with SIGKILL", term)
	}
	if l := testsupport.Leaks(cfg.ID); len(l) > 0 {
		t.Fatalf("processes survived destroy: %v", l)
	}
}

func TestPosixSignalIsForwarded(t *testing.T) {
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	c := newContainerizer(t)
	cfg, sandbox := launch(t, c, prefix, "term", "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done")
	waitFor(t, func() bool {
		b, _ := os.ReadFile(filepath.Join(sandbox, "stdout"))
		return strings.Contains(string(b), "ready")
	})
	if err := c.Signal(cfg.ID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	term := wait(t, c, cfg.ID)
	if !term.Status.Exited() || term.Status.ExitStatus() != 7 {
		t.Fatalf("status %+v, want exit 7 from the TERM trap", term)
	}
}

func TestPosixBadCommand(t *testing.T) {
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	c := newContainerizer(t)
	id := prefix + "nocmd"
	sandbox := filepath.Join(t.TempDir(), id)
	_ = os.Mkdir(sandbox, 0o755)
	if err := c.Launch(context.Background(), &container.Config{ID: id, Sandbox: sandbox, Argv: []string{"no-such-command-xyz"}}); err != nil {
		t.Fatal(err)
	}
	term := wait(t, c, id)
	if term.StatusKnown {
		t.Fatalf("status known for a command that never started: %+v", term)
	}
	b, _ := os.ReadFile(filepath.Join(sandbox, "stderr"))
	if !strings.Contains(string(b), "no-such-command-xyz") || !strings.Contains(term.Message, "stderr") {
		t.Fatalf("stderr %q, message %q: want the reason", b, term.Message)
	}
	if err := c.Launch(context.Background(), &container.Config{ID: "../x", Sandbox: sandbox, Argv: []string{"true"}}); err == nil {
		t.Fatal("an ID with a path separator was accepted")
	}
}

func assertFile(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || string(b) != want {
		t.Fatalf("%s = %q (%v), want %q", path, b, err, want)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	testsupport.Eventually(t, "the condition", 10*time.Second, cond)
}
