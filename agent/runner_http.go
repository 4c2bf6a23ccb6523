package agent

import (
	"context"
	"errors"
	"os"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/agent/checkpoint"
	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/duration"
	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/resources"
	executorapi "github.com/corral/corral/api/v1/executor"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/container"
	"github.com/corral/corral/container/containerizer"
)

// executorResources is what a custom executor's container is sized to: the
// executor's own resources plus those of its live tasks.
func executorResources(ex *executor) resources.Resources {
	total := ex.resources
	for _, t := range ex.tasks {
		if !t.state.IsTerminal() {
			r, _ := resources.New(t.info.GetResources())
			total = total.Plus(r)
		}
	}
	return total
}

// launchExecutor starts a custom executor's container with the MESOS_*
// environment and waits for it to subscribe.
func (h *httpRunner) launchExecutor() {
	a, ex := h.a, h.ex
	argv, path, err := commandArgv(ex.info.GetCommand())
	if err == nil {
		var env []string
		env, err = commandEnv(ex.info.GetCommand())
		if err == nil {
			a.mu.Lock()
			res := executorResources(ex)
			a.mu.Unlock()
			cfg := containerConfig(ex.containerID, ex.directory, &mesos.TaskInfo{Container: ex.info.GetContainer(), Labels: ex.info.GetLabels()}, res)
			cfg.Argv, cfg.Path = argv, path
			cfg.Env = append(append(a.baseEnv(ex, ex.directory), a.executorEnv(ex)...), env...)
			cfg.User = a.user(ex.fw, ex.info.GetCommand())
			err = a.cz.Launch(context.Background(), cfg)
			if err == nil {
				h.sizeMu.Lock()
				h.started, h.sized = true, res
				h.sizeMu.Unlock()
				// Tasks that came while it was launched.
				h.resizeExecutor()
			}
		}
	}
	if err != nil {
		a.log.Warn("executor failed to launch", "executor", ex.id, "err", err)
		a.counters.containerLaunchErrors.Add(1)
		h.executorTerminated(mesos.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED, "Failed to launch executor: "+err.Error(), nil)
		return
	}
	a.mu.Lock()
	h.regTimer = time.AfterFunc(a.cfg.ExecutorRegistrationTimeout, func() {
		a.mu.Lock()
		late := !h.subscribed && !ex.ended
		a.mu.Unlock()
		if late {
			a.log.Warn("executor did not subscribe in time; destroying it", "executor", ex.id, "timeout", a.cfg.ExecutorRegistrationTimeout)
			a.mu.Lock()
			h.shuttingDown = true
			a.mu.Unlock()
			h.registrationTimedOut()
		}
	})
	a.mu.Unlock()
	h.superviseExecutor()
}

// superviseExecutor waits for a custom executor's container to end and
// ends its tasks.
func (h *httpRunner) superviseExecutor() {
	a, ex := h.a, h.ex
	term, err := a.cz.Wait(context.Background(), ex.containerID)
	if err != nil {
		h.executorTerminated(mesos.TaskStatus_REASON_EXECUTOR_TERMINATED, "Lost track of the executor: "+err.Error(), nil)
		return
	}
	a.mu.Lock()
	relaunch := term.NotStarted && h.recovered && !h.shuttingDown
	if relaunch {
		// Re-attached after a restart, it never got its go-ahead: the
		// executor never ran, and neither did its tasks. It starts now.
		h.recovered = false
		if h.reregTimer != nil {
			h.reregTimer.Stop()
		}
		for _, t := range ex.tasks {
			if t.state == mesos.TaskState_TASK_STAGING {
				h.queued = append(h.queued, queuedLaunch{[]*mesos.TaskInfo{t.info}, false})
			}
		}
	}
	a.mu.Unlock()
	if relaunch {
		a.log.Info("re-attached executor ended before it started; launching it again", "executor", ex.id, "container", ex.containerID)
		a.cz.Forget(ex.containerID)
		h.launchExecutor()
		return
	}
	h.executorExitedWith(term, "Executor terminated: ")
}

