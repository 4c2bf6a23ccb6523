package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/resources"
	executorapi "github.com/corral/corral/api/v1/executor"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/container"
	"github.com/corral/corral/internal/ids"
)

type framework struct {
	id   string
	info *mesos.FrameworkInfo
	// recorded is the FrameworkInfo last checkpointed.
	recorded  *mesos.FrameworkInfo
	executors map[string]*executor
	// tasks indexes live tasks by ID.
	tasks map[string]*task
	// ended keeps executors that ended until their tasks' terminal updates
	// are acknowledged.
	ended        []*executor
	shuttingDown bool
}

type executor struct {
	fw *framework
	id string
	// runner runs the executor: chosen when it is made (newRunner).
	runner executorRunner
	info   *mesos.ExecutorInfo
	// agentID is the agent ID the run was started under: its sandbox and
	// checkpoints are filed under it.
	agentID     string
	containerID string
	directory   string
	resources   resources.Resources
	tasks       map[string]*task
	launched    time.Time
	// recorded: the run's executor.info and run.info are checkpointed.
	recorded bool

	// terminating: the executor is on its way out (its end is being
	// reported; a builtin one's last task ended); tasks sent to it now are
	// dropped, as Mesos drops tasks for a terminating executor.
	terminating bool

	// ended: every process of the run is gone; the executor left the
	// live set.
	ended bool
}

type task struct {
	ex          *executor
	info        *mesos.TaskInfo
	state       mesos.TaskState
	group       int
	containerID string // builtin executors: the task's own container
	sandbox     string
	// launched: the task's container (builtin executors) was launched or
	// re-attached, so a kill goes to it.
	launched bool
	killing  bool
	// recorded is closed once the task's launch is checkpointed (or
	// answered by launchNotRecorded); nil for a task recovered from its
	// records. Until then it is recording: the launch answers for it, not
	// an executor ending meanwhile (which would append to a record not yet
	// there).
	recorded chan struct{}
	statuses []*mesos.TaskStatus
	// updMu orders the task's updates between its state, its checkpointed
	// stream and the update manager.
	updMu sync.Mutex
}

// recording reports whether t's launch is still being checkpointed.
func (t *task) recording() bool {
	if t.recorded == nil {
		return false
	}
	select {
	case <-t.recorded:
		return false
	default:
		return true
	}
}

// containerIDs are the run's containers that may be running (a.mu held).
func (ex *executor) containerIDs() []string { return ex.runner.containerIDsLocked() }

// executorID is what the executor's tasks and updates carry: nothing for
// the agent's own command executor.
func (ex *executor) executorID() *mesos.ExecutorID {
	if ex.runner.traits().hidden {
		return nil
	}
	return &mesos.ExecutorID{Value: proto.String(ex.id)}
}

func partitionAware(fw *framework) bool {
	for _, c := range fw.info.GetCapabilities() {
		if c.GetType() == mesos.FrameworkInfo_Capability_PARTITION_AWARE {
			return true
		}
	}
	return false
}

// goneState is what a task that vanished with the node or its executor
// becomes: TASK_GONE for partition-aware frameworks, else TASK_LOST.
func goneState(fw *framework) mesos.TaskState {
	if partitionAware(fw) {
		return mesos.TaskState_TASK_GONE
	}
	return mesos.TaskState_TASK_LOST
}

func (t *task) message(agentID, fwID string, ex *executor) *mesos.Task {
	mt := &mesos.Task{
		Name:        proto.String(t.info.GetName()),
		TaskId:      t.info.GetTaskId(),
		FrameworkId: &mesos.FrameworkID{Value: proto.String(fwID)},
		AgentId:     &mesos.AgentID{Value: proto.String(agentID)},
		State:       t.state.Enum(),
		Resources:   t.info.GetResources(),
		Statuses:    t.statuses,
		Labels:      t.info.GetLabels(),
		Container:   t.info.GetContainer(),
		ExecutorId:  ex.executorID(),
	}
	// As Mesos' createTask: the user it runs as, which a restarted master
	// judges view_tasks by.
	if u := t.runsAs(ex); u != "" {
		mt.User = proto.String(u)
	}
	return mt
}

