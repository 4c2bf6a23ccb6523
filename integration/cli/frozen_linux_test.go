package cli

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral/corral/internal/testsupport"
)

// An agent killed between a destroy's freeze and thaw leaves its container
// frozen: corral-init, sh and sleep in state D, alive to no purpose. The
// restarted `corral agent` takes the container back (its framework
// checkpoints and is still there) and must thaw it, so that it runs on and
// can be killed and reaped like any other.
func TestAgentRecoveryThawsFrozenContainer(t *testing.T) {
	prefix := rootTest(t)
	c := startCluster(t, prefix, clusterOpts{split: true})
	run := start(t, "corral run", nil, "run", "--master", c.master, "--name", prefix+"frozen", "--command", "sleep 1000", "--checkpoint")
	testsupport.Eventually(t, "the task running", runTimeout, func() bool { return strings.Contains(run.out.String(), "TASK_RUNNING") })
	var sleepPid string
	testsupport.Eventually(t, "the task's sleep", runTimeout, func() bool {
		for _, p := range processesOf(c.workDir) {
			if pid, _, ok := strings.Cut(p, " "); ok && strings.HasSuffix(p, ": sleep 1000") {
				sleepPid = pid
				return true
			}
		}
		return false
	})
	var dir string
	for _, d := range containerCgroups(c.cgRoot) {
		if _, err := os.Stat(filepath.Join(d, "freezer.state")); err == nil {
			dir = d
		}
	}
	if dir == "" {
		t.Skip("no v1 freezer cgroup for the task (a cgroup v2 host); launcher/linux's TestRecoverThawsFrozenContainer covers v2")
	}

	// What the agent's destroy does first; then the agent dies.
	if err := os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("FROZEN"), 0o644); err != nil {
		t.Fatal(err)
	}
	testsupport.Eventually(t, "the container frozen", 10*time.Second, func() bool { return freezerState(dir) == "FROZEN" })
	c.procs[1].stop(t, syscall.SIGKILL)
	c.restartAgent(t)

	// Recovery is over once the agent is back with the master; the thaw
	// is part of it, but a few seconds more are allowed all the same.
	for deadline := time.Now().Add(10 * time.Second); freezerState(dir) == "FROZEN" && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if st := freezerState(dir); st != "THAWED" {
		t.Fatalf("the recovered container %s is %q, want THAWED and running on (its sleep is in state %q)", dir, st, procState(sleepPid))
	}
	if st := procState(sleepPid); st != "S" && st != "R" {
		t.Fatalf("the recovered task's sleep is in state %q, want running on", st)
	}
	// Thawed, it can be killed and reaped: corral run's Ctrl-C kills the
	// task.
	run.stop(t, syscall.SIGINT)
	testsupport.Eventually(t, "the task's processes gone", 30*time.Second, func() bool {
		for _, p := range processesOf(c.workDir) {
			if !strings.Contains(p, "corral agent") {
				return false
			}
		}
		return true
	})
	if !strings.Contains(run.out.String(), "TASK_KILLED") {
		t.Errorf("corral run did not report TASK_KILLED:\n%s", run.out.String())
	}
}