// executorExitedWith ends a custom executor's tasks from its container's
// termination.
func (h *httpRunner) executorExitedWith(term *container.Termination, prefix string) {
	reason := mesos.TaskStatus_REASON_EXECUTOR_TERMINATED
	if term.Limitation != nil {
		reason = limitationReason(term.Limitation.Reason)
	}
	var status *int32
	if term.StatusKnown {
		status = proto.Int32(int32(term.Status))
	}
	h.executorTerminated(reason, prefix+term.Message, status)
}

func (h *httpRunner) registrationTimedOut() {
	a, ex := h.a, h.ex
	a.mu.Lock()
	h.timedOut = true
	a.mu.Unlock()
	a.destroy(ex.containerID)
}

// executorEnv is what a custom executor reads to find its agent and learn
// its limits, in Mesos' formats (durations as "5secs").
func (a *Agent) executorEnv(ex *executor) []string {
	env := []string{
		"MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD=" + duration.Format(a.cfg.ExecutorShutdownGracePeriod),
		"MESOS_HTTP_COMMAND_EXECUTOR=0",
	}
	// Only executors talk to the agent: command tasks, which do not, are
	// not told to speak TLS (a libprocess program among them would refuse
	// to start without a key).
	env = append(env, a.cfg.TLS.ExecutorEnv(a.cfg.ExecutorTLSCertFile, a.cfg.ExecutorTLSKeyFile)...)
	if key := a.cfg.executorKey; key != nil {
		if token, err := executorToken(key, ex); err == nil {
			env = append(env, executorTokenEnv+"="+token)
		} else {
			// Without it the executor cannot subscribe, and its
			// registration timeout ends it with its tasks.
			a.log.Error("signing an executor's token", "executor", ex.id, "err", err)
		}
	}
	if ex.fw.info.GetCheckpoint() {
		env = append(env, "MESOS_CHECKPOINT=1",
			"MESOS_RECOVERY_TIMEOUT="+duration.Format(a.cfg.RecoveryTimeout),
			"MESOS_SUBSCRIPTION_BACKOFF_MAX="+duration.Format(subscriptionBackoffMax(a.cfg.ExecutorReregistrationTimeout)))
	} else {
		env = append(env, "MESOS_CHECKPOINT=0")
	}
	return env
}

// subscriptionBackoffMax caps an executor's re-subscription backoff so that
// a restarted agent sees several attempts within its re-registration
// timeout: a quarter of it, between 100ms and Mesos' 2s.
func subscriptionBackoffMax(rereg time.Duration) time.Duration {
	return min(max(rereg/4, 100*time.Millisecond), 2*time.Second).Truncate(time.Millisecond)
}

// resizeExecutor grows a custom executor's container to hold what it and
// its live tasks hold now. Before its container is launched there is
// nothing to resize: the launch takes the tasks known then and resizes
// after for any that came while it ran; an executor on its way out is not
// resized. It never shrinks a running container: a hard memory limit
// lowered under an executor's use would OOM-kill it (Mesos' memory isolator
// does not lower it either).
func (h *httpRunner) resizeExecutor() {
	a, ex := h.a, h.ex
	h.sizeMu.Lock()
	defer h.sizeMu.Unlock()
	a.mu.Lock()
	want := executorResources(ex)
	leaving := ex.terminating || ex.ended
	a.mu.Unlock()
	if !h.started || leaving || h.sized.Contains(want) {
		return
	}
	target := h.sized.Plus(want.Minus(h.sized))
	cfg := containerConfig(ex.containerID, ex.directory, &mesos.TaskInfo{}, target)
	if err := a.cz.Update(context.Background(), ex.containerID, cfg.Resources); err != nil {
		a.mu.Lock()
		gone := ex.terminating || ex.ended
		a.mu.Unlock()
		if gone || errors.Is(err, os.ErrNotExist) {
			// It exited meanwhile; its end is on its way.
			a.log.Debug("executor container gone before its resize", "executor", ex.id, "container", ex.containerID, "err", err)
			return
		}
		a.log.Warn("resizing executor container", "executor", ex.id, "container", ex.containerID, "err", err)
		return
	}
	h.sized = target
	// The run's record follows, so recovery restores the limits as they
	// are now.
	if err := a.checkpointRun(ex); err != nil {
		a.fatal(err)
	}
}

