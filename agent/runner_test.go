package agent

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/agent/checkpoint"
	"github.com/corral/corral/agent/gc"
	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/httpapi"
	executorapi "github.com/corral/corral/api/v1/executor"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/ids"
	"github.com/corral/corral/internal/testsupport"
)

// Unit tests of the agent's executor handling: the runners drive a fake
// containerizer (fake_containers_test.go), the master is a recorder. They
// need no root, no cgroups and no binaries.

// testAgent is an agent wired to a fake containerizer: its status updates
// are caught (and acknowledged, as a scheduler would, unless manualAck)
// and its other calls to the master recorded.
type testAgent struct {
	*Agent
	cz        *fakeContainers
	updates   chan *cluster.StatusUpdate
	manualAck atomic.Bool

	mu    sync.Mutex
	calls []*cluster.Call
}

func newTestAgent(t *testing.T, manualAck bool) *testAgent {
	t.Helper()
	return newTestAgentIn(t, t.TempDir(), newFakeContainers(), manualAck)
}

// newTestAgentIn is an agent on work_dir dir (a restarted agent finds what
// the last one recorded there) with containers cz.
func newTestAgentIn(t testing.TB, dir string, cz *fakeContainers, manualAck bool) *testAgent {
	t.Helper()
	out := &testLog{w: t.Output()}
	t.Cleanup(out.close)
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := Config{Master: "127.0.0.1:1", WorkDir: dir, Log: log, Launcher: "posix", LauncherDir: dir}
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	boot := dir + "/boot_id"
	if err := os.WriteFile(boot, []byte("test-boot\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	store, err := checkpoint.Open(cfg.WorkDir, checkpoint.Options{Log: log, BootIDPath: boot})
	if err != nil {
		t.Fatal(err)
	}
	collector, err := gc.New(cfg.gcConfig())
	if err != nil {
		t.Fatal(err)
	}
	ta := &testAgent{cz: cz, updates: make(chan *cluster.StatusUpdate, 1000)}
	ta.manualAck.Store(manualAck)
	master := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		call := &cluster.Call{}
		if _, ok := httpapi.DecodeCall(w, r, call); !ok {
			return
		}
		ta.mu.Lock()
		ta.calls = append(ta.calls, call)
		ta.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(master.Close)
	a := &Agent{
		cfg: cfg, log: log, cz: ta.cz, start: time.Now(), frameworks: map[string]*framework{}, removing: map[string]chan struct{}{}, store: store,
		master:    &httpapi.Client{URL: master.URL, Codec: codec.Protobuf, HTTP: master.Client()},
		sendSlots: make(chan struct{}, maxMasterCalls), gc: collector,
		agentID: "agent-1", bootID: "test-boot",
	}
	ta.Agent = a
	// Work handed off (checkpoint removals) ends before the test's
	// directories are removed: cleanups run last registered first.
	t.Cleanup(a.background.Wait)
	a.updates = newUpdateManager(log, time.Hour, time.Hour, ta.forward, a.updateAcknowledged)
	a.updates.checkpointAck = a.checkpointAck
	a.updates.Connected(true)
	if err := store.WriteAgentInfo(t.Context(), a.agentInfoLocked()); err != nil {
		t.Fatal(err)
	}
	return ta
}

// testLog is the test's output until the test ends: what the agent's
// goroutines log after that (a call to the master that failed as the
// test's master went away) is dropped.
type testLog struct {
	mu   sync.Mutex
	w    io.Writer
	done bool
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return len(p), nil
	}
	return l.w.Write(p)
}

func (l *testLog) close() {
	l.mu.Lock()
	l.done = true
	l.mu.Unlock()
}

func (ta *testAgent) forward(u *cluster.StatusUpdate) {
	ta.updates <- u
	if !ta.manualAck.Load() {
		ta.ack(u)
	}
}

func (ta *testAgent) ack(u *cluster.StatusUpdate) {
	ta.updates_().Acknowledge(u.GetFrameworkId().GetValue(), u.GetStatus().GetTaskId().GetValue(), u.GetStatus().GetUuid())
}

func (ta *testAgent) updates_() *updateManager { return ta.Agent.updates }

// next is the next update the master got.
func (ta *testAgent) next(t testing.TB) *cluster.StatusUpdate {
	t.Helper()
	select {
	case u := <-ta.updates:
		return u
	case <-time.After(10 * time.Second):
		t.Fatal("no status update")
		return nil
	}
}

// expect reads the next update and checks its task, state and source.
func (ta *testAgent) expect(t *testing.T, taskID string, state mesos.TaskState, src mesos.TaskStatus_Source) *cluster.StatusUpdate {
	t.Helper()
	u := ta.next(t)
	s := u.GetStatus()
	if s.GetTaskId().GetValue() != taskID || s.GetState() != state || s.GetSource() != src {
		t.Fatalf("update %s %s %s (reason %s: %q), want %s %s %s", s.GetTaskId().GetValue(), s.GetState(), s.GetSource(),
			s.GetReason(), s.GetMessage(), taskID, state, src)
	}
	return u
}

// launched waits for the fake containerizer's next launch.
func (ta *testAgent) launched(t *testing.T) string {
	t.Helper()
	select {
	case id := <-ta.cz.launches:
		return id
	case <-time.After(10 * time.Second):
		t.Fatal("no container launched")
		return ""
	}
}

func (ta *testAgent) masterCalls(typ cluster.Call_Type) []*cluster.Call {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	var out []*cluster.Call
	for _, c := range ta.calls {
		if c.GetType() == typ {
			out = append(out, c)
		}
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testsupport.Eventually(t, what, 10*time.Second, cond)
}

func fakeFramework(checkpointing bool, caps ...mesos.FrameworkInfo_Capability_Type) *mesos.FrameworkInfo {
	fw := &mesos.FrameworkInfo{
		Id: &mesos.FrameworkID{Value: proto.String("fw-1")}, Name: proto.String("test"), User: proto.String("nobody"),
		Checkpoint: proto.Bool(checkpointing),
	}
	for _, c := range caps {
		fw.Capabilities = append(fw.Capabilities, &mesos.FrameworkInfo_Capability{Type: c.Enum()})
	}
	return fw
}

func fakeTask(id, cmd string, mem float64) *mesos.TaskInfo {
	return &mesos.TaskInfo{
		Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)},
		AgentId: &mesos.AgentID{Value: proto.String("agent-1")},
		Command: &mesos.CommandInfo{Shell: proto.Bool(true), Value: proto.String(cmd)},
		Resources: []*mesos.Resource{
			{Name: proto.String("cpus"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(0.1)}},
			{Name: proto.String("mem"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(mem)}},
		},
	}
}