// sandboxDir is Mesos' layout: .../slaves/<agent>/frameworks/<fw>/executors/<ex>/runs/<container>.
func (a *Agent) sandboxDir(agentID, fwID, exID, containerID string) string {
	return filepath.Join(a.cfg.WorkDir, "slaves", agentID, "frameworks", fwID, "executors", exID, "runs", containerID)
}

// runTasks starts tasks from the master: command tasks and task groups of
// the default executor in containers the agent supervises, tasks of custom
// executors through their executor (started if not yet running). For
// frameworks that checkpoint, the framework, executor, run and tasks are
// recorded before anything is launched or delivered.
func (a *Agent) runTasks(fwInfo *mesos.FrameworkInfo, exInfo *mesos.ExecutorInfo, infos []*mesos.TaskInfo, group bool) {
	if len(infos) == 0 {
		return
	}
	a.mu.Lock()
	fwID := fwInfo.GetId().GetValue()
	fw := a.frameworks[fwID]
	for _, ti := range infos {
		if fw != nil && fw.tasks[ti.GetTaskId().GetValue()] != nil {
			a.mu.Unlock()
			a.log.Warn("task already running; duplicate launch ignored", "framework", fwID, "task", ti.GetTaskId().GetValue())
			return
		}
	}
	if fw == nil {
		fw = &framework{id: fwID, executors: map[string]*executor{}, tasks: map[string]*task{}}
		a.frameworks[fwID] = fw
	}
	fw.info = fwInfo
	fw.shuttingDown = false

	kind := runnerKind(exInfo)
	if exInfo == nil {
		exInfo = commandExecutorInfo(fwInfo, infos[0])
	}
	exID := exInfo.GetExecutorId().GetValue()
	ex := fw.executors[exID]
	if ex != nil && (ex.terminating || ex.runner.closingLocked()) {
		a.dropForTerminatingLocked(fw, ex, infos)
		return
	}
	fresh := ex == nil
	if fresh {
		cid := ids.String()
		ex = &executor{
			fw: fw, id: exID, info: exInfo, agentID: a.agentID, containerID: cid,
			directory: a.sandboxDir(a.agentID, fwID, exID, cid), tasks: map[string]*task{}, launched: time.Now(),
		}
		ex.runner = newRunner(a, ex, kind)
		ex.resources, _ = resources.New(exInfo.GetResources())
		fw.executors[exID] = ex
	}
	added := make([]*task, len(infos))
	for i, ti := range infos {
		added[i] = &task{ex: ex, info: ti, state: mesos.TaskState_TASK_STAGING, recorded: make(chan struct{})}
	}
	ex.runner.placeTasksLocked(added)
	for _, t := range added {
		ex.tasks[t.info.GetTaskId().GetValue()] = t
		fw.tasks[t.info.GetTaskId().GetValue()] = t
	}
	a.mu.Unlock()

	// Checkpoint before act: a restarted agent must know every task it
	// may have started or handed to an executor.
	if err := a.checkpointLaunch(fw, ex, added); err != nil {
		a.launchNotRecorded(fw, ex, added, err)
		for _, t := range added {
			close(t.recorded)
		}
		return
	}
	a.mu.Lock()
	for _, t := range added {
		close(t.recorded)
	}
	if ex.terminating {
		// It began to end while the tasks were recorded: they never
		// reach it.
		a.mu.Unlock()
		for _, t := range added {
			a.taskUpdate(t, fromAgent, droppedState(fw), mesos.TaskStatus_REASON_EXECUTOR_TERMINATED.Enum(), "Executor terminating", nil)
		}
		return
	}
	a.mu.Unlock()
	ex.runner.launch(added, group, fresh)
}

// prepareRun makes the run's sandbox for a launch (its runner's first, or
// tasks more): a new run takes back its executor's and framework's
// directories, which may be scheduled for removal since an earlier run
// ended, and runs/latest points at it.
func (a *Agent) prepareRun(ex *executor, fresh bool) error {
	if fresh {
		a.unscheduleParents(ex)
	}
	if err := os.MkdirAll(ex.directory, 0o755); err != nil {
		return fmt.Errorf("creating sandbox: %w", err)
	}
	a.linkLatest(ex)
	return nil
}