func (h *httpRunner) executorTerminated(reason mesos.TaskStatus_Reason, msg string, status *int32) {
	a, ex := h.a, h.ex
	a.mu.Lock()
	ex.terminating = true
	if h.timedOut {
		reason = mesos.TaskStatus_REASON_EXECUTOR_REGISTRATION_TIMEOUT
		msg = "Executor did not register within " + duration.Format(a.cfg.ExecutorRegistrationTimeout)
	}
	if h.reregTimedOut {
		reason = mesos.TaskStatus_REASON_EXECUTOR_REREGISTRATION_TIMEOUT
		msg = "Executor did not reregister within " + duration.Format(a.cfg.ExecutorReregistrationTimeout)
	}
	var open []*task
	for _, t := range ex.tasks {
		if !t.state.IsTerminal() && !t.recording() {
			open = append(open, t)
		}
	}
	killed := h.shuttingDown && !h.timedOut && !h.reregTimedOut
	gone := h.reregTimedOut
	h.queued = nil
	a.mu.Unlock()
	for _, t := range open {
		state := mesos.TaskState_TASK_FAILED
		switch {
		case gone:
			// Mesos: the executor and its tasks went with the agent's
			// restart, as far as anyone can tell.
			state = goneState(ex.fw)
		case killed || t.killing:
			state = mesos.TaskState_TASK_KILLED
		}
		a.taskUpdate(t, fromAgent, state, reason.Enum(), msg, containerStatus(ex.containerID))
	}
	a.executorEnded(ex, status)
}

// httpRunner runs a custom executor: its process, in the run's container,
// speaks the v1 executor API; the runner launches and supervises it,
// delivers its tasks, kills and shutdowns as events, and takes its
// updates. Its fields are guarded by a.mu unless said otherwise.
type httpRunner struct {
	a  *Agent
	ex *executor

	queued []queuedLaunch // awaiting SUBSCRIBE
	// started: its container was launched, sized to sized. Both are
	// sizeMu's, not a.mu's: the resize path owns them, and holding sizeMu
	// across a resize orders resizes so the last one applied is the newest
	// (sizeMu is taken before a.mu, never while holding it).
	sizeMu  sync.Mutex
	started bool
	sized   resources.Resources

	stream     *httpapi.Stream
	subscribed bool
	regTimer   *time.Timer
	// recovered: the executor was running when the agent restarted and
	// has not re-subscribed yet; reregTimer bounds the wait.
	recovered     bool
	reregTimer    *time.Timer
	reregTimedOut bool
	shuttingDown  bool
	timedOut      bool
}

type queuedLaunch struct {
	tasks []*mesos.TaskInfo
	group bool
}

func (h *httpRunner) traits() runnerTraits {
	return runnerTraits{kind: checkpoint.RunInfo_HTTP, typeName: "CUSTOM", reported: true}
}

// placeTasksLocked: the tasks run inside the executor's container.
func (h *httpRunner) placeTasksLocked(tasks []*task) {
	group := len(h.ex.tasks) + len(h.queued)
	for _, t := range tasks {
		t.group = group
	}
}

func (h *httpRunner) closingLocked() bool { return h.shuttingDown || h.timedOut }

