package containerizer_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/corral/corral/container"
	"github.com/corral/corral/container/containerizer"
	"github.com/corral/corral/internal/testsupport"
	"github.com/corral/corral/launcher/posix"
)

// fakeInit stands in for a container init an earlier agent started: a
// process in a session of its own that carries prefix in its environment.
type fakeInit struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startFake(t *testing.T, prefix string, argv ...string) *fakeInit {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"MARKER=" + prefix}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f := &fakeInit{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(f.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-f.done
	})
	return f
}

func (f *fakeInit) exited() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// record writes what Launch and the init leave in a container's runtime
// directory: the pid record (pid <= 0: none), the started marker, the
// task's wait status (status < 0: none).
func record(t *testing.T, runtime, id string, pid int, startDelta int64, started bool, status int) string {
	t.Helper()
	dir := filepath.Join(runtime, "containers", id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if pid > 0 {
		st, err := container.ProcessStartTime(pid)
		if err != nil {
			st = 4242 // gone already: any start time will do
		}
		if err := os.WriteFile(filepath.Join(dir, "pid"), fmt.Appendf(nil, "%d %d\n", pid, int64(st)+startDelta), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if started {
		if err := os.WriteFile(filepath.Join(dir, "started"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if status >= 0 {
		if err := os.WriteFile(filepath.Join(dir, "status"), fmt.Appendf(nil, "%d\n", status), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestRecover hands Recover the runtime records an agent killed at various
// points leaves, with the posix launcher, and checks what it makes of each:
// processes are recognised by pidfd and start time, never by PID alone.
func TestRecover(t *testing.T) {
	testsupport.RequireRoot(t)
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	runtime := t.TempDir()
	id := func(name string) string { return prefix + name }

	// Still running, its task not ended: re-attached.
	running := startFake(t, prefix, "sleep", "1000")
	runningDir := record(t, runtime, id("running"), running.cmd.Process.Pid, 0, true, -1)
	// Ended while the agent was down, exit 3 recorded by the init.
	dead := startFake(t, prefix, "true")
	<-dead.done
	endedDir := record(t, runtime, id("ended"), dead.cmd.Process.Pid, 0, true, 3<<8)
	// Ended without a record (the init itself was killed).
	record(t, runtime, id("unknown"), dead.cmd.Process.Pid, 0, true, -1)
	// The PID now names another process (its start time differs): the
	// container is gone, and that process is not touched.
	stranger := startFake(t, prefix, "sleep", "1000")
	record(t, runtime, id("reused"), stranger.cmd.Process.Pid, -7, true, -1)
	// Launch interrupted before the pid record was whole.
	tornDir := record(t, runtime, id("torn"), -1, 0, false, -1)
	if err := os.WriteFile(filepath.Join(tornDir, "pid"), []byte("123"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Alive without the go-ahead recorded: re-attached; it ends without
	// having started the task (it never got the go-ahead).
	unstarted := startFake(t, prefix, "sleep", "1000")
	record(t, runtime, id("unstarted"), unstarted.cmd.Process.Pid, 0, false, -1)
	// Dead without the go-ahead recorded or a status: never started.
	deadDir := record(t, runtime, id("dead-unstarted"), dead.cmd.Process.Pid, 0, false, -1)
	// No checkpoint claims it: destroyed.
	orphan := startFake(t, prefix, "sleep", "1000")
	orphanDir := record(t, runtime, id("orphan"), orphan.cmd.Process.Pid, 0, true, -1)

	c, err := containerizer.New(posix.New(), nil, filepath.Join(testsupport.BinDir(t), "corral-init"), runtime, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.RetainEnded()
	var known []*container.Config
	for _, name := range []string{"running", "ended", "unknown", "reused", "torn", "unstarted", "dead-unstarted", "never"} {
		known = append(known, &container.Config{ID: id(name), Sandbox: t.TempDir()})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := c.Recover(ctx, known)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	want := map[string]containerizer.RecoveredState{
		"running": containerizer.Running, "ended": containerizer.Ended, "unknown": containerizer.Ended,
		"reused": containerizer.Ended, "torn": containerizer.NotStarted, "unstarted": containerizer.Running,
		"dead-unstarted": containerizer.NotStarted, "never": containerizer.NotStarted,
	}
	for name, w := range want {
		if r := got[id(name)]; r == nil || r.State != w {
			t.Errorf("%s: recovered %+v, want %v", name, r, w)
		}
	}
	if _, ok := got[id("orphan")]; ok {
		t.Errorf("the orphan is reported as known")
	}
	if term := got[id("ended")].Termination; term == nil || !term.StatusKnown || term.Status.ExitStatus() != 3 {
		t.Errorf("ended: termination %+v, want exit status 3", term)
	}
	if term := got[id("unknown")].Termination; term == nil || term.StatusKnown {
		t.Errorf("unknown: termination %+v, want the status unknown", term)
	}
	if !orphan.exited() {
		<-orphan.done // destroyOrphan waited for its pidfd; the reaper may lag
	}
	if stranger.exited() {
		t.Errorf("the process that reused a recorded PID was killed")
	}
	if exists(orphanDir) || exists(tornDir) || exists(deadDir) {
		t.Errorf("runtime records of orphan/torn/unstarted containers left: %v %v %v", exists(orphanDir), exists(tornDir), exists(deadDir))
	}
	// An ended container's record stays until Forget (RetainEnded); Wait
	// returns its end at once.
	if !exists(endedDir) {
		t.Errorf("ended container's runtime record removed before Forget")
	}
	if term, err := c.Wait(ctx, id("ended")); err != nil || term.Status.ExitStatus() != 3 {
		t.Errorf("Wait(ended) = %+v, %v", term, err)
	}
	c.Forget(id("ended"))
	if exists(endedDir) {
		t.Errorf("Forget left the record")
	}

	// The re-attached containers end: Wait reports the init's records.
	if ids := c.Containers(); len(ids) != 2 {
		t.Fatalf("running containers %v, want %s and %s", ids, id("running"), id("unstarted"))
	}
	_ = unstarted.cmd.Process.Signal(syscall.SIGTERM)
	if term, err := c.Wait(ctx, id("unstarted")); err != nil || !term.NotStarted || term.StatusKnown {
		t.Errorf("Wait(unstarted) = %+v, %v; want NotStarted", term, err)
	}
	if err := os.WriteFile(filepath.Join(runningDir, "status"), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = running.cmd.Process.Signal(syscall.SIGTERM)
	term, err := c.Wait(ctx, id("running"))
	if err != nil || !term.StatusKnown || term.Status.ExitStatus() != 0 {
		t.Fatalf("Wait(running) = %+v, %v; want exit 0 from the record", term, err)
	}
	c.Forget(id("running"))
	_ = stranger.cmd.Process.Kill()
}
