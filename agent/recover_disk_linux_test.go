package agent

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/agent/checkpoint"
	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/testsupport"

	_ "github.com/corral/corral/launcher/posix"
)

// A real master and agent (posix launcher) and a checkpointing,
// partition-aware framework: a running task survives an agent restart on a
// work_dir whose file system a file has filled to its last block, and is
// then killed on that full disk like any other.
func TestAgentRestartsOnFullDisk(t *testing.T) {
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	mnt := testsupport.LoopExt4(t, prefix, 64)
	killLeftovers(t, prefix)
	cfg := diskAgentConfig(t, prefix, filepath.Join(mnt, "work"))

	a, stop := startDiskAgent(t, cfg)
	f := startCkptFramework(t, cfg.Master)
	f.launchTasks(diskTask("sleeper", "sleep 1000"))
	cid := f.running(t, "sleeper")
	if err := stop(); err != nil {
		t.Fatalf("first agent: %v", err)
	}

	filler := filepath.Join(mnt, "filler")
	testsupport.FillDisk(t, filler)
	a, stop = startDiskAgent(t, cfg) // fails the test if recovery fails
	a.mu.Lock()
	rec := a.recovery
	a.mu.Unlock()
	if rec.running != 1 || rec.inconsistencies != 0 || rec.discarded != "" {
		t.Fatalf("recovery on a full disk: %+v, want the sleeper re-attached", rec)
	}
	if len(procsWith(cid)) == 0 {
		t.Fatal("the sleeper's processes are gone")
	}
	testsupport.RequireFull(t, mnt)

	// The kill record and the task's end are checkpointed on the full disk
	// (from the store's reserve).
	f.kill(t, "sleeper")
	if st := f.await(t, "sleeper", mesos.TaskState.IsTerminal); st.GetState() != mesos.TaskState_TASK_KILLED {
		t.Fatalf("sleeper ended %v %v %q, want TASK_KILLED", st.GetState(), st.GetReason(), st.GetMessage())
	}
	waitUntil(t, "the killed task's processes to go", func() bool { return len(procsWith(cid)) == 0 })
	waitUntil(t, "the finished framework's checkpoints to go", func() bool {
		names, _ := os.ReadDir(filepath.Join(cfg.WorkDir, "meta", "slaves", a.ID(), "frameworks"))
		return len(names) == 0
	})
	if err := stop(); err != nil {
		t.Fatalf("agent on a full disk: %v", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
}

// One executor's torn task record does not stop a strict agent: the other
// executors' tasks are re-attached, the damaged executor's container is
// destroyed, and its task is reported TASK_GONE with
// REASON_EXECUTOR_TERMINATED and a message naming the damaged file; the
// recovery stats and /metrics/snapshot count it; its checkpoints go once
// that is acknowledged.
func TestStrictRecoveryTornTaskRecord(t *testing.T) {
	testsupport.RequireRoot(t)
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	killLeftovers(t, prefix)
	cfg := diskAgentConfig(t, prefix, filepath.Join(t.TempDir(), prefix+"work"))

	a, stop := startDiskAgent(t, cfg)
	f := startCkptFramework(t, cfg.Master)
	f.launchTasks(diskTask("good", "sleep 1000"), diskTask("bad", "sleep 1000"), diskTask("other", "sleep 1000"))
	cids := map[string]string{}
	for _, id := range []string{"good", "bad", "other"} {
		cids[id] = f.running(t, id)
	}
	agentID := a.ID()
	if err := stop(); err != nil {
		t.Fatalf("first agent: %v", err)
	}

	// A command task's executor has the task's ID; its run is its container.
	exDir := filepath.Join(cfg.WorkDir, "meta", "slaves", agentID, "frameworks", f.frameworkID(), "executors", "bad")
	record := filepath.Join(exDir, "runs", cids["bad"], "tasks", "bad", "task.info")
	b, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(record, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}

	a, stop = startDiskAgent(t, cfg) // strict: the default
	st := f.await(t, "bad", mesos.TaskState.IsTerminal)
	if st.GetState() != mesos.TaskState_TASK_GONE || st.GetReason() != mesos.TaskStatus_REASON_EXECUTOR_TERMINATED ||
		!strings.Contains(st.GetMessage(), record) {
		t.Errorf("bad ended %v %v %q; want TASK_GONE, REASON_EXECUTOR_TERMINATED and a message naming %s", st.GetState(), st.GetReason(), st.GetMessage(), record)
	}
	waitUntil(t, "the damaged executor's processes to go", func() bool { return len(procsWith(cids["bad"])) == 0 })
	a.mu.Lock()
	rec := a.recovery
	states := map[string]mesos.TaskState{}
	for _, fw := range a.frameworks {
		for _, ex := range fw.executors {
			for id, t := range ex.tasks {
				states[id] = t.state
			}
		}
	}
	a.mu.Unlock()
	if rec.running != 2 || rec.unrecoverable != 1 || rec.inconsistencies != 1 || rec.gone != 1 {
		t.Errorf("recovery %+v; want 2 running, 1 executor unrecoverable, 1 inconsistency, 1 task gone", rec)
	}
	if states["good"] != mesos.TaskState_TASK_RUNNING || states["other"] != mesos.TaskState_TASK_RUNNING {
		t.Errorf("live tasks after recovery %v, want good and other running", states)
	}
	for _, id := range []string{"good", "other"} {
		if len(procsWith(cids[id])) == 0 {
			t.Errorf("%s's processes are gone", id)
		}
	}
	if m := getMetrics(t, a); m["slave/recovery_errors"] != 1 {
		t.Errorf("slave/recovery_errors %v, want 1", m["slave/recovery_errors"])
	}
	waitUntil(t, "the damaged executor's checkpoints to go once its task's end is acknowledged", func() bool {
		_, err := os.Stat(exDir)
		return errors.Is(err, os.ErrNotExist)
	})

	for _, id := range []string{"good", "other"} {
		f.kill(t, id)
		if st := f.await(t, id, mesos.TaskState.IsTerminal); st.GetState() != mesos.TaskState_TASK_KILLED {
			t.Errorf("%s ended %v %q, want TASK_KILLED", id, st.GetState(), st.GetMessage())
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("second agent: %v", err)
	}
}

// On a full disk a launch that cannot be checkpointed is not launched and
// does not stop the agent: nothing of it is left on disk, its task ends
// TASK_FAILED with REASON_CONTAINER_LAUNCH_FAILED and a message saying why,
// and its executor ends. (runTasks hands the launch's checkpoint error to
// launchNotRecorded; this drives the two steps directly.)
func TestLaunchNotRecordedOnFullDisk(t *testing.T) {
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	mnt := testsupport.LoopExt4(t, prefix, 32)
	cfg := diskAgentConfig(t, prefix, filepath.Join(mnt, "work"))
	cfg.Master = "127.0.0.1:1" // never reached: nothing here needs it
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.cz.Close()
	defer a.ln.Close()
	defer a.store.Close()
	var stopped []error
	a.fail = func(err error) { stopped = append(stopped, err) }
	a.agentID = "A-1"
	fwInfo := &mesos.FrameworkInfo{User: proto.String("root"), Name: proto.String("full"), Id: &mesos.FrameworkID{Value: proto.String("fw-1")},
		Checkpoint: proto.Bool(true)}
	if err := a.store.WriteAgentInfo(context.Background(), a.agentInfoLocked()); err != nil {
		t.Fatal(err)
	}
	testsupport.FillDisk(t, filepath.Join(mnt, "filler"))

	ti := diskTask("t-1", "true")
	fw := &framework{id: "fw-1", info: fwInfo, executors: map[string]*executor{}, tasks: map[string]*task{}}
	ex := &executor{fw: fw, id: "t-1", info: commandExecutorInfo(fwInfo, ti), agentID: a.agentID,
		containerID: prefix + "c", tasks: map[string]*task{}, launched: time.Now()}
	ex.runner = newRunner(a, ex, checkpoint.RunInfo_COMMAND)
	ex.directory = a.sandboxDir(a.agentID, fw.id, ex.id, ex.containerID)
	tk := &task{ex: ex, info: ti, state: mesos.TaskState_TASK_STAGING, containerID: ex.containerID, sandbox: ex.directory}
	ex.tasks["t-1"], fw.tasks["t-1"], fw.executors["t-1"] = tk, tk, ex
	a.frameworks["fw-1"] = fw

	err = a.checkpointLaunch(fw, ex, []*task{tk})
	if !errors.Is(err, checkpoint.ErrNoSpace) {
		t.Fatalf("checkpointing a launch on a full disk: %v, want ErrNoSpace", err)
	}
	a.launchNotRecorded(fw, ex, []*task{tk}, err)
	if len(stopped) != 0 {
		t.Fatalf("the agent was stopped: %v", stopped)
	}
	pending := a.updates.Pending("fw-1", "t-1")
	if len(pending) != 1 {
		t.Fatalf("%d updates queued for the task, want its failure", len(pending))
	}
	s := pending[0].GetStatus()
	if s.GetState() != mesos.TaskState_TASK_FAILED || s.GetReason() != mesos.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED ||
		!strings.Contains(s.GetMessage(), "no space") {
		t.Errorf("task's update %v %v %q, want TASK_FAILED, REASON_CONTAINER_LAUNCH_FAILED and why", s.GetState(), s.GetReason(), s.GetMessage())
	}
	a.mu.Lock()
	ended, errs := ex.ended, a.counters.containerLaunchErrors.Load()
	a.mu.Unlock()
	if !ended || errs != 1 {
		t.Errorf("executor ended %v, launch errors %d; want true, 1", ended, errs)
	}
	exDir := filepath.Join(cfg.WorkDir, "meta", "slaves", a.agentID, "frameworks", "fw-1", "executors", "t-1")
	if _, err := os.Stat(filepath.Join(exDir, "runs", ex.containerID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the failed launch's run is recorded: %v", err)
	}
	// Its acknowledgement has nothing to record and is no error.
	a.updates.send = func(*cluster.StatusUpdate) {}
	a.updates.Connected(true)
	if !a.updates.Acknowledge("fw-1", "t-1", s.GetUuid()) {
		t.Error("the failure's acknowledgement was not taken")
	}
	if len(stopped) != 0 {
		t.Fatalf("the agent was stopped: %v", stopped)
	}
	// What is on disk recovers cleanly.
	removalsDone(t, a)
	st, err := a.store.Recover(context.Background(), true)
	if err != nil || len(st.Inconsistencies) != 0 {
		t.Fatalf("recovery after the failed launch: %v %v", err, st.Inconsistencies)
	}
}

func diskAgentConfig(t *testing.T, prefix, workDir string) Config {
	t.Helper()
	testsupport.RequireRoot(t)
	return Config{
		Master: startTestMaster(t), WorkDir: workDir, IP: "127.0.0.1", Resources: "cpus:2;mem:1024;disk:1024",
		Launcher: "posix", CgroupsRoot: testsupport.CgroupsRoot(t, prefix), LauncherDir: testsupport.BinDir(t),
		Log: discardLog(), RegistrationBackoffFactor: 50 * time.Millisecond, GCDelay: time.Hour, DiskWatchInterval: time.Hour,
	}
}

// startDiskAgent runs an agent until stop (or the test's end), which
// returns what Run did. It waits for the agent's registration; an agent
// that stops before is a failure.
func startDiskAgent(t *testing.T, cfg Config) (*Agent, func() error) {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(60 * time.Second):
				runErr = errors.New("agent did not stop")
			}
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-done:
			once.Do(func() { runErr = err })
			t.Fatalf("agent stopped before registering: %v", err)
		default:
		}
		a.mu.Lock()
		up := a.connected
		a.mu.Unlock()
		if up {
			return a, stop
		}
		if time.Now().After(deadline) {
			_ = stop()
			t.Fatal("agent did not register")
		}
	}
}

func diskTask(id, command string) *mesos.TaskInfo {
	res, _ := resources.Parse("cpus:0.1;mem:32")
	return &mesos.TaskInfo{
		Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)}, Resources: res,
		Command: &mesos.CommandInfo{Value: proto.String(command), Shell: proto.Bool(true)},
	}
}