// launch hands the tasks to the executor (queued until it subscribes) and
// starts the executor if it is new, else grows its container to hold them.
func (h *httpRunner) launch(tasks []*task, group, fresh bool) {
	a, ex := h.a, h.ex
	infos := make([]*mesos.TaskInfo, len(tasks))
	for i, t := range tasks {
		infos[i] = t.info
	}
	a.mu.Lock()
	if h.subscribed {
		h.stream.Send(launchEvent(infos, group, ex.info))
	} else {
		h.queued = append(h.queued, queuedLaunch{infos, group})
	}
	a.mu.Unlock()
	if err := a.prepareRun(ex, fresh); err != nil {
		for _, t := range tasks {
			a.log.Warn("task failed to start", "task", t.info.GetTaskId().GetValue(), "reason", mesos.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED, "message", err.Error())
			a.counters.containerLaunchErrors.Add(1)
			a.taskUpdate(t, fromAgent, mesos.TaskState_TASK_FAILED, mesos.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED.Enum(), err.Error(), nil)
		}
		return
	}
	if fresh {
		go h.launchExecutor()
	} else {
		h.resizeExecutor()
	}
}

// kill sends the executor a KILL; a task not yet handed to it never
// starts.
func (h *httpRunner) kill(t *task, policy *mesos.KillPolicy) {
	a, ex := h.a, h.ex
	taskID := t.info.GetTaskId().GetValue()
	a.mu.Lock()
	if t.state.IsTerminal() {
		a.mu.Unlock()
		return
	}
	if h.recovered || (!h.subscribed && !h.queuedLocked(taskID)) {
		// Delivered to an executor that is away (recovered after a
		// restart, or reconnecting): the kill goes out when it
		// subscribes again, or the task ends with it.
		t.killing = true
		a.mu.Unlock()
		return
	}
	if h.subscribed {
		h.stream.Send(&executorapi.Event{Type: executorapi.Event_KILL.Enum(), Kill: &executorapi.Event_Kill{TaskId: t.info.GetTaskId(), KillPolicy: policy}})
		a.mu.Unlock()
		return
	}
	// Not yet handed to the executor: it never starts.
	h.dequeueLocked(taskID)
	a.mu.Unlock()
	a.taskUpdate(t, fromAgent, mesos.TaskState_TASK_KILLED, mesos.TaskStatus_REASON_TASK_KILLED_DURING_LAUNCH.Enum(), "Task killed before delivery to the executor", nil)
	a.mu.Lock()
	empty := len(h.queued) == 0 && allTerminal(ex)
	a.mu.Unlock()
	if empty {
		h.shutdown()
	}
}

// shutdown asks the executor to shut down and destroys it after the grace
// period (at once if it is not subscribed).
func (h *httpRunner) shutdown() {
	a, ex := h.a, h.ex
	a.mu.Lock()
	if h.shuttingDown || ex.ended {
		a.mu.Unlock()
		return
	}
	h.shuttingDown = true
	subscribed := h.subscribed
	if subscribed {
		h.stream.Send(&executorapi.Event{Type: executorapi.Event_SHUTDOWN.Enum()})
	}
	a.mu.Unlock()
	if !subscribed {
		go a.destroy(ex.containerID)
		return
	}
	time.AfterFunc(a.cfg.ExecutorShutdownGracePeriod, func() { a.destroy(ex.containerID) })
}

func (h *httpRunner) queuedLocked(taskID string) bool {
	for _, q := range h.queued {
		for _, ti := range q.tasks {
			if ti.GetTaskId().GetValue() == taskID {
				return true
			}
		}
	}
	return false
}

func (h *httpRunner) dequeueLocked(taskID string) {
	var out []queuedLaunch
	for _, q := range h.queued {
		var keep []*mesos.TaskInfo
		for _, ti := range q.tasks {
			if ti.GetTaskId().GetValue() != taskID {
				keep = append(keep, ti)
			}
		}
		if len(keep) > 0 {
			out = append(out, queuedLaunch{keep, q.group})
		}
	}
	h.queued = out
}

func (h *httpRunner) recoveryConfigsLocked() []*container.Config {
	ex := h.ex
	return []*container.Config{containerConfig(ex.containerID, ex.directory,
		&mesos.TaskInfo{Container: ex.info.GetContainer(), Labels: ex.info.GetLabels()}, executorResources(ex))}
}