// waitLaunched waits until the runner took the task's container as
// launched (RUNNING goes out just before): a kill then signals it.
func (ta *testAgent) waitLaunched(t *testing.T, fwID, taskID string) {
	t.Helper()
	eventually(t, "the task's launch", func() bool {
		ta.Agent.mu.Lock()
		defer ta.Agent.mu.Unlock()
		tk := ta.findTaskLocked(fwID, taskID)
		return tk != nil && tk.launched
	})
}

// removalsDone waits until no checkpoint removal is under way.
func removalsDone(t testing.TB, a *Agent) {
	t.Helper()
	testsupport.Eventually(t, "the checkpoint removals", 10*time.Second, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.removing) == 0
	})
}

func (ta *testAgent) frameworkGone(fwID string) bool {
	ta.Agent.mu.Lock()
	defer ta.Agent.mu.Unlock()
	// Its checkpoints' removal is done too.
	return ta.frameworks[fwID] == nil && ta.removing[fwID] == nil
}

// A command task: STARTING and RUNNING from the executor, its exit
// FINISHED, no executor ID on its updates (the command executor is the
// agent's), and once its end is acknowledged nothing is left of it; the
// master is not told of the command executor's exit.
func TestRunnerCommandTaskLifecycle(t *testing.T) {
	for _, ckpt := range []bool{false, true} {
		ta := newTestAgent(t, false)
		ta.runTasks(fakeFramework(ckpt), nil, []*mesos.TaskInfo{fakeTask("t1", "true", 32)}, false)
		ta.expect(t, "t1", mesos.TaskState_TASK_STARTING, fromExecutor)
		cid := ta.launched(t)
		u := ta.expect(t, "t1", mesos.TaskState_TASK_RUNNING, fromExecutor)
		if u.ExecutorId != nil || u.GetStatus().GetContainerStatus().GetContainerId().GetValue() != cid {
			t.Fatalf("RUNNING of a command task: executor %v, container %v; want none, %s", u.ExecutorId, u.GetStatus().GetContainerStatus(), cid)
		}
		if c := ta.cz.get(cid); c.cfg.Argv[2] != "true" || c.cfg.Resources.MemBytes != 32<<20 || !slices.Contains(c.cfg.Env, "MESOS_TASK_ID=t1") {
			t.Fatalf("container config %+v", c.cfg)
		}
		ta.cz.exit(cid, 0)
		ta.expect(t, "t1", mesos.TaskState_TASK_FINISHED, fromExecutor)
		eventually(t, "the framework to be forgotten", func() bool { return ta.frameworkGone("fw-1") })
		if !slices.Contains(ta.cz.forgotten, cid) {
			t.Fatalf("container %s's record not forgotten: %v", cid, ta.cz.forgotten)
		}
		if n := len(ta.masterCalls(cluster.Call_EXECUTOR_EXITED)); n != 0 {
			t.Fatalf("%d EXECUTOR_EXITED for a command executor", n)
		}
		if ckpt {
			st, err := ta.store.Recover(t.Context(), true)
			if err != nil || len(st.Frameworks) != 0 {
				t.Fatalf("checkpoints left after the acknowledged end: %v %v", st.Frameworks, err)
			}
		}
	}
}

