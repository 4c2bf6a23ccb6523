package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/testsupport"
)

// Issue 6 on real binaries: the agent's sandbox GC and disk/du, set by the
// agent's flags. Nothing here asserts on time; the waits only turn hangs
// into failures.

// gcMetricKeys must be in the agent's /metrics/snapshot from the start.
var gcMetricKeys = []string{
	"slave/uptime_secs", "slave/registered", "slave/recovery_errors", "slave/frameworks_active",
	"slave/tasks_running", "slave/tasks_finished", "slave/tasks_failed", "slave/tasks_killed", "slave/tasks_lost",
	"slave/executors_running", "slave/executors_terminated",
	"gc/path_removals_succeeded", "gc/path_removals_failed", "gc/path_removals_pending",
	"gc/bytes_freed", "gc/last_prune_secs",
}

func (n *node) metrics(tb testing.TB) map[string]float64 {
	tb.Helper()
	var m map[string]float64
	if err := n.agentJSON("/metrics/snapshot", &m); err != nil {
		tb.Fatalf("agent /metrics/snapshot: %v", err)
	}
	return m
}

func gone(path string) bool {
	_, err := os.Lstat(path)
	return os.IsNotExist(err)
}

// runParents are the executor's and framework's directories of a run's
// sandbox (.../frameworks/<fw>/executors/<ex>/runs/<run>).
func runParents(sandbox string) (exDir, fwDir string) {
	exDir = filepath.Dir(filepath.Dir(sandbox))
	return exDir, filepath.Dir(filepath.Dir(exDir))
}