func (h *httpRunner) resumeLocked(found map[string]*containerizer.Recovered, stats *recoveryStats) []func() {
	a, ex := h.a, h.ex
	r := found[ex.containerID]
	switch {
	case r != nil && r.State == containerizer.Running:
		stats.running++
		h.recovered = true
		// Taken back at the size recoveryConfigsLocked gave it. Set
		// without sizeMu (it must not be taken under a.mu): nothing runs
		// for this executor before recovery's actions start.
		h.started, h.sized = true, executorResources(ex)
		return []func(){h.superviseExecutor}
	case r != nil && r.State == containerizer.Ended:
		stats.ended++
		term := r.Termination
		return []func(){func() { h.executorExitedWith(term, "Executor terminated while the agent was down: ") }}
	}
	// Never started: its tasks never reached it. It starts now and gets
	// them when it subscribes.
	stats.relaunched++
	var actions []func()
	for _, t := range ex.tasks {
		switch {
		case t.state.IsTerminal():
		case t.state == mesos.TaskState_TASK_STAGING:
			h.queued = append(h.queued, queuedLaunch{[]*mesos.TaskInfo{t.info}, false})
		default:
			stats.gone++
			actions = append(actions, func() {
				a.taskUpdate(t, fromAgent, goneState(ex.fw), mesos.TaskStatus_REASON_AGENT_RESTARTED.Enum(),
					"The task's executor was not found after the agent restarted", nil)
			})
		}
	}
	return append(actions, func() {
		if err := os.MkdirAll(ex.directory, 0o755); err != nil {
			a.log.Warn("recreating executor sandbox", "executor", ex.id, "err", err)
		}
		h.launchExecutor()
	})
}

// startReregistrationLocked gives a recovered executor
// --executor_reregistration_timeout to re-subscribe; one that does not is
// destroyed and its tasks are reported gone with
// REASON_EXECUTOR_REREGISTRATION_TIMEOUT.
func (h *httpRunner) startReregistrationLocked() {
	a, ex := h.a, h.ex
	if !h.recovered {
		return
	}
	h.reregTimer = time.AfterFunc(a.cfg.ExecutorReregistrationTimeout, func() {
		a.mu.Lock()
		late := h.recovered && !ex.ended
		if late {
			h.recovered, h.reregTimedOut = false, true
		}
		a.mu.Unlock()
		if late {
			a.log.Warn("recovered executor did not re-subscribe in time; destroying it", "framework", ex.fw.id,
				"executor", ex.id, "timeout", a.cfg.ExecutorReregistrationTimeout)
			a.destroy(ex.containerID)
		}
	})
}

// acknowledgedLocked tells the executor of the acknowledgement of an
// update it sent.
func (h *httpRunner) acknowledgedLocked(u *cluster.StatusUpdate) {
	if h.stream != nil && u.GetStatus().GetSource() == mesos.TaskStatus_SOURCE_EXECUTOR {
		h.stream.Send(&executorapi.Event{Type: executorapi.Event_ACKNOWLEDGED.Enum(), Acknowledged: &executorapi.Event_Acknowledged{
			TaskId: u.GetStatus().GetTaskId(), Uuid: u.GetStatus().GetUuid(),
		}})
	}
}

func (h *httpRunner) messageLocked(data []byte) bool {
	if !h.subscribed {
		return false
	}
	h.stream.Send(&executorapi.Event{Type: executorapi.Event_MESSAGE.Enum(), Message: &executorapi.Event_Message{Data: data}})
	return true
}

// ended: the container's runtime record goes (its end is checkpointed),
// the timers stop and the executor's stream closes.
func (h *httpRunner) ended() {
	a := h.a
	a.cz.Forget(h.ex.containerID)
	a.mu.Lock()
	defer a.mu.Unlock()
	if h.reregTimer != nil {
		h.reregTimer.Stop()
	}
	if h.regTimer != nil {
		h.regTimer.Stop()
	}
	if h.stream != nil {
		h.stream.Close()
	}
}

func (h *httpRunner) containerIDsLocked() []string { return []string{h.ex.containerID} }

func (h *httpRunner) phaseLocked() (terminating, registering bool) {
	return h.shuttingDown, !h.subscribed
}