// A failed exit is TASK_FAILED from the executor; a launch failure is the
// agent's TASK_FAILED with REASON_CONTAINER_LAUNCH_FAILED.
func TestRunnerCommandTaskFailures(t *testing.T) {
	ta := newTestAgent(t, false)
	ta.runTasks(fakeFramework(false), nil, []*mesos.TaskInfo{fakeTask("t1", "false", 32)}, false)
	ta.expect(t, "t1", mesos.TaskState_TASK_STARTING, fromExecutor)
	cid := ta.launched(t)
	ta.expect(t, "t1", mesos.TaskState_TASK_RUNNING, fromExecutor)
	ta.cz.exit(cid, 1)
	if u := ta.expect(t, "t1", mesos.TaskState_TASK_FAILED, fromExecutor); u.GetStatus().GetReason() != mesos.TaskStatus_REASON_COMMAND_EXECUTOR_FAILED {
		t.Fatalf("reason %s", u.GetStatus().GetReason())
	}

	ta.cz.mu.Lock()
	ta.cz.launchErr = syscall.EPERM
	ta.cz.mu.Unlock()
	ta.runTasks(fakeFramework(false), nil, []*mesos.TaskInfo{fakeTask("t2", "true", 32)}, false)
	ta.expect(t, "t2", mesos.TaskState_TASK_STARTING, fromExecutor)
	if u := ta.expect(t, "t2", mesos.TaskState_TASK_FAILED, fromAgent); u.GetStatus().GetReason() != mesos.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED {
		t.Fatalf("reason %s", u.GetStatus().GetReason())
	}
	eventually(t, "the framework to be forgotten", func() bool { return ta.frameworkGone("fw-1") })
}

// A kill: TASK_KILLING (for frameworks that take it), SIGTERM, then
// TASK_KILLED; with a task that ignores SIGTERM the grace period ends in
// a destroy.
func TestRunnerCommandTaskKill(t *testing.T) {
	ta := newTestAgent(t, false)
	fw := fakeFramework(true, mesos.FrameworkInfo_Capability_TASK_KILLING_STATE)
	ta.runTasks(fw, nil, []*mesos.TaskInfo{fakeTask("t1", "sleep 100", 32)}, false)
	ta.expect(t, "t1", mesos.TaskState_TASK_STARTING, fromExecutor)
	cid := ta.launched(t)
	ta.expect(t, "t1", mesos.TaskState_TASK_RUNNING, fromExecutor)
	ta.waitLaunched(t, "fw-1", "t1")
	ta.killTask("fw-1", "t1", nil)
	ta.expect(t, "t1", mesos.TaskState_TASK_KILLING, fromExecutor)
	ta.expect(t, "t1", mesos.TaskState_TASK_KILLED, fromExecutor)
	if c := ta.cz.get(cid); c != nil && !slices.Equal(c.signals, []syscall.Signal{syscall.SIGTERM}) {
		t.Fatalf("signals %v", c.signals)
	}

	ta.cz.mu.Lock()
	ta.cz.ignoreTERM = true
	ta.cz.mu.Unlock()
	ti := fakeTask("t2", "trap '' TERM; sleep 100", 32)
	ti.KillPolicy = &mesos.KillPolicy{GracePeriod: &mesos.DurationInfo{Nanoseconds: proto.Int64(int64(50 * time.Millisecond))}}
	ta.runTasks(fakeFramework(false), nil, []*mesos.TaskInfo{ti}, false)
	ta.expect(t, "t2", mesos.TaskState_TASK_STARTING, fromExecutor)
	cid = ta.launched(t)
	ta.expect(t, "t2", mesos.TaskState_TASK_RUNNING, fromExecutor)
	ta.waitLaunched(t, "fw-1", "t2")
	ta.killTask("fw-1", "t2", nil)
	ta.expect(t, "t2", mesos.TaskState_TASK_KILLED, fromExecutor)
	c := ta.cz.get(cid)
	if c != nil && (c.term == nil || !c.term.Destroyed) {
		t.Fatalf("task that ignores SIGTERM not destroyed: %+v", c.term)
	}
}

