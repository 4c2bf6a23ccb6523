package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/duration"
	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/resources"
	executorapi "github.com/corral/corral/api/v1/executor"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/container"
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
func (a *Agent) launchExecutor(ex *executor) {
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
				a.mu.Lock()
				ex.started, ex.sized = true, res
				a.mu.Unlock()
				// Tasks that came while it was launched.
				a.resizeExecutor(ex)
			}
		}
	}
	if err != nil {
		a.log.Warn("executor failed to launch", "executor", ex.id, "err", err)
		a.mu.Lock()
		a.counters.containerLaunchErrors++
		a.mu.Unlock()
		a.executorTerminated(ex, mesos.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED, "Failed to launch executor: "+err.Error(), nil)
		return
	}
	a.mu.Lock()
	ex.regTimer = time.AfterFunc(a.cfg.ExecutorRegistrationTimeout, func() {
		a.mu.Lock()
		late := !ex.subscribed && !ex.ended
		a.mu.Unlock()
		if late {
			a.log.Warn("executor did not subscribe in time; destroying it", "executor", ex.id, "timeout", a.cfg.ExecutorRegistrationTimeout)
			a.mu.Lock()
			ex.shuttingDown = true
			a.mu.Unlock()
			a.registrationTimedOut(ex)
		}
	})
	a.mu.Unlock()
	a.superviseExecutor(ex)
}

// superviseExecutor waits for a custom executor's container to end and
// ends its tasks.
func (a *Agent) superviseExecutor(ex *executor) {
	term, err := a.cz.Wait(context.Background(), ex.containerID)
	if err != nil {
		a.executorTerminated(ex, mesos.TaskStatus_REASON_EXECUTOR_TERMINATED, "Lost track of the executor: "+err.Error(), nil)
		return
	}
	a.mu.Lock()
	relaunch := term.NotStarted && ex.recovered && !ex.shuttingDown
	if relaunch {
		// Re-attached after a restart, it never got its go-ahead: the
		// executor never ran, and neither did its tasks. It starts now.
		ex.recovered = false
		if ex.reregTimer != nil {
			ex.reregTimer.Stop()
		}
		for _, t := range ex.tasks {
			if t.state == mesos.TaskState_TASK_STAGING {
				ex.queued = append(ex.queued, queuedLaunch{[]*mesos.TaskInfo{t.info}, false})
			}
		}
	}
	a.mu.Unlock()
	if relaunch {
		a.log.Info("re-attached executor ended before it started; launching it again", "executor", ex.id, "container", ex.containerID)
		a.cz.Forget(ex.containerID)
		a.launchExecutor(ex)
		return
	}
	a.executorExitedWith(ex, term, "Executor terminated: ")
}

// executorExitedWith ends a custom executor's tasks from its container's
// termination.
func (a *Agent) executorExitedWith(ex *executor, term *container.Termination, prefix string) {
	reason := mesos.TaskStatus_REASON_EXECUTOR_TERMINATED
	if term.Limitation != nil {
		reason = limitationReason(term.Limitation.Reason)
	}
	var status *int32
	if term.StatusKnown {
		status = proto.Int32(int32(term.Status))
	}
	a.executorTerminated(ex, reason, prefix+term.Message, status)
}

