package agent

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/resources"
	executorapi "github.com/corral/corral/api/v1/executor"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/container"
	"github.com/corral/corral/container/containerizer"
)

// builtinRunner is what the command and the default runner share: no
// executor process, each task in a container of its own that the agent
// launches, waits on and kills itself, reporting the task's life as
// Mesos' command and default executors do (their updates are
// SOURCE_EXECUTOR; what the agent concludes itself is SOURCE_AGENT).
type builtinRunner struct {
	a  *Agent
	ex *executor
	// groupFails: a task that does not finish takes its launch group down
	// with it (Mesos' default executor).
	groupFails bool
}

func (b *builtinRunner) closingLocked() bool { return false }

func (b *builtinRunner) launch(tasks []*task, _, fresh bool) {
	if err := b.a.prepareRun(b.ex, fresh); err != nil {
		for _, t := range tasks {
			b.taskFailedToStart(t, mesos.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED, err.Error())
		}
		return
	}
	for _, t := range tasks {
		go b.runTaskContainer(t)
	}
}

// kill kills one task: SIGTERM, then SIGKILL after the grace period.
func (b *builtinRunner) kill(t *task, policy *mesos.KillPolicy) {
	a := b.a
	a.mu.Lock()
	if t.killing || t.state.IsTerminal() {
		a.mu.Unlock()
		return
	}
	t.killing = true
	launched := t.launched
	hasKilling := false
	for _, c := range b.ex.fw.info.GetCapabilities() {
		hasKilling = hasKilling || c.GetType() == mesos.FrameworkInfo_Capability_TASK_KILLING_STATE
	}
	a.mu.Unlock()
	// Recorded before the first signal: a task that dies of it while the
	// agent is down is reported killed, and a restarted agent finishes the
	// kill.
	if err := a.checkpointTask(t); err != nil {
		a.fatal(err)
		return
	}
	if !launched {
		return // not launched yet; runTaskContainer sees killing
	}
	if hasKilling {
		a.taskUpdate(t, fromExecutor, mesos.TaskState_TASK_KILLING, nil, "", nil)
	}
	b.signalTask(t, policy)
}

// shutdown kills every live task.
func (b *builtinRunner) shutdown() {
	a := b.a
	a.mu.Lock()
	var live []*task
	for _, t := range b.ex.tasks {
		if !t.state.IsTerminal() {
			live = append(live, t)
		}
	}
	a.mu.Unlock()
	for _, t := range live {
		b.kill(t, nil)
	}
}

func (b *builtinRunner) recoveryConfigsLocked() []*container.Config {
	var out []*container.Config
	for _, t := range b.ex.tasks {
		if t.containerID == "" {
			continue
		}
		res, _ := resources.New(t.info.GetResources())
		out = append(out, containerConfig(t.containerID, t.sandbox, t.info, res))
	}
	return out
}

func (b *builtinRunner) resumeLocked(found map[string]*containerizer.Recovered, stats *recoveryStats) []func() {
	a, ex := b.a, b.ex
	var actions []func()
	open := 0
	for _, t := range ex.tasks {
		if t.state.IsTerminal() {
			// Its end is recorded; only its runtime record may be left.
			if t.containerID != "" {
				a.cz.Forget(t.containerID)
			}
			continue
		}
		open++
		r := found[t.containerID]
		switch {
		case r != nil && r.State == containerizer.Running:
			stats.running++
			t.launched = true
			actions = append(actions, func() { b.resumeTask(t) })
		case r != nil && r.State == containerizer.Ended:
			stats.ended++
			t.launched = true
			term := r.Termination
			actions = append(actions, func() { b.taskEnded(t, term) })
		default:
			stats.relaunched++
			actions = append(actions, func() {
				a.linkLatest(ex)
				b.runTaskContainer(t)
			})
		}
	}
	if open == 0 {
		// Every task's end is recorded; the agent died before the run's.
		actions = append(actions, func() { a.executorEnded(ex, nil) })
	}
	return actions
}

func (b *builtinRunner) startReregistrationLocked() {}

func (b *builtinRunner) acknowledgedLocked(*cluster.StatusUpdate) {}