// dropForTerminatingLocked answers tasks sent to an executor that is
// terminating: they were never launched, so TASK_DROPPED (TASK_LOST for
// frameworks that are not partition-aware), as Mesos' agent answers. They
// join the executor so their updates are retried until acknowledged, and
// are never recorded: nothing of them survives a restart but the update.
// It unlocks a.mu.
func (a *Agent) dropForTerminatingLocked(fw *framework, ex *executor, infos []*mesos.TaskInfo) {
	var dropped []*task
	for _, ti := range infos {
		t := &task{ex: ex, info: ti, state: mesos.TaskState_TASK_STAGING, group: len(ex.tasks)}
		ex.tasks[ti.GetTaskId().GetValue()] = t
		fw.tasks[ti.GetTaskId().GetValue()] = t
		dropped = append(dropped, t)
	}
	a.mu.Unlock()
	a.log.Warn("tasks sent to an executor that is terminating; dropped", "framework", fw.id, "executor", ex.id, "tasks", len(dropped))
	for _, t := range dropped {
		a.unrecordedEnd(t, droppedState(fw), mesos.TaskStatus_REASON_EXECUTOR_TERMINATED, "Executor terminating")
	}
}

// droppedState is what a task that was never launched becomes:
// TASK_DROPPED for partition-aware frameworks, else TASK_LOST.
func droppedState(fw *framework) mesos.TaskState {
	if partitionAware(fw) {
		return mesos.TaskState_TASK_DROPPED
	}
	return mesos.TaskState_TASK_LOST
}

// linkLatest points runs/latest at the newest run, as Mesos does.
func (a *Agent) linkLatest(ex *executor) {
	latest := filepath.Join(filepath.Dir(ex.directory), "latest")
	tmp := latest + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(ex.directory), tmp); err == nil {
		_ = os.Rename(tmp, latest)
	}
}

func commandExecutorInfo(fwInfo *mesos.FrameworkInfo, ti *mesos.TaskInfo) *mesos.ExecutorInfo {
	return &mesos.ExecutorInfo{
		Type:        mesos.ExecutorInfo_CUSTOM.Enum(),
		ExecutorId:  &mesos.ExecutorID{Value: proto.String(ti.GetTaskId().GetValue())},
		FrameworkId: fwInfo.GetId(),
		Command:     ti.GetCommand(),
		Name:        proto.String("Command Executor (Task: " + ti.GetTaskId().GetValue() + ") (Command: " + commandLine(ti.GetCommand()) + ")"),
		Source:      proto.String(ti.GetTaskId().GetValue()),
	}
}

func commandLine(c *mesos.CommandInfo) string {
	if c.GetShell() {
		return "sh -c '" + c.GetValue() + "'"
	}
	return "[" + strings.Join(c.GetArguments(), ", ") + "]"
}

func launchEvent(infos []*mesos.TaskInfo, group bool, exInfo *mesos.ExecutorInfo) *executorapi.Event {
	if group {
		return &executorapi.Event{Type: executorapi.Event_LAUNCH_GROUP.Enum(), LaunchGroup: &executorapi.Event_LaunchGroup{
			TaskGroup: &mesos.TaskGroupInfo{Tasks: infos},
		}}
	}
	return &executorapi.Event{Type: executorapi.Event_LAUNCH.Enum(), Launch: &executorapi.Event_Launch{Task: infos[0]}}
}

// commandArgv turns a CommandInfo into what exec takes: with shell (the
// default) "sh -c value"; without, value is the program and arguments its
// argv.
func commandArgv(c *mesos.CommandInfo) (argv []string, path string, err error) {
	if c == nil {
		return nil, "", errors.New("no command")
	}
	if c.GetShell() {
		if c.GetValue() == "" {
			return nil, "", errors.New("shell command has no value")
		}
		return []string{"/bin/sh", "-c", c.GetValue()}, "", nil
	}
	if c.GetValue() == "" {
		return nil, "", errors.New("command has no value (the program to run)")
	}
	argv = c.GetArguments()
	if len(argv) == 0 {
		argv = []string{c.GetValue()}
	}
	return argv, c.GetValue(), nil
}