// A kill before the launch: the task never starts.
func TestRunnerKillBeforeLaunch(t *testing.T) {
	ta := newTestAgent(t, false)
	ta.runTasks(fakeFramework(false), nil, []*mesos.TaskInfo{fakeTask("t1", "true", 32)}, false)
	// Racing the launch: either it is killed before it starts or after.
	ta.killTask("fw-1", "t1", nil)
	var states []mesos.TaskState
	for {
		u := ta.next(t)
		states = append(states, u.GetStatus().GetState())
		if u.GetStatus().GetState().IsTerminal() {
			if u.GetStatus().GetState() != mesos.TaskState_TASK_KILLED {
				t.Fatalf("states %v", states)
			}
			break
		}
	}
}

// The default executor: each task of a group in its own container and
// sandbox; a task that fails takes its group down (its siblings are
// killed), the executor's updates carry its ID and the master is told of
// its exit.
func TestRunnerDefaultExecutorGroup(t *testing.T) {
	ta := newTestAgent(t, false)
	exInfo := &mesos.ExecutorInfo{
		Type:       mesos.ExecutorInfo_DEFAULT.Enum(),
		ExecutorId: &mesos.ExecutorID{Value: proto.String("default-1")},
	}
	ta.runTasks(fakeFramework(true), exInfo, []*mesos.TaskInfo{fakeTask("a", "sleep 100", 32), fakeTask("b", "false", 32)}, true)
	cids := map[string]string{}
	running := 0
	for running < 2 {
		u := ta.next(t)
		if u.GetExecutorId().GetValue() != "default-1" {
			t.Fatalf("update without the executor's ID: %v", u)
		}
		if u.GetStatus().GetState() == mesos.TaskState_TASK_RUNNING {
			running++
			cids[u.GetStatus().GetTaskId().GetValue()] = u.GetStatus().GetContainerStatus().GetContainerId().GetValue()
		}
	}
	if cids["a"] == cids["b"] || cids["a"] == "" {
		t.Fatalf("containers %v", cids)
	}
	if sa, sb := ta.cz.get(cids["a"]).cfg.Sandbox, ta.cz.get(cids["b"]).cfg.Sandbox; sa == sb {
		t.Fatalf("one sandbox for two tasks: %s", sa)
	}
	ta.cz.exit(cids["b"], 1)
	ta.expect(t, "b", mesos.TaskState_TASK_FAILED, fromExecutor)
	ta.expect(t, "a", mesos.TaskState_TASK_KILLED, fromExecutor)
	eventually(t, "EXECUTOR_EXITED", func() bool { return len(ta.masterCalls(cluster.Call_EXECUTOR_EXITED)) == 1 })
	eventually(t, "the framework to be forgotten", func() bool { return ta.frameworkGone("fw-1") })
}

// Acknowledgements: a terminal task stays (and is reported to the master
// on re-registration) until its terminal update is acknowledged; an
// acknowledgement out of order is ignored.
func TestRunnerAcknowledgement(t *testing.T) {
	ta := newTestAgent(t, true)
	ta.runTasks(fakeFramework(true), nil, []*mesos.TaskInfo{fakeTask("t1", "true", 32)}, false)
	starting := ta.expect(t, "t1", mesos.TaskState_TASK_STARTING, fromExecutor)
	cid := ta.launched(t)
	ta.cz.exit(cid, 0)
	ta.ack(starting)
	running := ta.expect(t, "t1", mesos.TaskState_TASK_RUNNING, fromExecutor)
	eventually(t, "the end", func() bool { return len(ta.updates_().Pending("fw-1", "t1")) == 2 })
	finished := ta.updates_().Pending("fw-1", "t1")[1]
	if ta.updates_().Acknowledge("fw-1", "t1", finished.GetStatus().GetUuid()) {
		t.Fatal("acknowledgement of an update that is not the head taken")
	}
	call := ta.subscribeCall()
	if n := len(call.GetSubscribe().GetTasks()); n != 1 {
		t.Fatalf("%d tasks reported before the end is acknowledged", n)
	}
	ta.ack(running)
	ta.expect(t, "t1", mesos.TaskState_TASK_FINISHED, fromExecutor)
	if ta.frameworkGone("fw-1") {
		t.Fatal("task forgotten before its end is acknowledged")
	}
	ta.ack(finished)
	eventually(t, "the framework to be forgotten", func() bool { return ta.frameworkGone("fw-1") })
	if n := len(ta.subscribeCall().GetSubscribe().GetTasks()); n != 0 {
		t.Fatalf("%d tasks reported after the end is acknowledged", n)
	}
}

