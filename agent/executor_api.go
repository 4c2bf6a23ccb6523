package agent

import (
	"fmt"
	"net/http"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/auth"
	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/httpapi"
	executorapi "github.com/corral/corral/api/v1/executor"
	"github.com/corral/corral/api/v1/mesos"
)

// serveExecutor is the v1 executor API: each call goes to its executor's
// runner (only a custom executor's answers; the others are the agent's
// own and run no executor process).
func (a *Agent) serveExecutor(w http.ResponseWriter, r *http.Request) {
	var claims *executorClaims
	if key := a.cfg.executorKey; key != nil {
		var err error
		if claims, err = authenticateExecutor(key, r); err != nil {
			auth.Challenge(w, "Bearer", executorRealm)
			return
		}
	}
	call := &executorapi.Call{}
	respCodec, ok := httpapi.DecodeCall(w, r, call)
	if !ok {
		return
	}
	fwID, exID := call.GetFrameworkId().GetValue(), call.GetExecutorId().GetValue()
	a.mu.Lock()
	ex := a.executorLocked(fwID, exID)
	if claims != nil && ex != nil {
		if err := claims.mayActFor(ex); err != nil {
			a.mu.Unlock()
			httpapi.Error(w, http.StatusForbidden, "%v", err)
			return
		}
	}
	if ex == nil || ex.ended {
		a.mu.Unlock()
		httpapi.Error(w, http.StatusBadRequest, "Executor '%s' of framework '%s' is not running on this agent", exID, fwID)
		return
	}
	a.mu.Unlock()
	ex.runner.serve(w, r, call, respCodec)
}

// serve answers the executor's calls of the v1 executor API.
func (h *httpRunner) serve(w http.ResponseWriter, r *http.Request, call *executorapi.Call, respCodec codec.Codec) {
	a, ex := h.a, h.ex
	fwID, exID := ex.fw.id, ex.id
	a.mu.Lock()
	if ex.ended {
		a.mu.Unlock()
		httpapi.Error(w, http.StatusBadRequest, "Executor '%s' of framework '%s' is not running on this agent", exID, fwID)
		return
	}
	switch call.GetType() {
	case executorapi.Call_SUBSCRIBE:
		if h.reregTimedOut {
			a.mu.Unlock()
			httpapi.Error(w, http.StatusBadRequest, "Executor '%s' of framework '%s' did not re-subscribe in time and is being destroyed", exID, fwID)
			return
		}
		stream := httpapi.NewStream(respCodec)
		if h.stream != nil {
			h.stream.Close()
		}
		h.stream, h.subscribed = stream, true
		if h.regTimer != nil {
			h.regTimer.Stop()
		}
		if h.recovered {
			h.recovered = false
			if h.reregTimer != nil {
				h.reregTimer.Stop()
			}
			h.requeueUndeliveredLocked(call.GetSubscribe())
			a.log.Info("recovered executor re-subscribed", "framework", fwID, "executor", exID)
		}
		h.subscribedLocked()
		a.mu.Unlock()
		// Updates the executor still holds from before a reconnect: new ones
		// are taken, known ones are duplicates.
		for _, u := range call.GetSubscribe().GetUnacknowledgedUpdates() {
			if code, msg := h.executorUpdate(u.GetStatus()); code != http.StatusAccepted {
				a.log.Warn("unacknowledged update from re-subscribing executor refused", "executor", exID, "reason", msg)
			}
		}
		a.log.Info("executor subscribed", "framework", fwID, "executor", exID)
		stream.Serve(w, r, "", &executorapi.Event{Type: executorapi.Event_HEARTBEAT.Enum()}, a.cfg.HeartbeatInterval)
		a.mu.Lock()
		if h.stream == stream {
			h.stream, h.subscribed = nil, false
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
		if status, msg := h.executorUpdate(s); status != http.StatusAccepted {
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
// recordWait bounds how long an executor's update waits for its task's
// launch record.
const recordWait = 10 * time.Second

func (h *httpRunner) executorUpdate(s *mesos.TaskStatus) (int, string) {
	a, ex := h.a, h.ex
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
	if t != nil && t.recording() {
		// Its launch is still being checkpointed (the executor cannot
		// have been given it yet, but may speak of it): the update waits
		// for the record, to be appended to it.
		a.mu.Unlock()
		select {
		case <-t.recorded:
		case <-time.After(recordWait):
			return http.StatusServiceUnavailable, fmt.Sprintf("Task '%s' is still being launched", taskID)
		}
		a.mu.Lock()
	}
	if acked {
		// Already acknowledged: tell the executor again, it missed it.
		if h.stream != nil {
			h.stream.Send(&executorapi.Event{Type: executorapi.Event_ACKNOWLEDGED.Enum(), Acknowledged: &executorapi.Event_Acknowledged{
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
func (h *httpRunner) requeueUndeliveredLocked(sub *executorapi.Call_Subscribe) {
	ex := h.ex
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
		if t.state != mesos.TaskState_TASK_STAGING || held[id] || h.queuedLocked(id) {
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
		h.queued = append(h.queued, queuedLaunch{groups[g], len(groups[g]) > 1})
	}
}

// subscribedLocked greets a subscribing executor and hands it the tasks that
// waited for it.
func (h *httpRunner) subscribedLocked() {
	a, ex := h.a, h.ex
	info := &mesos.AgentInfo{
		Hostname: proto.String(a.cfg.Hostname), Port: proto.Int32(int32(a.cfg.Port)),
		Resources: a.total, Id: &mesos.AgentID{Value: proto.String(a.agentID)},
	}
	h.stream.Send(&executorapi.Event{Type: executorapi.Event_SUBSCRIBED.Enum(), Subscribed: &executorapi.Event_Subscribed{
		ExecutorInfo: ex.info, FrameworkInfo: ex.fw.info, AgentInfo: info,
		ContainerId: &mesos.ContainerID{Value: proto.String(ex.containerID)},
	}})
	for _, q := range h.queued {
		h.stream.Send(launchEvent(q.tasks, q.group, ex.info))
	}
	h.queued = nil
	for _, t := range ex.tasks {
		if t.killing && !t.state.IsTerminal() {
			// A kill that came while the executor was away.
			h.stream.Send(&executorapi.Event{Type: executorapi.Event_KILL.Enum(), Kill: &executorapi.Event_Kill{TaskId: t.info.GetTaskId()}})
		}
	}
	if h.shuttingDown {
		h.stream.Send(&executorapi.Event{Type: executorapi.Event_SHUTDOWN.Enum()})
	}
}