// commandEnv is the environment a command's own variables add, in order.
func commandEnv(c *mesos.CommandInfo) ([]string, error) {
	var env []string
	for _, v := range c.GetEnvironment().GetVariables() {
		if v.GetType() == mesos.Environment_Variable_SECRET {
			return nil, fmt.Errorf("environment variable %s: secrets are not supported by this agent", v.GetName())
		}
		if v.GetName() == "" || strings.ContainsAny(v.GetName(), "=\x00") {
			return nil, fmt.Errorf("environment variable name %q is invalid", v.GetName())
		}
		env = append(env, v.GetName()+"="+v.GetValue())
	}
	return env, nil
}

func (a *Agent) user(fw *framework, c *mesos.CommandInfo) string {
	if !a.cfg.SwitchUser || os.Geteuid() != 0 {
		return ""
	}
	if c.GetUser() != "" {
		return c.GetUser()
	}
	return fw.info.GetUser()
}

func (a *Agent) baseEnv(ex *executor, sandbox string) []string {
	env := []string{
		"MESOS_FRAMEWORK_ID=" + ex.fw.id,
		"MESOS_EXECUTOR_ID=" + ex.id,
		"MESOS_DIRECTORY=" + sandbox,
		"MESOS_SANDBOX=" + sandbox,
		"MESOS_AGENT_ENDPOINT=" + a.Endpoint(),
		"MESOS_SLAVE_PID=slave(1)@" + a.Endpoint(),
		"MESOS_CONTAINER_ID=" + ex.containerID,
	}
	a.mu.Lock()
	env = append(env, "MESOS_AGENT_ID="+a.agentID, "MESOS_SLAVE_ID="+a.agentID)
	a.mu.Unlock()
	if p := os.Getenv("PATH"); p != "" {
		env = append(env, "PATH="+p)
	}
	return env
}

func containerConfig(id, sandbox string, ti *mesos.TaskInfo, res resources.Resources) *container.Config {
	cfg := &container.Config{
		ID: id, Sandbox: sandbox,
		Resources: container.Resources{CPUs: res.Scalar("cpus"), MemBytes: uint64(res.Scalar("mem")) << 20, DiskBytes: uint64(res.Scalar("disk")) << 20},
	}
	ci := ti.GetContainer()
	if ci != nil {
		cfg.Hostname = ci.GetHostname()
		li := ci.GetLinuxInfo()
		cfg.SeccompProfile = li.GetSeccomp().GetProfileName()
		cfg.SeccompUnconfined = li.GetSeccomp().GetUnconfined()
		for _, set := range []*mesos.CapabilityInfo{li.GetCapabilityInfo(), li.GetBoundingCapabilities(), li.GetEffectiveCapabilities()} {
			if set == nil {
				continue
			}
			// A root task holds its bounding set after exec, so what it gets
			// is what every set it gives allows (Mesos' effective set lies
			// within its bounding set anyway).
			names := []string{}
			for _, c := range set.GetCapabilities() {
				if cfg.Capabilities == nil || slices.Contains(cfg.Capabilities, c.String()) {
					names = append(names, c.String())
				}
			}
			cfg.Capabilities = names
		}
		for _, v := range ci.GetVolumes() {
			vol := container.Volume{ContainerPath: v.GetContainerPath(), ReadOnly: v.GetMode() == mesos.Volume_RO}
			switch {
			case v.GetHostPath() != "":
				vol.HostPath = v.GetHostPath()
			case v.GetSource().GetType() == mesos.Volume_Source_HOST_PATH:
				vol.HostPath = v.GetSource().GetHostPath().GetPath()
			case v.GetSource().GetType() == mesos.Volume_Source_SANDBOX_PATH:
				vol.HostPath = filepath.Join(sandbox, v.GetSource().GetSandboxPath().GetPath())
			}
			cfg.Volumes = append(cfg.Volumes, vol)
		}
	}
	if labels := ti.GetLabels().GetLabels(); len(labels) > 0 {
		cfg.Resources.Labels = map[string]string{}
		for _, l := range labels {
			cfg.Resources.Labels[l.GetKey()] = l.GetValue()
		}
	}
	return cfg
}