func fakeHTTPExecutor(id string, mem float64) *mesos.ExecutorInfo {
	return &mesos.ExecutorInfo{
		Type:       mesos.ExecutorInfo_CUSTOM.Enum(),
		ExecutorId: &mesos.ExecutorID{Value: proto.String(id)},
		Command:    &mesos.CommandInfo{Shell: proto.Bool(true), Value: proto.String("my-executor")},
		Resources: []*mesos.Resource{
			{Name: proto.String("mem"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(mem)}},
		},
	}
}

// A custom executor: its container is launched with the executor's and its
// task's resources and the MESOS_* environment, grows (never shrinks) with
// more tasks, and is reported to the master; a task killed before the
// executor subscribed never reaches it, and with nothing left the
// unsubscribed executor is destroyed.
func TestRunnerHTTPExecutorUpdateAndKill(t *testing.T) {
	ta := newTestAgent(t, false)
	exInfo := fakeHTTPExecutor("ex-1", 16)
	ta.runTasks(fakeFramework(true), exInfo, []*mesos.TaskInfo{fakeTask("t1", "", 32)}, false)
	cid := ta.launched(t)
	c := ta.cz.get(cid)
	if c.cfg.Resources.MemBytes != 48<<20 || !slices.Contains(c.cfg.Env, "MESOS_EXECUTOR_ID=ex-1") || !slices.Contains(c.cfg.Env, "MESOS_CHECKPOINT=1") {
		t.Fatalf("executor container %+v", c.cfg)
	}
	if infos := ta.subscribeCall().GetSubscribe().GetExecutors(); len(infos) != 1 || infos[0].GetFrameworkId().GetValue() != "fw-1" {
		t.Fatalf("executors reported to the master: %v", infos)
	}
	ta.runTasks(fakeFramework(true), exInfo, []*mesos.TaskInfo{fakeTask("t2", "", 64)}, false)
	eventually(t, "the resize", func() bool {
		ta.cz.mu.Lock()
		defer ta.cz.mu.Unlock()
		return len(c.updates) == 1 && c.updates[0].MemBytes == 112<<20
	})
	ta.killTask("fw-1", "t2", nil)
	if u := ta.expect(t, "t2", mesos.TaskState_TASK_KILLED, fromAgent); u.GetStatus().GetReason() != mesos.TaskStatus_REASON_TASK_KILLED_DURING_LAUNCH {
		t.Fatalf("reason %s", u.GetStatus().GetReason())
	}
	// The executor's container is not shrunk.
	ta.cz.mu.Lock()
	n := len(c.updates)
	ta.cz.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d resizes", n)
	}
	ta.killTask("fw-1", "t1", nil)
	ta.expect(t, "t1", mesos.TaskState_TASK_KILLED, fromAgent)
	// Nothing left, never subscribed: destroyed, and its end reported.
	eventually(t, "EXECUTOR_EXITED", func() bool { return len(ta.masterCalls(cluster.Call_EXECUTOR_EXITED)) == 1 })
	ta.cz.mu.Lock()
	term := c.term
	ta.cz.mu.Unlock()
	if term == nil || !term.Destroyed {
		t.Fatalf("executor not destroyed: %+v", term)
	}
	// The acknowledged ends' records go before the work_dir does.
	eventually(t, "the framework to be forgotten", func() bool { return ta.frameworkGone("fw-1") })
}

// Tasks sent to an executor that is shutting down are dropped
// (TASK_DROPPED for partition-aware frameworks), never launched.
func TestRunnerDropForTerminatingExecutor(t *testing.T) {
	ta := newTestAgent(t, false)
	ta.cz.mu.Lock()
	ta.cz.ignoreTERM = true
	ta.cz.mu.Unlock()
	fw := fakeFramework(false, mesos.FrameworkInfo_Capability_PARTITION_AWARE)
	exInfo := fakeHTTPExecutor("ex-1", 16)
	ta.runTasks(fw, exInfo, []*mesos.TaskInfo{fakeTask("t1", "", 32)}, false)
	cid := ta.launched(t)
	ta.Agent.mu.Lock()
	ex := ta.executorLocked("fw-1", "ex-1")
	ta.Agent.mu.Unlock()
	// As a subscribed executor told to SHUT DOWN, within its grace period.
	ta.Agent.mu.Lock()
	ex.runner.(*httpRunner).shuttingDown = true
	ta.Agent.mu.Unlock()
	ta.runTasks(fw, exInfo, []*mesos.TaskInfo{fakeTask("t2", "", 32)}, false)
	if u := ta.expect(t, "t2", mesos.TaskState_TASK_DROPPED, fromAgent); u.GetStatus().GetReason() != mesos.TaskStatus_REASON_EXECUTOR_TERMINATED {
		t.Fatalf("reason %s", u.GetStatus().GetReason())
	}
	if _, err := ta.cz.Destroy(t.Context(), cid); err != nil {
		t.Fatal(err)
	}
	ta.expect(t, "t1", mesos.TaskState_TASK_KILLED, fromAgent)
	eventually(t, "the framework to be forgotten", func() bool { return ta.frameworkGone("fw-1") })
}