func (a *Agent) registrationTimedOut(ex *executor) {
	a.mu.Lock()
	ex.timedOut = true
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
func (a *Agent) resizeExecutor(ex *executor) {
	ex.resizeMu.Lock()
	defer ex.resizeMu.Unlock()
	a.mu.Lock()
	want := executorResources(ex)
	if !ex.started || ex.terminating || ex.ended || ex.sized.Contains(want) {
		a.mu.Unlock()
		return
	}
	target := ex.sized.Plus(want.Minus(ex.sized))
	a.mu.Unlock()
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
	a.mu.Lock()
	ex.sized = target
	a.mu.Unlock()
	// The run's record follows, so recovery restores the limits as they
	// are now.
	if err := a.checkpointRun(ex); err != nil {
		a.fatal(err)
	}
}

func (a *Agent) executorTerminated(ex *executor, reason mesos.TaskStatus_Reason, msg string, status *int32) {
	a.mu.Lock()
	ex.terminating = true
	if ex.timedOut {
		reason = mesos.TaskStatus_REASON_EXECUTOR_REGISTRATION_TIMEOUT
		msg = "Executor did not register within " + duration.Format(a.cfg.ExecutorRegistrationTimeout)
	}
	if ex.reregTimedOut {
		reason = mesos.TaskStatus_REASON_EXECUTOR_REREGISTRATION_TIMEOUT
		msg = "Executor did not reregister within " + duration.Format(a.cfg.ExecutorReregistrationTimeout)
	}
	var open []*task
	for _, t := range ex.tasks {
		if !t.state.IsTerminal() && !t.recording {
			open = append(open, t)
		}
	}
	killed := ex.shuttingDown && !ex.timedOut && !ex.reregTimedOut
	gone := ex.reregTimedOut
	ex.queued = nil
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

// serveExecutor is the v1 executor API.
func (a *Agent) serveExecutor(w http.ResponseWriter, r *http.Request) {
	call := &executorapi.Call{}
	respCodec, ok := httpapi.DecodeCall(w, r, call)
	if !ok {
		return
	}
	fwID, exID := call.GetFrameworkId().GetValue(), call.GetExecutorId().GetValue()
	a.mu.Lock()
	ex := a.executorLocked(fwID, exID)
	if ex == nil || ex.kind != httpExecutor || ex.ended {
		a.mu.Unlock()
		httpapi.Error(w, http.StatusBadRequest, "Executor '%s' of framework '%s' is not running on this agent", exID, fwID)
		return
	}
	switch call.GetType() {
	case executorapi.Call_SUBSCRIBE:
		if ex.reregTimedOut {
			a.mu.Unlock()
			httpapi.Error(w, http.StatusBadRequest, "Executor '%s' of framework '%s' did not re-subscribe in time and is being destroyed", exID, fwID)
			return
		}
		stream := httpapi.NewStream(respCodec)
		if ex.stream != nil {
			ex.stream.Close()
		}
		ex.stream, ex.subscribed = stream, true
		if ex.regTimer != nil {
			ex.regTimer.Stop()
		}
		if ex.recovered {
			ex.recovered = false
			if ex.reregTimer != nil {
				ex.reregTimer.Stop()
			}
			a.requeueUndeliveredLocked(ex, call.GetSubscribe())
			a.log.Info("recovered executor re-subscribed", "framework", fwID, "executor", exID)
		}
		a.subscribedLocked(ex)
		a.mu.Unlock()
		// Updates the executor still holds from before a reconnect: new ones
		// are taken, known ones are duplicates.
		for _, u := range call.GetSubscribe().GetUnacknowledgedUpdates() {
			if code, msg := a.executorUpdate(ex, u.GetStatus()); code != http.StatusAccepted {
				a.log.Warn("unacknowledged update from re-subscribing executor refused", "executor", exID, "reason", msg)
			}
		}
		a.log.Info("executor subscribed", "framework", fwID, "executor", exID)
		stream.Serve(w, r, "", &executorapi.Event{Type: executorapi.Event_HEARTBEAT.Enum()}, a.cfg.HeartbeatInterval)
		a.mu.Lock()
		if ex.stream == stream {
			ex.stream, ex.subscribed = nil, false
			if !ex.ended && !ex.fw.info.GetCheckpoint() {
				// Without checkpointing an executor that loses its agent
				// link cannot recover; Mesos shuts it down as well.
				a.mu.Unlock()
				a.log.Warn("executor disconnected; destroying it (framework does not checkpoint)", "executor", exID)
				a.destroy(ex.containerID)
				return
			}
		}
		a.mu.Unlock()
		return
	case executorapi.Call_UPDATE:
		s := call.GetUpdate().GetStatus()
		a.mu.Unlock()
		if status, msg := a.executorUpdate(ex, s); status != http.StatusAccepted {
			httpapi.Error(w, status, "%s", msg)
			return
		}
	case executorapi.Call_MESSAGE:
		a.mu.Unlock()
		if call.Message == nil {
			httpapi.Error(w, http.StatusBadRequest, "Expecting 'message' to be present")
			return
		}
		go a.callMaster(&cluster.Call{Type: cluster.Call_FRAMEWORK_MESSAGE.Enum(), FrameworkMessage: &cluster.FrameworkMessage{
			FrameworkId: call.GetFrameworkId(), ExecutorId: call.GetExecutorId(), Data: call.GetMessage().GetData(),
		}})
	default:
		a.mu.Unlock()
		httpapi.Error(w, http.StatusBadRequest, "Unknown executor call type %v", call.GetType())
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// executorUpdate takes a status update from a custom executor and returns
// the HTTP status to answer with and, for errors, the reason.
func (a *Agent) executorUpdate(ex *executor, s *mesos.TaskStatus) (int, string) {
	if s == nil {
		return http.StatusBadRequest, "Expecting 'update.status' to be present"
	}
	if len(s.GetUuid()) != 16 {
		return http.StatusBadRequest, "Status update 'uuid' must be 16 bytes"
	}
	if s.ExecutorId != nil && s.GetExecutorId().GetValue() != ex.id {
		return http.StatusBadRequest, fmt.Sprintf("ExecutorID in Call: %s does not match ExecutorID in TaskStatus: %s", ex.id, s.GetExecutorId().GetValue())
	}
	// As Mesos' validation: an executor speaks only for itself (an unset
	// source reads as SOURCE_MASTER, so it is refused too), so a scheduler
	// can trust that SOURCE_MASTER and SOURCE_AGENT updates are not forged.
	if s.GetSource() != mesos.TaskStatus_SOURCE_EXECUTOR {
		return http.StatusBadRequest, fmt.Sprintf("Received Call from executor %s of framework %s with invalid source %s, expecting 'SOURCE_EXECUTOR'", ex.id, ex.fw.id, s.GetSource())
	}
	taskID := s.GetTaskId().GetValue()
	pending, acked := a.updates.Seen(ex.fw.id, taskID, s.GetUuid())
	if pending {
		return http.StatusAccepted, ""
	}
	a.mu.Lock()
	t := ex.tasks[taskID]
	if acked {
		// Already acknowledged: tell the executor again, it missed it.
		if ex.stream != nil {
			ex.stream.Send(&executorapi.Event{Type: executorapi.Event_ACKNOWLEDGED.Enum(), Acknowledged: &executorapi.Event_Acknowledged{
				TaskId: s.GetTaskId(), Uuid: s.GetUuid(),
			}})
		}
		a.mu.Unlock()
		return http.StatusAccepted, ""
	}
	var problem string
	switch {
	case t == nil:
		problem = fmt.Sprintf("Task '%s' is not a task of executor '%s'", taskID, ex.id)
	case s.GetState() == mesos.TaskState_TASK_STAGING:
		problem = "An executor may not send TASK_STAGING"
	case t.state.IsTerminal():
		problem = fmt.Sprintf("Task '%s' is already in terminal state %s", taskID, t.state)
	}
	a.mu.Unlock()
	if problem != "" {
		return http.StatusBadRequest, problem
	}
	s = proto.Clone(s).(*mesos.TaskStatus)
	s.ExecutorId = &mesos.ExecutorID{Value: proto.String(ex.id)}
	if s.Timestamp == nil {
		s.Timestamp = proto.Float64(float64(time.Now().UnixNano()) / 1e9)
	}
	if s.ContainerStatus == nil {
		s.ContainerStatus = containerStatus(ex.containerID)
	}
	a.statusUpdate(t, s)
	return http.StatusAccepted, ""
}

// requeueUndeliveredLocked runs when an executor recovered after an agent
// restart re-subscribes: a task the agent recorded but the executor does
// not hold (neither among its unacknowledged tasks nor with an update of
// its own) never reached it — the agent died between recording it and
// delivering it — and is delivered now.
func (a *Agent) requeueUndeliveredLocked(ex *executor, sub *executorapi.Call_Subscribe) {
	held := map[string]bool{}
	for _, t := range sub.GetUnacknowledgedTasks() {
		held[t.GetTaskId().GetValue()] = true
	}
	for _, u := range sub.GetUnacknowledgedUpdates() {
		held[u.GetStatus().GetTaskId().GetValue()] = true
	}
	groups := map[int][]*mesos.TaskInfo{}
	var order []int
	for id, t := range ex.tasks {
		if t.state != mesos.TaskState_TASK_STAGING || held[id] || queuedLocked(ex, id) {
			continue
		}
		if _, ok := groups[t.group]; !ok {
			order = append(order, t.group)
		}
		groups[t.group] = append(groups[t.group], t.info)
	}
	sort.Ints(order)
	for _, g := range order {
		// Tasks launched together went out as one LAUNCH_GROUP.
		ex.queued = append(ex.queued, queuedLaunch{groups[g], len(groups[g]) > 1})
	}
}

// subscribedLocked greets a subscribing executor and hands it the tasks that
// waited for it.
func (a *Agent) subscribedLocked(ex *executor) {
	info := &mesos.AgentInfo{
		Hostname: proto.String(a.cfg.Hostname), Port: proto.Int32(int32(a.cfg.Port)),
		Resources: a.total, Id: &mesos.AgentID{Value: proto.String(a.agentID)},
	}
	ex.stream.Send(&executorapi.Event{Type: executorapi.Event_SUBSCRIBED.Enum(), Subscribed: &executorapi.Event_Subscribed{
		ExecutorInfo: ex.info, FrameworkInfo: ex.fw.info, AgentInfo: info,
		ContainerId: &mesos.ContainerID{Value: proto.String(ex.containerID)},
	}})
	for _, q := range ex.queued {
		ex.stream.Send(launchEvent(q.tasks, q.group, ex.info))
	}
	ex.queued = nil
	for _, t := range ex.tasks {
		if t.killing && !t.state.IsTerminal() {
			// A kill that came while the executor was away.
			ex.stream.Send(&executorapi.Event{Type: executorapi.Event_KILL.Enum(), Kill: &executorapi.Event_Kill{TaskId: t.info.GetTaskId()}})
		}
	}
	if ex.shuttingDown {
		ex.stream.Send(&executorapi.Event{Type: executorapi.Event_SHUTDOWN.Enum()})
	}
}