// taskContainerConfig is the container a builtin task runs in, as its
// TaskInfo says; the agent builds it the same way at launch and at
// recovery (where the isolators take their limits back from it).
func (a *Agent) taskContainerConfig(t *task) (*container.Config, error) {
	argv, path, err := commandArgv(t.info.GetCommand())
	if err != nil {
		return nil, fmt.Errorf("Invalid command: %w", err)
	}
	env, err := commandEnv(t.info.GetCommand())
	if err != nil {
		return nil, err
	}
	res, _ := resources.New(t.info.GetResources())
	cfg := containerConfig(t.containerID, t.sandbox, t.info, res)
	cfg.Argv, cfg.Path = argv, path
	cfg.Env = append([]string{"MESOS_TASK_ID=" + t.info.GetTaskId().GetValue()}, env...)
	return cfg, nil
}

func containerStatus(id string) *mesos.ContainerStatus {
	return &mesos.ContainerStatus{ContainerId: &mesos.ContainerID{Value: proto.String(id)}}
}

func limitationReason(name string) mesos.TaskStatus_Reason {
	if v, ok := mesos.TaskStatus_Reason_value[name]; ok {
		return mesos.TaskStatus_Reason(v)
	}
	return mesos.TaskStatus_REASON_CONTAINER_LIMITATION
}

// Where an update the agent makes comes from, as Mesos tells them apart:
// what a builtin executor reports of its task (started, running, exited,
// killed) is the executor's, as Mesos' command and default executors send
// it; what the agent concludes itself (the task never launched, its
// executor is gone, a limit was hit, the agent restarted) is the agent's.
const (
	fromExecutor = mesos.TaskStatus_SOURCE_EXECUTOR
	fromAgent    = mesos.TaskStatus_SOURCE_AGENT
)

// taskUpdate records a new state for a task and queues the update for the
// scheduler.
func (a *Agent) taskUpdate(t *task, src mesos.TaskStatus_Source, state mesos.TaskState, reason *mesos.TaskStatus_Reason, msg string, cs *mesos.ContainerStatus) {
	a.statusUpdate(t, taskStatus(t, src, state, reason, msg, cs))
}

// taskStatus is a new status of t from src.
func taskStatus(t *task, src mesos.TaskStatus_Source, state mesos.TaskState, reason *mesos.TaskStatus_Reason, msg string, cs *mesos.ContainerStatus) *mesos.TaskStatus {
	s := &mesos.TaskStatus{
		TaskId:          t.info.GetTaskId(),
		State:           state.Enum(),
		Source:          src.Enum(),
		Reason:          reason,
		Timestamp:       proto.Float64(float64(time.Now().UnixNano()) / 1e9),
		Uuid:            ids.UUID(),
		ExecutorId:      &mesos.ExecutorID{Value: proto.String(t.ex.id)},
		ContainerStatus: cs,
	}
	if msg != "" {
		s.Message = proto.String(msg)
	}
	return s
}

// statusUpdate applies a status to its task and hands it to the update
// manager (unless the framework is being torn down: nobody would ack). For
// frameworks that checkpoint the update is appended to the task's stream
// first: it is never forwarded before it is durable.
func (a *Agent) statusUpdate(t *task, s *mesos.TaskStatus) { a.sendStatus(t, s, true, nil) }