// executorCall posts a call to the agent's v1 executor API.
func (ta *testAgent) executorCall(t *testing.T, call *executorapi.Call) (int, string) {
	t.Helper()
	return ta.executorCallAs(t, call, "")
}

// executorCallAs is executorCall with token as its bearer token.
func (ta *testAgent) executorCallAs(t *testing.T, call *executorapi.Call, token string) (int, string) {
	t.Helper()
	body, err := proto.Marshal(call)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/api/v1/executor", bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Accept", "application/x-protobuf")
	w := httptest.NewRecorder()
	ta.Handler().ServeHTTP(w, req)
	return w.Code, w.Body.String()
}

func updateCall(fwID, exID, taskID string, state mesos.TaskState, src mesos.TaskStatus_Source, uuid []byte) *executorapi.Call {
	return &executorapi.Call{
		Type:        executorapi.Call_UPDATE.Enum(),
		FrameworkId: &mesos.FrameworkID{Value: proto.String(fwID)},
		ExecutorId:  &mesos.ExecutorID{Value: proto.String(exID)},
		Update: &executorapi.Call_Update{Status: &mesos.TaskStatus{
			TaskId: &mesos.TaskID{Value: proto.String(taskID)}, State: state.Enum(), Source: src.Enum(), Uuid: uuid,
		}},
	}
}

// A custom executor's updates: only its own (SOURCE_EXECUTOR, its executor
// ID, its tasks) are taken, forwarded with its executor and container; one
// sent again is a duplicate. The builtin executors have no executor API.
func TestRunnerHTTPExecutorStatusUpdates(t *testing.T) {
	ta := newTestAgent(t, false)
	ta.runTasks(fakeFramework(false), fakeHTTPExecutor("ex-1", 16), []*mesos.TaskInfo{fakeTask("t1", "", 32)}, false)
	cid := ta.launched(t)
	uuid := ids.UUID()
	for _, bad := range []*executorapi.Call{
		updateCall("fw-1", "ex-1", "t1", mesos.TaskState_TASK_RUNNING, mesos.TaskStatus_SOURCE_AGENT, uuid),
		updateCall("fw-1", "ex-1", "t1", mesos.TaskState_TASK_RUNNING, mesos.TaskStatus_SOURCE_MASTER, uuid),
		updateCall("fw-1", "ex-1", "t2", mesos.TaskState_TASK_RUNNING, mesos.TaskStatus_SOURCE_EXECUTOR, uuid),
		updateCall("fw-1", "ex-1", "t1", mesos.TaskState_TASK_STAGING, mesos.TaskStatus_SOURCE_EXECUTOR, uuid),
		updateCall("fw-1", "ex-1", "t1", mesos.TaskState_TASK_RUNNING, mesos.TaskStatus_SOURCE_EXECUTOR, uuid[:4]),
		updateCall("fw-1", "ex-2", "t1", mesos.TaskState_TASK_RUNNING, mesos.TaskStatus_SOURCE_EXECUTOR, uuid),
	} {
		if code, msg := ta.executorCall(t, bad); code != http.StatusBadRequest {
			t.Errorf("update %v: %d %s, want 400", bad.GetUpdate().GetStatus(), code, msg)
		}
	}
	other := updateCall("fw-1", "ex-1", "t1", mesos.TaskState_TASK_RUNNING, mesos.TaskStatus_SOURCE_EXECUTOR, uuid)
	other.Update.Status.ExecutorId = &mesos.ExecutorID{Value: proto.String("ex-2")}
	if code, msg := ta.executorCall(t, other); code != http.StatusBadRequest {
		t.Errorf("update naming another executor: %d %s, want 400", code, msg)
	}

	good := updateCall("fw-1", "ex-1", "t1", mesos.TaskState_TASK_RUNNING, mesos.TaskStatus_SOURCE_EXECUTOR, uuid)
	if code, msg := ta.executorCall(t, good); code != http.StatusAccepted {
		t.Fatalf("update: %d %s", code, msg)
	}
	u := ta.expect(t, "t1", mesos.TaskState_TASK_RUNNING, fromExecutor)
	if u.GetExecutorId().GetValue() != "ex-1" || u.GetStatus().GetContainerStatus().GetContainerId().GetValue() != cid {
		t.Fatalf("forwarded update %v", u)
	}
	eventually(t, "the acknowledgement", func() bool { return len(ta.updates_().Pending("fw-1", "t1")) == 0 })
	if code, msg := ta.executorCall(t, good); code != http.StatusAccepted {
		t.Fatalf("duplicate update: %d %s", code, msg)
	}
	select {
	case u := <-ta.updates:
		t.Fatalf("duplicate forwarded: %v", u)
	case <-time.After(100 * time.Millisecond):
	}

	ta.runTasks(fakeFramework(false), nil, []*mesos.TaskInfo{fakeTask("c1", "sleep 100", 32)}, false)
	ta.expect(t, "c1", mesos.TaskState_TASK_STARTING, fromExecutor)
	if code, msg := ta.executorCall(t, updateCall("fw-1", "c1", "c1", mesos.TaskState_TASK_RUNNING, mesos.TaskStatus_SOURCE_EXECUTOR, ids.UUID())); code != http.StatusBadRequest {
		t.Fatalf("update to the command executor: %d %s, want 400", code, msg)
	}
}