// startCkptFramework starts a checkpointing, partition-aware framework.
func startCkptFramework(t *testing.T, masterAddr string) *testFramework {
	return startTestFramework(t, masterAddr, &mesos.FrameworkInfo{
		User: proto.String("root"), Name: proto.String("recover-disk-test"), Checkpoint: proto.Bool(true),
		FailoverTimeout: proto.Float64(3600),
		Capabilities:    []*mesos.FrameworkInfo_Capability{{Type: mesos.FrameworkInfo_Capability_PARTITION_AWARE.Enum()}},
	})
}

// running waits for the task to run and returns its container ID.
func (f *testFramework) running(t *testing.T, id string) string {
	t.Helper()
	st := f.await(t, id, func(s mesos.TaskState) bool { return s == mesos.TaskState_TASK_RUNNING || s.IsTerminal() })
	if st.GetState() != mesos.TaskState_TASK_RUNNING {
		t.Fatalf("%s went %v %v %q, want TASK_RUNNING", id, st.GetState(), st.GetReason(), st.GetMessage())
	}
	cid := st.GetContainerStatus().GetContainerId().GetValue()
	if cid == "" {
		t.Fatalf("%s's TASK_RUNNING names no container", id)
	}
	return cid
}

// procsWith lists the processes whose environment holds s (a container's
// sandbox path and MESOS_CONTAINER_ID name it).
func procsWith(s string) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ")); err == nil && bytes.Contains(b, []byte(s)) {
			out = append(out, pid)
		}
	}
	return out
}

// killLeftovers registers a cleanup, to run after the agents' (register it
// first), that kills any process a failed test left with prefix in its
// environment, so that the test's mounts can go; it reports them. What a
// failed agent left running may start more for a moment.
func killLeftovers(t *testing.T, prefix string) {
	t.Cleanup(func() {
		quiet := 0
		for deadline := time.Now().Add(10 * time.Second); quiet < 10 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			procs := procsWith(prefix)
			if len(procs) == 0 {
				quiet++
				continue
			}
			quiet = 0
			for _, pid := range procs {
				t.Errorf("killing process %d left behind", pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
}