// sendStatus is statusUpdate; record false leaves the checkpoint out, for
// a task whose launch was never recorded (launchNotRecorded). withState,
// when set, runs under a.mu in the same step as the task takes the new
// state, and before any later update of the task.
func (a *Agent) sendStatus(t *task, s *mesos.TaskStatus, record bool, withState func()) {
	t.updMu.Lock()
	defer t.updMu.Unlock()
	a.mu.Lock()
	s.AgentId = &mesos.AgentID{Value: proto.String(a.agentID)}
	if !t.state.IsTerminal() && s.GetState().IsTerminal() {
		a.counters.taskEnded(s.GetState())
	}
	t.state = s.GetState()
	if withState != nil {
		withState()
	}
	t.statuses = append(t.statuses, &mesos.TaskStatus{TaskId: s.TaskId, State: s.State, Timestamp: s.Timestamp, ContainerStatus: s.ContainerStatus})
	fw := t.ex.fw
	drop := fw.shuttingDown
	if drop && t.state.IsTerminal() {
		a.forgetTaskLocked(t)
	}
	ckpt := record && fw.info.GetCheckpoint()
	key := taskKey(t)
	a.mu.Unlock()
	if drop {
		return
	}
	u := &cluster.StatusUpdate{
		FrameworkId: &mesos.FrameworkID{Value: proto.String(fw.id)},
		Status:      s,
		LatestState: s.State,
	}
	u.ExecutorId = t.ex.executorID()
	if ckpt {
		if err := a.store.AppendUpdate(context.Background(), key, u); err != nil {
			if errors.Is(err, fs.ErrNotExist) && a.taskForgotten(t) {
				// A kill or an executor's end raced the task's acknowledged
				// end: its records are gone with it, and the scheduler has
				// its terminal state already.
				a.log.Debug("update for a task already forgotten dropped", "task", t.info.GetTaskId().GetValue(), "state", s.GetState())
				return
			}
			a.fatal(fmt.Errorf("checkpointing %s of task %s: %w", s.GetState(), t.info.GetTaskId().GetValue(), err))
			return
		}
	}
	a.updates.Update(u)
}

// updateAcknowledged runs after the scheduler acknowledged an update: the
// executor hears of it, and an acknowledged terminal task is forgotten.
func (a *Agent) updateAcknowledged(u *cluster.StatusUpdate) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fw := a.frameworks[u.GetFrameworkId().GetValue()]
	if fw == nil {
		return
	}
	taskID := u.GetStatus().GetTaskId().GetValue()
	t := fw.tasks[taskID]
	if t == nil {
		for _, ex := range fw.ended {
			if et := ex.tasks[taskID]; et != nil {
				t = et
			}
		}
	}
	if t == nil {
		return
	}
	t.ex.runner.acknowledgedLocked(u)
	if u.GetStatus().GetState().IsTerminal() {
		a.forgetTaskLocked(t)
	}
}

// forgetTaskLocked drops a terminal task, and its executor and framework
// once nothing is left of them; their checkpoints go with them.
func (a *Agent) forgetTaskLocked(t *task) {
	ex, fw := t.ex, t.ex.fw
	id := t.info.GetTaskId().GetValue()
	if fw.tasks[id] == t {
		delete(fw.tasks, id)
	}
	if ex.tasks[id] != t {
		return
	}
	delete(ex.tasks, id)
	if !ex.ended {
		// A live executor keeps running; the task's record is done.
		a.removeCheckpointLocked(fw, func(ctx context.Context) error { return a.store.RemoveTask(ctx, taskKey(t)) })
		return
	}
	if len(ex.tasks) > 0 {
		return
	}
	a.forgetEndedLocked(ex)
}

// executorEnded moves an executor whose processes are all gone out of the
// live set; its tasks stay until their terminal updates are acknowledged.
func (a *Agent) executorEnded(ex *executor, status *int32) {
	a.mu.Lock()
	if ex.ended {
		a.mu.Unlock()
		return
	}
	a.mu.Unlock()
	// Its tasks' ends are checkpointed by now; that the run is over is
	// recorded before the executor leaves the live set.
	a.markRunCompleted(ex)
	a.mu.Lock()
	if ex.ended {
		a.mu.Unlock()
		return
	}
	ex.ended = true
	fw := ex.fw
	if fw.executors[ex.id] == ex {
		delete(fw.executors, ex.id)
	}
	a.counters.executorsTerminated.Add(1)
	a.scheduleRunLocked(ex)
	fw.ended = append(fw.ended, ex)
	a.completed = append(a.completed, ex)
	if n := len(a.completed); n > 100 {
		a.completed = a.completed[n-100:]
	}
	// Terminal tasks that were already acknowledged are gone; if nothing
	// is left the executor goes too.
	if len(ex.tasks) == 0 {
		a.forgetEndedLocked(ex)
	}
	a.mu.Unlock()
	ex.runner.ended()
	if id := ex.executorID(); id != nil {
		// The master counts the framework's executors' resources.
		go a.callMaster(&cluster.Call{Type: cluster.Call_EXECUTOR_EXITED.Enum(), ExecutorExited: &cluster.Call_ExecutorExited{
			FrameworkId: &mesos.FrameworkID{Value: proto.String(fw.id)},
			ExecutorId:  id,
			Status:      status,
		}})
	}
}