// A task that ran to its end has its sandbox removed gc_delay later, with
// its executor's and framework's directories (nothing else of the
// framework is live); /metrics/snapshot counts the removals and the bytes.
func TestDiskGCRemovesEndedSandbox(t *testing.T) {
	prefix := rootTest(t)
	n := startNode(t, prefix, "posix", "--gc_delay", "2s", "--disk_watch_interval", "1s")
	// startNode waits for the agent to listen, not for its registration.
	var m map[string]float64
	testsupport.Eventually(t, "the agent to count itself registered", taskTimeout, func() bool {
		m = n.metrics(t)
		return m["slave/registered"] == 1
	})
	for _, k := range gcMetricKeys {
		if _, ok := m[k]; !ok {
			t.Errorf("/metrics/snapshot lacks %s", k)
		}
	}
	if m["gc/path_removals_succeeded"] != 0 {
		t.Errorf("fresh agent: %v", m)
	}

	f := ckptFramework(t, n.master, "disk-gc", false, false)
	f.launch(commandTask(t, "gc-1", `while [ ! -e go ]; do sleep 0.05; done; head -c 1048576 /dev/zero > data`))
	f.running(t, "gc-1")
	box := n.taskSandbox(t, "gc-1")
	exDir, fwDir := runParents(box)
	if err := os.WriteFile(filepath.Join(box, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if s := f.awaitTerminal(t, "gc-1")["gc-1"].last; s.GetState() != mesos.TaskState_TASK_FINISHED {
		t.Fatalf("gc-1 ended %v %q", s.GetState(), s.GetMessage())
	}
	testsupport.Eventually(t, "the sandbox and its executor's and framework's directories to be removed", taskTimeout, func() bool {
		return gone(box) && gone(exDir) && gone(fwDir)
	})
	testsupport.Eventually(t, "nothing left scheduled", taskTimeout, func() bool { return n.metrics(t)["gc/path_removals_pending"] == 0 })
	m = n.metrics(t)
	if m["gc/path_removals_succeeded"] < 1 || m["gc/path_removals_failed"] != 0 || m["gc/bytes_freed"] < 1<<20 || m["gc/last_prune_secs"] <= 0 {
		t.Errorf("after the removal: succeeded %v failed %v bytes_freed %v last_prune %v; want removals counted with the 1 MiB freed",
			m["gc/path_removals_succeeded"], m["gc/path_removals_failed"], m["gc/bytes_freed"], m["gc/last_prune_secs"])
	}
	if m["slave/tasks_finished"] != 1 || m["slave/executors_terminated"] != 1 || m["slave/tasks_running"] != 0 {
		t.Errorf("task counters: finished %v executors_terminated %v running %v",
			m["slave/tasks_finished"], m["slave/executors_terminated"], m["slave/tasks_running"])
	}
}

// The GC's schedule survives kill -9 of the agent: a sandbox scheduled
// before (kept for gc_delay 1h) and the sandbox of a task that ended while
// the agent was down are both scheduled by the restarted agent, from when
// each ended, and removed once its gc_delay (2s now) has passed. A task
// kept running holds the framework's directory (which would take every
// sandbox with it) until it is killed.
func TestDiskGCAfterAgentRestart(t *testing.T) {
	prefix := rootTest(t)
	// Headroom 0: only a full disk would prune the 1h sandbox early.
	n := startNode(t, prefix, "posix", "--gc_delay", "1h", "--gc_disk_headroom", "0")
	f := ckptFramework(t, n.master, "disk-gc-restart", false, false)
	wait := `while [ ! -e go ]; do sleep 0.05; done; `
	f.launch(commandTask(t, "before", wait+"echo before"), commandTask(t, "down", wait+"echo down"),
		commandTask(t, "keeper", "sleep 1000"))
	f.running(t, "keeper")
	f.running(t, "before")
	cidDown := f.running(t, "down")
	boxBefore, boxDown := n.taskSandbox(t, "before"), n.taskSandbox(t, "down")
	exBefore, fwDir := runParents(boxBefore)
	exDown, _ := runParents(boxDown)

	if err := os.WriteFile(filepath.Join(boxBefore, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if s := f.awaitTerminal(t, "before")["before"].last; s.GetState() != mesos.TaskState_TASK_FINISHED {
		t.Fatalf("before ended %v %q", s.GetState(), s.GetMessage())
	}
	// Its run and executor directories; not the framework's.
	testsupport.Eventually(t, "the ended run's directories to be scheduled", taskTimeout, func() bool { return n.metrics(t)["gc/path_removals_pending"] == 2 })
	if gone(boxBefore) {
		t.Fatalf("%s removed long before its gc_delay", boxBefore)
	}

	n.agent.kill9()
	if err := os.WriteFile(filepath.Join(boxDown, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	testsupport.Eventually(t, "task down to end while the agent is down", taskTimeout, func() bool { return len(processesOf(cidDown)) == 0 })
	n.startAgent(t, "--gc_delay", "2s")

	if s := f.awaitTerminal(t, "down")["down"].last; s.GetState() != mesos.TaskState_TASK_FINISHED {
		t.Errorf("down ended %v %q, want TASK_FINISHED", s.GetState(), s.GetMessage())
	}
	testsupport.Eventually(t, "both sandboxes and their executors' directories to be removed", taskTimeout, func() bool {
		return gone(boxBefore) && gone(exBefore) && gone(boxDown) && gone(exDown)
	})
	if m := n.metrics(t); m["gc/path_removals_succeeded"] < 4 || m["gc/path_removals_failed"] != 0 {
		t.Errorf("after the restart: succeeded %v failed %v, want the two runs' and executors' directories",
			m["gc/path_removals_succeeded"], m["gc/path_removals_failed"])
	}
	if gone(fwDir) || gone(n.taskSandbox(t, "keeper")) {
		t.Fatalf("the framework's directory or the live task's sandbox was removed")
	}

	f.kill(t, "keeper")
	if s := f.awaitTerminal(t, "keeper")["keeper"].last; s.GetState() != mesos.TaskState_TASK_KILLED {
		t.Errorf("keeper ended %v %q, want TASK_KILLED", s.GetState(), s.GetMessage())
	}
	testsupport.Eventually(t, "the framework's directory to be removed after its last run", taskTimeout, func() bool { return gone(fwDir) })
	testsupport.Eventually(t, "nothing left scheduled", taskTimeout, func() bool { return n.metrics(t)["gc/path_removals_pending"] == 0 })
}

// disk/du from the command line, enforcing: a task writing past its disk
// resource ends TASK_FAILED with REASON_CONTAINER_LIMITATION_DISK and a
// message giving usage and limit; a task below its limit is measured
// (/monitor/statistics has its usage and limit) and runs to its end.
func TestDiskDUEnforcedThroughAgent(t *testing.T) {
	prefix := rootTest(t)
	n := startNode(t, prefix, "posix", "--isolation", "disk/du", "--enforce_container_disk_quota",
		"--container_disk_watch_interval", "200ms")
	f := ckptFramework(t, n.master, "disk-du", false, false)

	over := commandTask(t, "over", "head -c 8388608 /dev/zero > fill; sleep 1000")
	over.Resources = mustResources(t, "cpus:0.1;mem:32;disk:2")
	under := commandTask(t, "under", `head -c 1048576 /dev/zero > fill; while [ ! -e go ]; do sleep 0.05; done`)
	under.Resources = mustResources(t, "cpus:0.1;mem:32;disk:16")
	f.launch(over, under)

	cidUnder := f.running(t, "under")
	s := f.awaitTerminal(t, "over")["over"].last
	if s.GetState() != mesos.TaskState_TASK_FAILED || s.GetReason() != mesos.TaskStatus_REASON_CONTAINER_LIMITATION_DISK {
		t.Errorf("over ended %v %v %q, want TASK_FAILED with REASON_CONTAINER_LIMITATION_DISK", s.GetState(), s.GetReason(), s.GetMessage())
	}
	if msg := s.GetMessage(); !strings.Contains(msg, "Disk usage") || !strings.Contains(msg, "2MB") || !strings.Contains(msg, "2097152 bytes") {
		t.Errorf("over's message %q, want the usage and the 2MB limit", msg)
	}

	var used, limit float64
	testsupport.Eventually(t, "under's sandbox to be measured", taskTimeout, func() bool {
		var stats []struct {
			ContainerID string             `json:"container_id"`
			Statistics  map[string]float64 `json:"statistics"`
		}
		if err := n.agentJSON("/monitor/statistics", &stats); err != nil {
			t.Fatalf("/monitor/statistics: %v", err)
		}
		for _, e := range stats {
			if e.ContainerID == cidUnder {
				used, limit = e.Statistics["disk_used_bytes"], e.Statistics["disk_limit_bytes"]
			}
		}
		return used >= 1<<20
	})
	if limit != 16<<20 {
		t.Errorf("under's disk_limit_bytes %v, want %d", limit, 16<<20)
	}
	if err := os.WriteFile(filepath.Join(n.taskSandbox(t, "under"), "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if s := f.awaitTerminal(t, "under")["under"].last; s.GetState() != mesos.TaskState_TASK_FINISHED {
		t.Errorf("under ended %v %v %q, want TASK_FINISHED", s.GetState(), s.GetReason(), s.GetMessage())
	}
}

// The agent binary refuses bad disk flags at start-up, naming the flag, and
// disk/xfs (compiled in) on a work_dir without project quotas, naming the
// cause.
func TestDiskFlagsRefusedAtStart(t *testing.T) {
	prefix := rootTest(t)
	cases := []struct {
		name  string
		args  []string
		wants []string
	}{
		{"xfs-without-project-quota", []string{"--isolation", "disk/xfs"}, []string{"disk/xfs", "project quota"}},
		{"headroom", []string{"--gc_disk_headroom", "1.5"}, []string{"--gc_disk_headroom"}},
		{"inodes", []string{"--gc_inode_threshold", "-1"}, []string{"--gc_inode_threshold"}},
		{"parallelism", []string{"--gc_parallelism", "-2"}, []string{"--gc_parallelism"}},
		{"project-range", []string{"--xfs_project_range", "[10-5]"}, []string{"--xfs_project_range"}},
		{"gc-delay", []string{"--gc_delay", "-1h"}, []string{"--gc_delay"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			workDir := filepath.Join(t.TempDir(), prefix+"work")
			ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
			defer cancel()
			args := append([]string{"agent", "--master", "127.0.0.1:1", "--work_dir", workDir, "--port", "0",
				"--launcher", "posix", "--cgroups_root", prefix + "root"}, tc.args...)
			cmd := exec.CommandContext(ctx, corralBin(t), args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			cmd.WaitDelay = 10 * time.Second
			err := cmd.Run()
			if ctx.Err() != nil {
				if tc.name == "xfs-without-project-quota" {
					t.Skipf("the agent started: %s has project quotas here", workDir)
				}
				t.Fatalf("agent %v did not refuse to start", tc.args)
			}
			if err == nil {
				t.Fatalf("agent %v exited 0", tc.args)
			}
			for _, w := range tc.wants {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("agent %v: stderr %q does not name %q", tc.args, stderr.String(), w)
				}
			}
		})
	}
}