// An agent restart: a checkpointed command task whose container the new
// agent's containerizer re-attaches goes on running and reports its end;
// one whose container never started is launched again.
func TestRunnerRecoverCommandTasks(t *testing.T) {
	dir := t.TempDir()
	first := newTestAgentIn(t, dir, newFakeContainers(), false)
	fw := fakeFramework(true)
	first.runTasks(fw, nil, []*mesos.TaskInfo{fakeTask("t1", "sleep 100", 32)}, false)
	first.expect(t, "t1", mesos.TaskState_TASK_STARTING, fromExecutor)
	cid := first.launched(t)
	first.expect(t, "t1", mesos.TaskState_TASK_RUNNING, fromExecutor)
	eventually(t, "the acknowledgement", func() bool { return len(first.updates_().Pending("fw-1", "t1")) == 0 })
	// The second task is recorded but its container is not found again.
	first.cz.mu.Lock()
	first.cz.launchErr = syscall.EAGAIN
	first.cz.mu.Unlock()
	first.manualAck.Store(true)
	first.runTasks(fw, nil, []*mesos.TaskInfo{fakeTask("t2", "true", 32)}, false)
	first.expect(t, "t2", mesos.TaskState_TASK_STARTING, fromExecutor)
	eventually(t, "t2's end", func() bool { return len(first.updates_().Pending("fw-1", "t2")) == 2 })

	// The agent goes away; its first task's container lives on.
	cz := newFakeContainers()
	cz.recovered = map[string]bool{cid: true}
	second := newTestAgentIn(t, dir, cz, false)
	second.cz.mu.Lock()
	second.cz.containers[cid] = &fakeContainer{cfg: first.cz.get(cid).cfg, done: make(chan struct{})}
	second.cz.mu.Unlock()
	if err := second.recover(t.Context()); err != nil {
		t.Fatal(err)
	}
	second.Agent.mu.Lock()
	rec := second.recovery
	second.Agent.mu.Unlock()
	if rec.running != 1 || rec.tasks != 2 || rec.pendingUpdates != 2 {
		t.Fatalf("recovery %+v; want t1 re-attached, t2's updates pending", rec)
	}
	// t2's unacknowledged updates are resent in order.
	second.expect(t, "t2", mesos.TaskState_TASK_STARTING, fromExecutor)
	second.expect(t, "t2", mesos.TaskState_TASK_FAILED, fromAgent)
	second.waitLaunched(t, "fw-1", "t1")
	second.cz.exit(cid, 0)
	second.expect(t, "t1", mesos.TaskState_TASK_FINISHED, fromExecutor)
	eventually(t, "the framework to be forgotten", func() bool { return second.frameworkGone("fw-1") })
}