// forgetEndedLocked drops an ended executor with nothing left to report,
// and its framework when that was the last of it.
func (a *Agent) forgetEndedLocked(ex *executor) {
	fw := ex.fw
	for i, e := range fw.ended {
		if e == ex {
			fw.ended = append(fw.ended[:i], fw.ended[i+1:]...)
			break
		}
	}
	if len(fw.executors) == 0 && len(fw.ended) == 0 && len(fw.tasks) == 0 {
		delete(a.frameworks, fw.id)
		a.removeCheckpointLocked(fw, func(ctx context.Context) error { return a.store.RemoveFramework(ctx, runKey(ex)) })
		return
	}
	// Whether the executor's own record goes is decided now, under the
	// lock: the removal runs after it.
	dropExecutor := fw.executors[ex.id] == nil
	for _, e := range fw.ended {
		dropExecutor = dropExecutor && e.id != ex.id
	}
	a.removeCheckpointLocked(fw, func(ctx context.Context) error {
		if dropExecutor {
			// Its runs go with it.
			return a.store.RemoveExecutor(ctx, runKey(ex))
		}
		return a.store.RemoveRun(ctx, runKey(ex))
	})
}

// defaultKillGrace is the grace period of a kill without a KillPolicy (Mesos'
// command executor default).
const defaultKillGrace = 3 * time.Second

// killTask kills one task, as its executor's runner does: builtin tasks
// get SIGTERM, then SIGKILL after the grace period; custom executors get a
// KILL event.
func (a *Agent) killTask(fwID, taskID string, policy *mesos.KillPolicy) {
	a.mu.Lock()
	fw := a.frameworks[fwID]
	var t *task
	if fw != nil {
		t = fw.tasks[taskID]
	}
	if t == nil || t.state.IsTerminal() {
		a.mu.Unlock()
		a.log.Warn("kill for an unknown or finished task ignored", "framework", fwID, "task", taskID)
		return
	}
	a.mu.Unlock()
	t.ex.runner.kill(t, policy)
}

func (a *Agent) destroy(cid string) {
	if _, err := a.cz.Destroy(context.Background(), cid); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.log.Warn("destroying container", "container", cid, "err", err)
	}
}

func allTerminal(ex *executor) bool {
	for _, t := range ex.tasks {
		if !t.state.IsTerminal() {
			return false
		}
	}
	return true
}

// shutdownExecutor stops an executor: a custom one is asked to shut down
// and destroyed after the grace period; a builtin one has its tasks killed.
func (a *Agent) shutdownExecutor(ex *executor) { ex.runner.shutdown() }

func (a *Agent) shutdownFramework(fwID string) {
	a.mu.Lock()
	fw := a.frameworks[fwID]
	if fw == nil {
		a.mu.Unlock()
		return
	}
	fw.shuttingDown = true
	var exs []*executor
	for _, ex := range fw.executors {
		exs = append(exs, ex)
	}
	a.mu.Unlock()
	a.log.Info("shutting down framework", "framework", fwID, "executors", len(exs))
	a.updates.Drop(fwID)
	for _, ex := range exs {
		a.shutdownExecutor(ex)
	}
}

func (a *Agent) frameworkMessage(m *cluster.FrameworkMessage) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ex := a.executorLocked(m.GetFrameworkId().GetValue(), m.GetExecutorId().GetValue())
	if ex == nil || !ex.runner.messageLocked(m.GetData()) {
		a.log.Warn("framework message dropped: executor not subscribed", "framework", m.GetFrameworkId().GetValue(), "executor", m.GetExecutorId().GetValue())
	}
}
