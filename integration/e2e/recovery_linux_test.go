package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/testsupport"
)

// The agent's durability on real binaries: a master and an agent as
// separate processes, the agent killed with SIGKILL and restarted. Nothing
// here asserts on time; timeouts only turn hangs into failures.

var launchers = []string{"linux", "posix"}

// TestRecoverRunningTask: a checkpointing framework's task keeps running
// across kill -9 of the agent; the restarted agent re-attaches it under the
// same agent ID, and a kill then ends it TASK_KILLED. With the linux
// launcher and the cgroups isolators, the memory limit and the OOM watch
// come back too: the task, made to exceed its limit after the restart, ends
// with REASON_CONTAINER_LIMITATION_MEMORY.
func TestRecoverRunningTask(t *testing.T) {
	forEachLauncher(t, func(t *testing.T, launcher, prefix string) {
		var extra []string
		if launcher == "linux" {
			extra = []string{"--isolation", "cgroups/cpu,cgroups/mem"}
		}
		n := startNode(t, prefix, launcher, extra...)
		f := ckptFramework(t, n.master, "recover-running", false, false)
		id := n.agentID(t)

		f.launch(commandTask(t, "sleeper", "sleep 1000"))
		hog := commandTask(t, "hog", `while [ ! -e go ]; do sleep 0.05; done; head -c 1024M /dev/zero | tail; sleep 1000`)
		hog.Resources = mustResources(t, "cpus:0.1;mem:64")
		if launcher == "linux" {
			f.launch(hog)
		}
		cid := f.running(t, "sleeper")
		testsupport.Eventually(t, "the sleeper's sleep", taskTimeout, func() bool { return hasCommand(processesOf(cid), "sleep 1000") })
		before := processesOf(cid)
		if launcher == "linux" {
			f.running(t, "hog")
		}

		n.restartAgent(t)
		if got := n.agentID(t); got != id {
			t.Fatalf("agent re-registered as %s, want %s", got, id)
		}
		if st := n.taskStates(t); st["sleeper"] != "TASK_RUNNING" {
			t.Fatalf("after the restart the agent has the sleeper %q, want TASK_RUNNING (tasks %v)", st["sleeper"], st)
		}
		if r := n.recovery(t).Recovery; r.Running < 1 || r.Discarded != "" {
			t.Fatalf("recovery: %+v, want the containers re-attached", r)
		}
		if after := processesOf(cid); !slices.Equal(after, before) {
			t.Fatalf("the sleeper's processes changed across the restart: %v, then %v", before, after)
		}
		if launcher == "linux" {
			// The OOM watch was restored with the container.
			hogBox := n.taskSandbox(t, "hog")
			if err := os.WriteFile(filepath.Join(hogBox, "go"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			h := f.awaitTerminal(t, "hog")["hog"]
			if s := h.last; s.GetState() != mesos.TaskState_TASK_FAILED || s.GetReason() != mesos.TaskStatus_REASON_CONTAINER_LIMITATION_MEMORY {
				t.Errorf("hog ended %v %v %q, want TASK_FAILED with REASON_CONTAINER_LIMITATION_MEMORY", s.GetState(), s.GetReason(), s.GetMessage())
			}
		}

		f.kill(t, "sleeper")
		h := f.awaitTerminal(t, "sleeper")["sleeper"]
		if s := h.last; s.GetState() != mesos.TaskState_TASK_KILLED {
			t.Fatalf("sleeper ended %v %v %q, want TASK_KILLED", s.GetState(), s.GetReason(), s.GetMessage())
		}
		if slices.Contains(h.states, mesos.TaskState_TASK_LOST) {
			t.Errorf("sleeper went %v: lost on the way", h)
		}
		testsupport.Eventually(t, "no process of the killed task", taskTimeout, func() bool { return len(processesOf(cid)) == 0 })
	})
}

// TestRecoverTaskEndedWhileDown: tasks that end while the agent is down are
// reported with their real exit status after the restart, not as lost. With
// the linux launcher the tasks run under filesystem/linux, whose private
// /tmp covers the work_dir (the tests' is under /tmp, as the quickstart's):
// the init still records the exit status in the runtime directory.
func TestRecoverTaskEndedWhileDown(t *testing.T) {
	forEachLauncher(t, func(t *testing.T, launcher, prefix string) {
		var extra []string
		if launcher == "linux" {
			extra = []string{"--isolation", "filesystem/linux"}
		}
		n := startNode(t, prefix, launcher, extra...)
		f := ckptFramework(t, n.master, "recover-ended", false, false)
		wait := `while [ ! -e go ]; do sleep 0.05; done; `
		f.launch(commandTask(t, "ok", wait+"exit 0"), commandTask(t, "three", wait+"exit 3"))
		cids := map[string]string{"ok": f.running(t, "ok"), "three": f.running(t, "three")}

		n.agent.kill9()
		for id, cid := range cids {
			if err := os.WriteFile(filepath.Join(n.taskSandbox(t, id), "go"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			testsupport.Eventually(t, "task "+id+" to end while the agent is down", taskTimeout, func() bool { return len(processesOf(cid)) == 0 })
		}
		n.startAgent(t)

		got := f.awaitTerminal(t, "ok", "three")
		if s := got["ok"].last; s.GetState() != mesos.TaskState_TASK_FINISHED {
			t.Errorf("ok ended %v %v %q, want TASK_FINISHED", s.GetState(), s.GetReason(), s.GetMessage())
		}
		if s := got["three"].last; s.GetState() != mesos.TaskState_TASK_FAILED || !strings.Contains(s.GetMessage(), "status 3") ||
			s.GetReason() != mesos.TaskStatus_REASON_COMMAND_EXECUTOR_FAILED {
			t.Errorf("three ended %v %v %q, want TASK_FAILED with exit status 3", s.GetState(), s.GetReason(), s.GetMessage())
		}
		if r := n.recovery(t).Recovery; r.Ended != 2 {
			t.Errorf("recovery found %d ended containers, want 2: %+v", r.Ended, r)
		}
		// Their runtime records go once the ends are recorded.
		testsupport.Eventually(t, "the runtime records to go", taskTimeout, func() bool {
			entries, _ := os.ReadDir(filepath.Join(n.runtimeDir(), "containers"))
			return len(entries) == 0
		})
	})
}

// TestRecoverResendsUnacknowledged: an update the scheduler did not
// acknowledge before the agent was killed is resent after the restart,
// with the same uuid; one it acknowledged is never resent.
func TestRecoverResendsUnacknowledged(t *testing.T) {
	prefix := rootTest(t)
	n := startNode(t, prefix, "linux", "--status_update_retry_interval_min", "1h", "--status_update_retry_interval_max", "1h")
	f := ckptFramework(t, n.master, "recover-resend", true, false)
	f.launch(commandTask(t, "t", "sleep 1000"))
	starting := f.next(t)
	if starting.GetState() != mesos.TaskState_TASK_STARTING {
		t.Fatalf("first update %v, want TASK_STARTING", starting.GetState())
	}
	f.ack(t, starting)
	running := f.next(t)
	if running.GetState() != mesos.TaskState_TASK_RUNNING {
		t.Fatalf("second update %v, want TASK_RUNNING", running.GetState())
	}
	// RUNNING is not acknowledged: the agent holds it (no retry for an hour).

	n.restartAgent(t)
	if r := n.recovery(t).Recovery; r.Pending != 1 {
		t.Errorf("recovery found %d pending updates, want 1: %+v", r.Pending, r)
	}
	again := f.next(t)
	if again.GetState() != mesos.TaskState_TASK_RUNNING || string(again.GetUuid()) != string(running.GetUuid()) {
		t.Fatalf("after the restart came %v (uuid %x), want TASK_RUNNING resent with uuid %x (STARTING was acknowledged)",
			again.GetState(), again.GetUuid(), running.GetUuid())
	}
	f.ack(t, again)
	f.kill(t, "t")
	for {
		s := f.next(t)
		if string(s.GetUuid()) == string(starting.GetUuid()) {
			t.Fatalf("the acknowledged TASK_STARTING was sent again")
		}
		if string(s.GetUuid()) == string(running.GetUuid()) {
			continue // a resend of RUNNING racing its ack is allowed
		}
		f.ack(t, s)
		if s.GetState().IsTerminal() {
			if s.GetState() != mesos.TaskState_TASK_KILLED {
				t.Fatalf("task ended %v %v %q, want TASK_KILLED", s.GetState(), s.GetReason(), s.GetMessage())
			}
			break
		}
	}
}

// testExecutorInfo is integration/testexecutor as a custom executor.
func testExecutorInfo(tb testing.TB, id string, env ...string) *mesos.ExecutorInfo {
	ei := &mesos.ExecutorInfo{
		ExecutorId: &mesos.ExecutorID{Value: proto.String(id)},
		Type:       mesos.ExecutorInfo_CUSTOM.Enum(),
		Name:       proto.String("e2e test executor"),
		Command:    &mesos.CommandInfo{Value: proto.String(testExecutorBin(tb)), Shell: proto.Bool(false)},
		Resources:  mustResources(tb, "cpus:0.1;mem:64"),
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if ei.Command.Environment == nil {
			ei.Command.Environment = &mesos.Environment{}
		}
		ei.Command.Environment.Variables = append(ei.Command.Environment.Variables,
			&mesos.Environment_Variable{Name: proto.String(k), Value: proto.String(v)})
	}
	return ei
}

func executorTask(tb testing.TB, id, command string, ei *mesos.ExecutorInfo) *mesos.TaskInfo {
	return &mesos.TaskInfo{
		Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)},
		Resources: mustResources(tb, "cpus:0.1;mem:32"), Executor: ei,
		Labels: &mesos.Labels{Labels: []*mesos.Label{{Key: proto.String("command"), Value: proto.String(command)}}},
	}
}

// TestRecoverCustomExecutor: a custom executor (integration/testexecutor,
// checkpointing) and its task survive kill -9 of the agent; the executor
// re-subscribes to the restarted agent, the task is then killed through it
// and the executor shut down by the framework's teardown.
func TestRecoverCustomExecutor(t *testing.T) {
	prefix := rootTest(t)
	n := startNode(t, prefix, "linux", "--executor_reregistration_timeout", "1m")
	f := ckptFramework(t, n.master, "recover-executor", false, false)
	ei := testExecutorInfo(t, "exec-1")
	f.launch(executorTask(t, "long", "sleep 1000", ei))
	f.running(t, "long")
	sandbox := (&cluster{workDir: n.workDir}).sandbox(t, "exec-1")
	// RUNNING may come before the task's shell has started its sleep: the
	// snapshot is taken once the tree is complete.
	testsupport.Eventually(t, "the task's sleep to start", taskTimeout, func() bool { return hasCommand(processesOf(sandbox), "sleep 1000") })
	before := processesOf(sandbox)

	n.restartAgent(t)
	awaitResubscribed(t, sandbox)
	// Compared by PID: a shell may exec its last command in place (sh -c
	// 'sleep 1000' becomes sleep) and is still the same process.
	pids := func(ps []string) []string {
		out := make([]string, len(ps))
		for i, p := range ps {
			out[i], _, _ = strings.Cut(p, ":")
		}
		return out
	}
	if after := processesOf(sandbox); !slices.Equal(pids(after), pids(before)) {
		t.Errorf("the executor's processes changed across the restart: %v, then %v", before, after)
	}
	// A second task goes to the recovered executor as to any other.
	f.launch(executorTask(t, "second", "exit 0", ei))
	if h := f.awaitTerminal(t, "second")["second"]; h.last.GetState() != mesos.TaskState_TASK_FINISHED {
		t.Errorf("second went %v %q, want TASK_FINISHED", h, h.last.GetMessage())
	}
	f.kill(t, "long")
	h := f.awaitTerminal(t, "long")["long"]
	if s := h.last; s.GetState() != mesos.TaskState_TASK_KILLED || slices.Contains(h.states, mesos.TaskState_TASK_LOST) {
		t.Fatalf("long went %v, last %v %q, want TASK_KILLED", h, s.GetReason(), s.GetMessage())
	}
	f.stop()
	testsupport.Eventually(t, "the executor to exit after teardown", taskTimeout, func() bool { return len(processesOf(sandbox)) == 0 })
}

// TestRecoverTaskGroup: a task group (LAUNCH_GROUP) on a custom executor
// survives kill -9 of the agent as a whole: the executor re-subscribes with
// both tasks, which keep running in the same processes, and each can then
// be killed on its own.
func TestRecoverTaskGroup(t *testing.T) {
	prefix := rootTest(t)
	n := startNode(t, prefix, "linux", "--executor_reregistration_timeout", "1m")
	f := ckptFramework(t, n.master, "recover-group", false, false)
	ei := testExecutorInfo(t, "group-exec")
	f.launchGroup(executorTask(t, "ga", "sleep 1001", ei), executorTask(t, "gb", "sleep 1002", ei))
	f.running(t, "ga")
	f.running(t, "gb")
	sandbox := (&cluster{workDir: n.workDir}).sandbox(t, "group-exec")
	testsupport.Eventually(t, "both tasks' sleeps to start", taskTimeout, func() bool {
		ps := processesOf(sandbox)
		return hasCommand(ps, "sleep 1001") && hasCommand(ps, "sleep 1002")
	})
	before := processesOf(sandbox)

	n.restartAgent(t)
	awaitResubscribed(t, sandbox)
	if r := n.recovery(t).Recovery; r.Running != 1 {
		t.Errorf("recovery re-attached %d containers, want the group's executor: %+v", r.Running, r)
	}
	if after := processesOf(sandbox); !slices.Equal(after, before) {
		t.Errorf("the group's processes changed across the restart: %v, then %v", before, after)
	}
	if st := n.taskStates(t); st["ga"] != "TASK_RUNNING" || st["gb"] != "TASK_RUNNING" {
		t.Errorf("after the restart the agent has the group's tasks in %v, want both TASK_RUNNING", st)
	}
	for _, id := range []string{"ga", "gb"} {
		f.kill(t, id)
		h := f.awaitTerminal(t, id)[id]
		if s := h.last; s.GetState() != mesos.TaskState_TASK_KILLED || slices.Contains(h.states, mesos.TaskState_TASK_LOST) {
			t.Fatalf("%s went %v, last %v %q, want TASK_KILLED", id, h, s.GetReason(), s.GetMessage())
		}
	}
	f.stop()
	testsupport.Eventually(t, "the executor to exit after teardown", taskTimeout, func() bool { return len(processesOf(sandbox)) == 0 })
}

// TestRecoverExecutorReregistrationTimeout: a custom executor that does not
// re-subscribe after the agent's restart is destroyed and its task reported
// TASK_LOST (TASK_GONE for a partition-aware framework) with
// REASON_EXECUTOR_REREGISTRATION_TIMEOUT.
func TestRecoverExecutorReregistrationTimeout(t *testing.T) {
	for _, pa := range []bool{false, true} {
		name, want := "lost", mesos.TaskState_TASK_LOST
		if pa {
			name, want = "gone", mesos.TaskState_TASK_GONE
		}
		t.Run(name, func(t *testing.T) {
			prefix := rootTest(t)
			n := startNode(t, prefix, "linux", "--executor_reregistration_timeout", "500ms")
			f := ckptFramework(t, n.master, "recover-rereg-timeout", false, pa)
			ei := testExecutorInfo(t, "stalling", "TESTEXECUTOR_STALL_ON_DISCONNECT=1")
			f.launch(executorTask(t, "stuck", "sleep 1000", ei))
			f.running(t, "stuck")
			sandbox := (&cluster{workDir: n.workDir}).sandbox(t, "stalling")

			n.restartAgent(t)
			h := f.awaitTerminal(t, "stuck")["stuck"]
			if s := h.last; s.GetState() != want || s.GetReason() != mesos.TaskStatus_REASON_EXECUTOR_REREGISTRATION_TIMEOUT {
				t.Fatalf("stuck ended %v %v %q, want %v with REASON_EXECUTOR_REREGISTRATION_TIMEOUT", s.GetState(), s.GetReason(), s.GetMessage(), want)
			}
			testsupport.Eventually(t, "the executor and its task to be destroyed", taskTimeout, func() bool { return len(processesOf(sandbox)) == 0 })
		})
	}
}

// TestRecoverAfterReboot: a changed boot id means nothing of the last boot
// survives: the tasks are reported TASK_LOST (TASK_GONE when partition-
// aware) with REASON_AGENT_RESTARTED, whatever still runs is destroyed, the
// runtime directory is cleared, and the agent keeps its ID.
func TestRecoverAfterReboot(t *testing.T) {
	forEachLauncher(t, func(t *testing.T, launcher, prefix string) {
		n := startNode(t, prefix, launcher)
		id := n.agentID(t)
		f := ckptFramework(t, n.master, "recover-reboot", false, true)
		lost := ckptFramework(t, n.master, "recover-reboot-lost", false, false)
		f.launch(commandTask(t, "a", "sleep 1000"))
		lost.launch(commandTask(t, "b", "sleep 1000"))
		cidA, cidB := f.running(t, "a"), lost.running(t, "b")

		n.agent.kill9()
		n.setBootID(t, "00000000-0000-4000-8000-000000000042")
		n.startAgent(t)
		if got := n.agentID(t); got != id {
			t.Errorf("agent re-registered as %s after the reboot, want %s", got, id)
		}
		if s := f.awaitTerminal(t, "a")["a"].last; s.GetState() != mesos.TaskState_TASK_GONE || s.GetReason() != mesos.TaskStatus_REASON_AGENT_RESTARTED {
			t.Errorf("a ended %v %v %q, want TASK_GONE with REASON_AGENT_RESTARTED", s.GetState(), s.GetReason(), s.GetMessage())
		}
		if s := lost.awaitTerminal(t, "b")["b"].last; s.GetState() != mesos.TaskState_TASK_LOST || s.GetReason() != mesos.TaskStatus_REASON_AGENT_RESTARTED {
			t.Errorf("b ended %v %v %q, want TASK_LOST with REASON_AGENT_RESTARTED", s.GetState(), s.GetReason(), s.GetMessage())
		}
		if r := n.recovery(t).Recovery; r.Discarded == "" || r.Gone != 2 || r.Running != 0 {
			t.Errorf("recovery %+v, want both tasks discarded as gone", r)
		}
		for _, cid := range []string{cidA, cidB} {
			if p := processesOf(cid); len(p) != 0 {
				t.Errorf("container %s survived the reboot: %v", cid, p)
			}
		}
		if entries, _ := os.ReadDir(filepath.Join(n.runtimeDir(), "containers")); len(entries) != 0 {
			t.Errorf("runtime directory not cleared after the reboot: %d entries", len(entries))
		}
		// The agent goes on as usual.
		f.launch(commandTask(t, "c", "exit 0"))
		if s := f.awaitTerminal(t, "c")["c"].last; s.GetState() != mesos.TaskState_TASK_FINISHED {
			t.Errorf("a task after the reboot ended %v %q", s.GetState(), s.GetMessage())
		}
	})
}

// TestRecoverOrphans: what no checkpoint claims is destroyed at recovery —
// the task of a framework that does not checkpoint (reported TASK_LOST by
// the master, as in Mesos), a cgroup with a process under the launcher's
// root (linux), a runtime record of a live process (posix).
func TestRecoverOrphans(t *testing.T) {
	forEachLauncher(t, func(t *testing.T, launcher, prefix string) {
		n := startNode(t, prefix, launcher)
		plain := plainFramework(t, n.master, "recover-orphans-plain")
		plain.launch(commandTask(t, "plain", "sleep 1000"))
		cid := plain.running(t, "plain")

		n.agent.kill9()
		orphan := startOrphan(t, prefix)
		var orphanDir string
		switch launcher {
		case "linux":
			// Beside the live container, in the hierarchy the launcher
			// tracks it by: cgroup2 on v2 (below systemd's containers
			// scope where systemd is PID 1), the freezer one on v1.
			orphanDir = filepath.Join(filepath.Dir(trackingCgroup(t, cid)), prefix+"orphan")
			if err := os.MkdirAll(orphanDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(orphanDir, "cgroup.procs"), []byte(strconv.Itoa(orphan.Process.Pid)), 0o644); err != nil {
				t.Fatal(err)
			}
		case "posix":
			orphanDir = filepath.Join(n.runtimeDir(), "containers", prefix+"orphan")
			if err := os.MkdirAll(orphanDir, 0o755); err != nil {
				t.Fatal(err)
			}
			st, err := processStartTime(orphan.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(orphanDir, "pid"), fmt.Appendf(nil, "%d %d\n", orphan.Process.Pid, st), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		n.startAgent(t)

		if s := plain.awaitTerminal(t, "plain")["plain"].last; s.GetState() != mesos.TaskState_TASK_LOST || s.GetReason() != mesos.TaskStatus_REASON_AGENT_RESTARTED {
			t.Errorf("the non-checkpointing task ended %v %v %q, want TASK_LOST with REASON_AGENT_RESTARTED", s.GetState(), s.GetReason(), s.GetMessage())
		}
		testsupport.Eventually(t, "the non-checkpointing task's container to be destroyed", taskTimeout, func() bool { return len(processesOf(cid)) == 0 })
		testsupport.Eventually(t, "the orphan process to be killed", taskTimeout, func() bool { return orphanDone(orphan) })
		if _, err := os.Stat(orphanDir); !os.IsNotExist(err) {
			t.Errorf("orphan %s still there: %v", orphanDir, err)
		}
	})
}

// TestRecoverCorruptCheckpoint: a damaged executor record costs a strict
// agent that executor only (its task lost, the file named); damage to the
// node's records (a framework's) stops a strict agent with a message naming
// the file, and with --strict=false the agent skips what is damaged and
// recovers the rest.
func TestRecoverCorruptCheckpoint(t *testing.T) {
	prefix := rootTest(t)
	n := startNode(t, prefix, "linux")
	f := ckptFramework(t, n.master, "recover-corrupt", false, false)
	f.launch(commandTask(t, "good", "sleep 1000"), commandTask(t, "bad", "sleep 1000"))
	f.running(t, "good")
	f.running(t, "bad")
	id := n.agentID(t)
	// Stopped, not killed: the damage is the disk's, in a record the
	// checkpoint journal no longer holds (a kill -9 leaves the journal,
	// and its replay would repair the file; agent/checkpoint tests that).
	if err := n.agent.term(); err != nil {
		t.Fatal(err)
	}
	infos, _ := filepath.Glob(filepath.Join(n.workDir, "meta", "slaves", id, "frameworks", "*", "executors", "bad", "executor.info"))
	if len(infos) != 1 {
		t.Fatalf("executor.info of bad: %v", infos)
	}
	b, err := os.ReadFile(infos[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0xff
	if err := os.WriteFile(infos[0], b, 0o600); err != nil {
		t.Fatal(err)
	}

	// Strict (the default): one executor's damage is that executor's, not
	// the node's. The agent starts, good is re-attached, bad's container is
	// destroyed and bad is reported lost with the damaged file named.
	n.startAgent(t)
	if s := f.awaitTerminal(t, "bad")["bad"].last; s.GetState() != mesos.TaskState_TASK_LOST ||
		s.GetReason() != mesos.TaskStatus_REASON_EXECUTOR_TERMINATED || !strings.Contains(s.GetMessage(), infos[0]) {
		t.Errorf("bad ended %v %v %q, want TASK_LOST with REASON_EXECUTOR_TERMINATED naming %s", s.GetState(), s.GetReason(), s.GetMessage(), infos[0])
	}
	if st := n.taskStates(t); st["good"] != "TASK_RUNNING" {
		t.Errorf("strict recovery has tasks %v, want good running", st)
	}
	// Damage of the node's own records still stops a strict agent.
	if err := n.agent.term(); err != nil {
		t.Fatal(err)
	}
	fwInfos, _ := filepath.Glob(filepath.Join(n.workDir, "meta", "slaves", id, "frameworks", "*", "framework.info"))
	if len(fwInfos) != 1 {
		t.Fatalf("framework.info: %v", fwInfos)
	}
	good, err := os.ReadFile(fwInfos[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fwInfos[0], good[:len(good)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	n.starts++
	strict := startProc(t, n.bin, filepath.Join(n.dir, "agent-strict.log"), n.agentArgs...)
	<-strict.exited
	if strict.waitErr == nil || !strings.Contains(strict.tail(), fwInfos[0]) {
		t.Fatalf("strict agent exited with %v; want an error naming %s:\n%s", strict.waitErr, fwInfos[0], strict.tail())
	}
	// Non-strict: the damaged framework is skipped with all of it; good's
	// container is not claimed, destroyed as an orphan, and the master
	// reports the task lost.
	n.startAgent(t, "--strict=false")
	if st := n.taskStates(t); st["good"] != "" {
		t.Errorf("non-strict recovery has tasks %v, want the damaged framework's skipped", st)
	}
	if s := f.awaitTerminal(t, "good")["good"].last; s.GetState() != mesos.TaskState_TASK_LOST {
		t.Errorf("good ended %v %v %q, want TASK_LOST", s.GetState(), s.GetReason(), s.GetMessage())
	}
}

// TestRecoverCleanup: --recover=cleanup destroys what the checkpoints
// name at start-up and reports the tasks gone, and a stopping agent in that
// mode destroys every container; a plain SIGTERM leaves checkpointed tasks
// running for the next agent.
func TestRecoverCleanup(t *testing.T) {
	prefix := rootTest(t)
	n := startNode(t, prefix, "linux")
	f := ckptFramework(t, n.master, "recover-cleanup", false, false)
	f.launch(commandTask(t, "first", "sleep 1000"))
	cid := f.running(t, "first")

	// SIGTERM: the checkpointed task keeps running, and is recovered.
	if err := n.agent.term(); err != nil {
		t.Fatal(err)
	}
	if len(processesOf(cid)) == 0 {
		t.Fatal("a stopping agent destroyed a checkpointed container")
	}
	n.startAgent(t, "--recover=cleanup")
	if s := f.awaitTerminal(t, "first")["first"].last; s.GetState() != mesos.TaskState_TASK_LOST || s.GetReason() != mesos.TaskStatus_REASON_AGENT_RESTARTED {
		t.Errorf("first ended %v %v %q, want TASK_LOST with REASON_AGENT_RESTARTED", s.GetState(), s.GetReason(), s.GetMessage())
	}
	testsupport.Eventually(t, "the first container to be destroyed", taskTimeout, func() bool { return len(processesOf(cid)) == 0 })

	// In cleanup mode a stopping agent destroys its containers.
	f.launch(commandTask(t, "second", "sleep 1000"))
	cid2 := f.running(t, "second")
	if err := n.agent.term(); err != nil {
		t.Fatal(err)
	}
	// Killed by then; under emulation their exit may still be under way.
	// A container left running keeps its sleep for 1000 s.
	testsupport.Eventually(t, "the second container gone with the cleanup agent", taskTimeout, func() bool { return len(processesOf(cid2)) == 0 })
}

// startOrphan starts a process that looks like something Corral left: its
// environment carries prefix, so the leak check would see it.
func startOrphan(t *testing.T, prefix string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "1000")
	cmd.Env = append(os.Environ(), "CORRAL_TEST_ORPHAN="+prefix)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	orphans.Store(cmd, done)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	return cmd
}

var orphans sync.Map // *exec.Cmd → chan struct{} closed when reaped

func orphanDone(cmd *exec.Cmd) bool {
	v, _ := orphans.Load(cmd)
	select {
	case <-v.(chan struct{}):
		return true
	default:
		return false
	}
}

func processStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return strconv.ParseUint(f[19], 10, 64)
}

func hasCommand(procs []string, cmd string) bool {
	for _, p := range procs {
		if _, c, _ := strings.Cut(p, ": "); c == cmd {
			return true
		}
	}
	return false
}

// taskSandbox is the sandbox of a command task (its executor's latest run).
func (n *node) taskSandbox(tb testing.TB, taskID string) string {
	tb.Helper()
	return (&cluster{workDir: n.workDir}).sandbox(tb, taskID)
}

// trackingCgroup is the cgroup directory the linux launcher tracks a
// container by, read from one of its processes.
func trackingCgroup(t *testing.T, cid string) string {
	t.Helper()
	procs := processesOf(cid)
	if len(procs) == 0 {
		t.Fatalf("container %s has no process", cid)
	}
	pid, _, _ := strings.Cut(procs[0], ":")
	b, err := os.ReadFile(filepath.Join("/proc", pid, "cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if fileExists("/sys/fs/cgroup/cgroup.controllers") && parts[0] == "0" {
			return filepath.Join("/sys/fs/cgroup", parts[2])
		}
		if slices.Contains(strings.Split(parts[1], ","), "freezer") {
			return filepath.Join("/sys/fs/cgroup/freezer", parts[2])
		}
	}
	t.Fatalf("no tracking cgroup for container %s in:\n%s", cid, b)
	return ""
}

// awaitResubscribed waits until the test executor in sandbox says it
// re-subscribed to the restarted agent.
func awaitResubscribed(t *testing.T, sandbox string) {
	t.Helper()
	testsupport.Eventually(t, "the executor to re-subscribe", taskTimeout, func() bool {
		b, _ := os.ReadFile(filepath.Join(sandbox, "stderr"))
		return strings.Contains(string(b), "re-registered")
	})
}