// A kill (or an executor's end) that reaches a task after its terminal
// update was acknowledged and the task forgotten finds its records gone:
// the late update is dropped, and the agent does not stop as it would for
// a store that cannot write.
func TestRunnerUpdateForForgottenTask(t *testing.T) {
	ta := newTestAgent(t, false)
	var failed atomic.Pointer[error]
	ta.Agent.mu.Lock()
	ta.Agent.fail = func(err error) { failed.Store(&err) }
	ta.Agent.mu.Unlock()
	ta.runTasks(fakeFramework(true), nil, []*mesos.TaskInfo{fakeTask("t1", "true", 32)}, false)
	ta.expect(t, "t1", mesos.TaskState_TASK_STARTING, fromExecutor)
	ta.waitLaunched(t, "fw-1", "t1")
	ta.Agent.mu.Lock()
	tk := ta.Agent.findTaskLocked("fw-1", "t1")
	ta.Agent.mu.Unlock()
	if tk == nil {
		t.Fatal("task t1 not found")
	}
	ta.cz.exit(ta.launched(t), 0)
	ta.expect(t, "t1", mesos.TaskState_TASK_RUNNING, fromExecutor)
	ta.expect(t, "t1", mesos.TaskState_TASK_FINISHED, fromExecutor)
	eventually(t, "the framework to be forgotten", func() bool { return ta.frameworkGone("fw-1") })

	ta.taskUpdate(tk, fromExecutor, mesos.TaskState_TASK_KILLED, nil, "killed late", nil)
	if err := failed.Load(); err != nil {
		t.Fatalf("the agent stopped on a late update for a forgotten task: %v", *err)
	}
	select {
	case u := <-ta.updates:
		t.Fatalf("a late update for a forgotten task was forwarded: %v", u.GetStatus().GetState())
	case <-time.After(100 * time.Millisecond):
	}
}

// A task's container is marked launched in the step that makes it RUNNING:
// a stopping agent (cleanup mode destroys every container) that acts as
// soon as RUNNING is out must find the container. (A framework that saw
// RUNNING and stopped the agent found the task left running:
// TestRecoverCleanup, VM tier under load.)
func TestRunnerRunningTaskContainerIsListed(t *testing.T) {
	ta := newTestAgent(t, false)
	ta.runTasks(fakeFramework(true), nil, []*mesos.TaskInfo{fakeTask("t1", "sleep 100", 32)}, false)
	ta.expect(t, "t1", mesos.TaskState_TASK_STARTING, fromExecutor)
	cid := ta.launched(t)
	ta.expect(t, "t1", mesos.TaskState_TASK_RUNNING, fromExecutor)
	ta.Agent.mu.Lock()
	tk := ta.Agent.findTaskLocked("fw-1", "t1")
	running, launched, ids := tk.state == mesos.TaskState_TASK_RUNNING, tk.launched, tk.ex.containerIDs()
	ta.Agent.mu.Unlock()
	if !running || !launched || !slices.Contains(ids, cid) {
		t.Fatalf("on RUNNING: state RUNNING %v, launched %v, containers %v; want %s among them", running, launched, ids, cid)
	}
}

// A framework's checkpoints are removed off the agent's lock once its last
// task is acknowledged; a launch of the framework that comes while the
// removal is under way records after it, so the removal cannot take the
// new task's records with it.
func TestRunnerLaunchDuringRemovalKeepsRecords(t *testing.T) {
	ta := newTestAgent(t, false)
	fw := fakeFramework(true)
	ta.runTasks(fw, nil, []*mesos.TaskInfo{fakeTask("t1", "true", 32)}, false)
	ta.expect(t, "t1", mesos.TaskState_TASK_STARTING, fromExecutor)
	// t1 is recorded; fw-1's removals from now on queue behind this one
	// until it is released.
	held := make(chan struct{})
	ta.Agent.mu.Lock()
	ta.removing["fw-1"] = held
	ta.Agent.mu.Unlock()
	ta.cz.exit(ta.launched(t), 0)
	ta.expect(t, "t1", mesos.TaskState_TASK_RUNNING, fromExecutor)
	ta.expect(t, "t1", mesos.TaskState_TASK_FINISHED, fromExecutor)
	eventually(t, "t1 to be forgotten", func() bool {
		ta.Agent.mu.Lock()
		defer ta.Agent.mu.Unlock()
		return ta.frameworks["fw-1"] == nil
	})

	// t2 comes while fw-1's removal waits: it is not recorded before the
	// removal is done, so it is not launched either.
	go ta.runTasks(fw, nil, []*mesos.TaskInfo{fakeTask("t2", "sleep 100", 32)}, false)
	select {
	case u := <-ta.updates:
		t.Fatalf("t2 went on before fw-1's removal ended: %v", u.GetStatus().GetState())
	case <-time.After(200 * time.Millisecond):
	}
	close(held)
	ta.expect(t, "t2", mesos.TaskState_TASK_STARTING, fromExecutor)
	ta.launched(t)
	ta.expect(t, "t2", mesos.TaskState_TASK_RUNNING, fromExecutor)
	removalsDone(t, ta.Agent)
	st, err := ta.store.Recover(t.Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	rf := st.Frameworks["fw-1"]
	if rf == nil || rf.Info == nil || rf.Executors["t2"] == nil || len(rf.Executors["t2"].Runs) != 1 || rf.Executors["t1"] != nil {
		t.Fatalf("records after the removal and the launch: %+v; want fw-1 with t2's run only", rf)
	}
}