func (b *builtinRunner) serve(w http.ResponseWriter, _ *http.Request, _ *executorapi.Call, _ codec.Codec) {
	httpapi.Error(w, http.StatusBadRequest, "Executor '%s' of framework '%s' is not running on this agent", b.ex.id, b.ex.fw.id)
}

func (b *builtinRunner) messageLocked([]byte) bool { return false }

// ended: each task's container record went with its end (finishTask).
func (b *builtinRunner) ended() {}

func (b *builtinRunner) containerIDsLocked() []string {
	var out []string
	for _, t := range b.ex.tasks {
		if t.containerID != "" && t.launched {
			out = append(out, t.containerID)
		}
	}
	return out
}

func (b *builtinRunner) phaseLocked() (terminating, registering bool) { return false, false }

// runTaskContainer runs one task in its own container and reports its
// life: STARTING, RUNNING, then how it ended.
func (b *builtinRunner) runTaskContainer(t *task) {
	a, ex := b.a, b.ex
	a.mu.Lock()
	killing, state := t.killing, t.state
	a.mu.Unlock()
	if killing {
		b.finishTask(t, fromAgent, mesos.TaskState_TASK_KILLED, mesos.TaskStatus_REASON_TASK_KILLED_DURING_LAUNCH, "Task killed before it was launched")
		return
	}
	// Also the run's sandbox of a command task: a task launched again after
	// a restart may have been recorded before its sandbox was made.
	if err := os.MkdirAll(t.sandbox, 0o755); err != nil {
		b.taskFailedToStart(t, mesos.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED, fmt.Sprintf("creating task sandbox: %v", err))
		return
	}
	cfg, err := a.taskContainerConfig(t)
	if err != nil {
		b.taskFailedToStart(t, mesos.TaskStatus_REASON_TASK_INVALID, err.Error())
		return
	}
	cfg.Env = append(a.baseEnv(ex, t.sandbox), cfg.Env...)
	cfg.User = a.user(ex.fw, t.info.GetCommand())

	// A task relaunched after a restart (its container never started) had
	// its STARTING sent already.
	if state == mesos.TaskState_TASK_STAGING {
		a.taskUpdate(t, fromExecutor, mesos.TaskState_TASK_STARTING, nil, "", nil)
	}
	if err := a.cz.Launch(context.Background(), cfg); err != nil {
		b.taskFailedToStart(t, mesos.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED, "Failed to launch container: "+err.Error())
		return
	}
	// The container is marked launched in the step that makes the task
	// RUNNING: whoever sees RUNNING (a kill, the agent stopping) finds the
	// container, and a KILLING cannot overtake the RUNNING. A kill that
	// came in while it was being launched is carried out now.
	var killed bool
	a.sendStatus(t, taskStatus(t, fromExecutor, mesos.TaskState_TASK_RUNNING, nil, "", containerStatus(t.containerID)), true,
		func() { t.launched, killed = true, t.killing })
	if killed {
		b.signalTask(t, nil)
	}
	b.awaitTask(t)
}

// resumeTask carries on with a task whose container was re-attached:
// RUNNING if that was never recorded, a kill that was under way, then its
// end.
func (b *builtinRunner) resumeTask(t *task) {
	a := b.a
	a.mu.Lock()
	state, killing := t.state, t.killing
	a.mu.Unlock()
	if state == mesos.TaskState_TASK_STAGING || state == mesos.TaskState_TASK_STARTING {
		a.taskUpdate(t, fromExecutor, mesos.TaskState_TASK_RUNNING, nil, "", containerStatus(t.containerID))
	}
	if killing {
		b.signalTask(t, nil)
	}
	b.awaitTask(t)
}

// awaitTask waits for a task's container to end and reports how.
func (b *builtinRunner) awaitTask(t *task) {
	a := b.a
	term, err := a.cz.Wait(context.Background(), t.containerID)
	if err != nil {
		b.finishTask(t, fromAgent, mesos.TaskState_TASK_FAILED, mesos.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED, "Lost track of the container: "+err.Error())
		return
	}
	a.mu.Lock()
	killing := t.killing
	a.mu.Unlock()
	if term.NotStarted && !killing {
		// A container re-attached after a restart whose init never got its
		// go-ahead: the task never ran, and is launched now.
		a.log.Info("re-attached container ended before its task started; launching the task again", "task", t.info.GetTaskId().GetValue(), "container", t.containerID)
		a.cz.Forget(t.containerID)
		a.mu.Lock()
		t.launched = false
		a.mu.Unlock()
		b.runTaskContainer(t)
		return
	}
	b.taskEnded(t, term)
}

// taskEnded turns a task's container termination into its terminal
// update.
func (b *builtinRunner) taskEnded(t *task, term *container.Termination) {
	b.a.mu.Lock()
	killing := t.killing
	b.a.mu.Unlock()
	state, reason, src := mesos.TaskState_TASK_FAILED, mesos.TaskStatus_REASON_COMMAND_EXECUTOR_FAILED, fromExecutor
	switch {
	case term.Limitation != nil:
		// The agent's isolator ended it, not the task's own exit.
		reason, src = limitationReason(term.Limitation.Reason), fromAgent
	case term.StatusKnown && term.Status.Exited() && term.Status.ExitStatus() == 0:
		state, reason = mesos.TaskState_TASK_FINISHED, -1
	case killing:
		state, reason = mesos.TaskState_TASK_KILLED, -1
	}
	b.finishTask(t, src, state, reason, term.Message)
}

func (b *builtinRunner) taskFailedToStart(t *task, reason mesos.TaskStatus_Reason, msg string) {
	a := b.a
	a.log.Warn("task failed to start", "task", t.info.GetTaskId().GetValue(), "reason", reason, "message", msg)
	if reason == mesos.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED {
		a.counters.containerLaunchErrors.Add(1)
	}
	b.finishTask(t, fromAgent, mesos.TaskState_TASK_FAILED, reason, msg)
}

// finishTask sends a task's terminal update; with groupFails a task that
// did not finish takes its group down with it, as Mesos' default executor
// does. The run ends with its last task.
func (b *builtinRunner) finishTask(t *task, src mesos.TaskStatus_Source, state mesos.TaskState, reason mesos.TaskStatus_Reason, msg string) {
	a, ex := b.a, b.ex
	var r *mesos.TaskStatus_Reason
	if reason >= 0 {
		r = reason.Enum()
	}
	var cs *mesos.ContainerStatus
	a.mu.Lock()
	if t.containerID != "" && t.launched {
		cs = containerStatus(t.containerID)
	}
	a.mu.Unlock()
	a.taskUpdate(t, src, state, r, msg, cs)
	// The end is checkpointed: the container's runtime record of it can go.
	if t.containerID != "" {
		a.cz.Forget(t.containerID)
	}
	a.mu.Lock()
	var siblings []*task
	if b.groupFails && state != mesos.TaskState_TASK_FINISHED {
		for _, o := range ex.tasks {
			if o != t && o.group == t.group && !o.state.IsTerminal() && !o.killing {
				siblings = append(siblings, o)
			}
		}
	}
	allDone := allTerminal(ex)
	if allDone {
		ex.terminating = true
	}
	a.mu.Unlock()
	for _, o := range siblings {
		b.kill(o, nil)
	}
	if allDone {
		a.executorEnded(ex, nil)
	}
}

// signalTask kills a launched task: SIGTERM, then SIGKILL (destroy) after
// the grace period of policy, else of the task's KillPolicy.
func (b *builtinRunner) signalTask(t *task, policy *mesos.KillPolicy) {
	a := b.a
	cid := t.containerID
	grace := defaultKillGrace
	if g := policy.GetGracePeriod(); g != nil {
		grace = time.Duration(g.GetNanoseconds())
	} else if g := t.info.GetKillPolicy().GetGracePeriod(); g != nil {
		grace = time.Duration(g.GetNanoseconds())
	}
	if grace > 0 {
		if err := a.cz.Signal(cid, syscall.SIGTERM); err == nil {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), grace)
				defer cancel()
				if _, err := a.cz.Wait(ctx, cid); err == nil {
					return
				}
				a.destroy(cid)
			}()
			return
		}
	}
	go a.destroy(cid)
}
