package master

import (
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/corral/corral/api/auth"
	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/api/v1/scheduler"
	"github.com/corral/corral/internal/ids"
	"google.golang.org/protobuf/proto"
)

func (a *agent) send(e *cluster.Event) {
	if a.stream != nil {
		a.stream.Send(e)
	}
}

func (m *Master) serveAgent(w http.ResponseWriter, r *http.Request) {
	principal := ""
	if m.cfg.AgentCredentials != nil {
		var ok bool
		if principal, ok = m.cfg.AgentCredentials.Authenticate(r); !ok {
			auth.Unauthorized(w, agentRealm)
			return
		}
	}
	call := &cluster.Call{}
	respCodec, ok := httpapi.DecodeCall(w, r, call)
	if !ok {
		return
	}
	if call.GetType() == cluster.Call_SUBSCRIBE {
		m.subscribeAgent(w, r, call, httpapi.NewStream(respCodec), principal)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.agents[call.GetAgentId().GetValue()]
	if a == nil || a.streamID == "" || r.Header.Get(httpapi.StreamIDHeader) != a.streamID || principal != a.principal {
		httpapi.Error(w, http.StatusForbidden, "Agent '%s' is not subscribed on this stream", call.GetAgentId().GetValue())
		return
	}
	switch call.GetType() {
	case cluster.Call_STATUS_UPDATE:
		if call.StatusUpdate == nil {
			httpapi.Error(w, http.StatusBadRequest, "Expecting 'status_update' to be present")
			return
		}
		m.statusUpdate(a, call.GetStatusUpdate())
	case cluster.Call_EXECUTOR_EXITED:
		ex := call.GetExecutorExited()
		m.executorExited(a, ex.GetFrameworkId().GetValue(), ex.GetExecutorId().GetValue(), ex.Status)
	case cluster.Call_FRAMEWORK_MESSAGE:
		msg := call.GetFrameworkMessage()
		if fw := m.frameworks[msg.GetFrameworkId().GetValue()]; fw != nil {
			fw.send(&scheduler.Event{Type: scheduler.Event_MESSAGE.Enum(), Message: &scheduler.Event_Message{
				AgentId: &mesos.AgentID{Value: proto.String(a.id)}, ExecutorId: msg.GetExecutorId(), Data: msg.GetData(),
			}})
		}
	default:
		httpapi.Error(w, http.StatusBadRequest, "Unknown call type %v", call.GetType())
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// agentRealm is the realm agents authenticate in.
const agentRealm = "corral-master-agent"

func (m *Master) subscribeAgent(w http.ResponseWriter, r *http.Request, call *cluster.Call, stream *httpapi.Stream, principal string) {
	sub := call.GetSubscribe()
	if sub == nil {
		httpapi.Error(w, http.StatusBadRequest, "Expecting 'subscribe' to be present")
		return
	}
	info := proto.Clone(sub.GetAgentInfo()).(*mesos.AgentInfo)
	// The master compares in the reservations form (resformat.go); an
	// agent's JSON --resources may use the old `role` one.
	upgradeResources(info.GetResources())
	total, err := resources.New(info.GetResources())
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, "Invalid agent resources: %v", err)
		return
	}
	streamID := ids.String()
	m.mu.Lock()
	id := call.GetAgentId().GetValue()
	a := m.agents[id]
	if a != nil && a.principal != principal {
		// An agent ID read from /state is no way to take an agent over:
		// only the principal that registered it may subscribe it again.
		m.mu.Unlock()
		m.log.Warn("agent re-subscription by another principal refused", "agent", id, "principal", a.principal, "new_principal", principal)
		httpapi.Error(w, http.StatusForbidden, "Agent '%s' is registered by another principal", id)
		return
	}
	delete(m.unreachable, id)
	switch {
	case a != nil:
		a.reregTime = time.Now()
		if a.stream != nil {
			a.stream.Close()
		}
		if a.removal != nil {
			a.removal.Stop()
			a.removal = nil
		}
		for _, o := range offersOf(m, a) {
			m.rescind(o)
		}
	default:
		a = &agent{tasks: map[string]*task{}, executors: map[string]*executor{}, regTime: time.Now()}
		if id == "" {
			id = m.agentIDs.Next()
		} else {
			// Back under its ID after the master restarted: Mesos counts
			// that as a re-registration too.
			a.reregTime = a.regTime
		}
		a.id = id
		m.agents[id] = a
	}
	m.agentsChanged()
	info.Id = &mesos.AgentID{Value: proto.String(id)}
	a.info, a.endpoint, a.total, a.version = info, sub.GetEndpoint(), total, sub.GetVersion()
	a.freeStale = true
	a.stream, a.streamID, a.connected, a.principal = stream, streamID, true, principal
	gone := m.reconcileAgent(a, sub)
	stream.Send(&cluster.Event{Type: cluster.Event_SUBSCRIBED.Enum(), Subscribed: &cluster.Event_Subscribed{
		AgentId:                  info.Id,
		HeartbeatIntervalSeconds: proto.Float64(m.cfg.HeartbeatInterval.Seconds()),
		MasterInfo:               m.info,
	}})
	for _, fwID := range gone {
		// Torn down while the agent was away: what it still runs of the
		// framework goes, as Mesos tells a re-registering agent.
		m.log.Info("re-registered agent runs tasks of a removed framework; shutting it down there", "agent", id, "framework", fwID)
		stream.Send(&cluster.Event{Type: cluster.Event_SHUTDOWN_FRAMEWORK.Enum(), ShutdownFramework: &cluster.Event_ShutdownFramework{
			FrameworkId: &mesos.FrameworkID{Value: proto.String(fwID)},
		}})
	}
	m.log.Info("agent subscribed", "agent", id, "hostname", info.GetHostname(), "resources", total.String(), "tasks", len(sub.GetTasks()))
	m.mu.Unlock()
	m.requestAllocation()

	stream.Serve(w, r, streamID, &cluster.Event{Type: cluster.Event_HEARTBEAT.Enum()}, m.cfg.HeartbeatInterval)

	m.mu.Lock()
	defer m.mu.Unlock()
	if a.stream == stream {
		m.agentDisconnected(a)
	}
}

// reconcileAgent makes our view of a re-subscribing agent's tasks match what
// it reports: tasks it no longer has are gone, tasks we did not know (the
// master restarted) are adopted. It returns the frameworks the agent still
// runs tasks of although they were torn down: the agent must shut them down.
func (m *Master) reconcileAgent(a *agent, sub *cluster.Call_Subscribe) (removedFrameworks []string) {
	reported := map[string]*mesos.Task{}
	seenRemoved := map[string]bool{}
	for _, t := range sub.GetTasks() {
		upgradeResources(t.GetResources())
	}
	for _, e := range sub.GetExecutors() {
		upgradeResources(e.GetResources())
	}
	for _, t := range sub.GetTasks() {
		fwID := t.GetFrameworkId().GetValue()
		if m.frameworks[fwID] == nil && m.removed(fwID) {
			if !seenRemoved[fwID] {
				seenRemoved[fwID] = true
				removedFrameworks = append(removedFrameworks, fwID)
			}
			continue
		}
		reported[taskKey(fwID, t.GetTaskId().GetValue())] = t
	}
	for key, t := range a.tasks {
		if _, ok := reported[key]; ok {
			continue
		}
		if t.state.IsTerminal() {
			// Its end reached the framework; the agent is done with it.
			m.completeTask(t)
			continue
		}
		state, reason := mesos.TaskState_TASK_LOST, mesos.TaskStatus_REASON_AGENT_RESTARTED
		if t.fw.partitionAware() {
			state = mesos.TaskState_TASK_GONE
		}
		m.masterUpdate(t, state, reason, "Task was not reported by its agent when it re-registered")
	}
	frameworks := map[string]*mesos.FrameworkInfo{}
	for _, f := range sub.GetFrameworks() {
		frameworks[f.GetId().GetValue()] = f
	}
	for key, rt := range reported {
		if t, ok := a.tasks[key]; ok {
			// A terminal state reported here arrives as the agent's status
			// update too, which releases the task's resources; taking it
			// now would make that update find the task already ended.
			if !rt.GetState().IsTerminal() && !t.state.IsTerminal() {
				t.state = rt.GetState()
			}
			continue
		}
		fwID := rt.GetFrameworkId().GetValue()
		fw := m.frameworks[fwID]
		if fw == nil {
			info := frameworks[fwID]
			if info == nil {
				info = &mesos.FrameworkInfo{User: proto.String(""), Name: proto.String(""), Id: rt.GetFrameworkId()}
			}
			fw = newFramework(fwID, proto.Clone(info).(*mesos.FrameworkInfo))
			fw.recovered = true
			m.frameworks[fwID] = fw
			// An adopted framework must re-subscribe within its failover
			// timeout like any disconnected one.
			m.frameworkDisconnected(fw)
		}
		res, _ := resources.New(rt.GetResources())
		t := &task{
			fw: fw, agent: a, id: rt.GetTaskId().GetValue(), executor: rt.GetExecutorId().GetValue(), role: allocationRole(fw, rt.GetResources()),
			info:      &mesos.TaskInfo{Name: rt.Name, TaskId: rt.TaskId, AgentId: &mesos.AgentID{Value: proto.String(a.id)}, Resources: rt.GetResources(), Labels: rt.Labels},
			resources: res, state: rt.GetState(), statuses: keptStatuses(rt.GetStatuses()),
		}
		// The user the agent runs it as: what view_tasks judges it by (and
		// /state shows) when it is not the framework's.
		if u := rt.GetUser(); u != "" && u != fw.info.GetUser() {
			t.info.Command = &mesos.CommandInfo{User: proto.String(u)}
		}
		fw.tasks[t.id] = t
		a.tasks[key] = t
		if !t.state.IsTerminal() {
			m.charge(fw, a, res)
		}
	}
	// Executors the agent no longer runs (they ended while it was down or
	// restarting) give their resources back.
	reportedExecutors := map[string]bool{}
	for _, e := range sub.GetExecutors() {
		reportedExecutors[taskKey(e.GetFrameworkId().GetValue(), e.GetExecutorId().GetValue())] = true
	}
	for key, e := range a.executors {
		if !reportedExecutors[key] {
			m.removeExecutor(e)
		}
	}
	for _, e := range sub.GetExecutors() {
		fwID := e.GetFrameworkId().GetValue()
		fw := m.frameworks[fwID]
		key := taskKey(fwID, e.GetExecutorId().GetValue())
		if fw == nil || a.executors[key] != nil {
			continue
		}
		res, _ := resources.New(e.GetResources())
		ex := &executor{fw: fw, agent: a, role: allocationRole(fw, e.GetResources()), info: e, resources: res}
		a.executors[key], fw.executors[a.id+"/"+e.GetExecutorId().GetValue()] = ex, ex
		m.charge(fw, a, res)
	}
	sort.Strings(removedFrameworks)
	return removedFrameworks
}

func offersOf(m *Master, a *agent) []*offer {
	var out []*offer
	for _, o := range m.offers {
		if o.agent == a {
			out = append(out, o)
		}
	}
	return out
}

// agentDisconnected withdraws the agent's offers and, unless it comes back
// within the re-register timeout, reports its tasks lost.
func (m *Master) agentDisconnected(a *agent) {
	m.log.Warn("agent disconnected", "agent", a.id)
	a.stream, a.streamID, a.connected = nil, "", false
	m.agentsChanged()
	for _, o := range offersOf(m, a) {
		m.rescind(o)
	}
	a.removal = time.AfterFunc(m.cfg.AgentReregisterTimeout, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.agents[a.id] == a && !a.connected {
			m.removeAgent(a)
		}
	})
}

func (m *Master) removeAgent(a *agent) {
	m.log.Warn("removing agent that did not re-register", "agent", a.id, "timeout", m.cfg.AgentReregisterTimeout)
	for _, t := range a.tasks {
		state := mesos.TaskState_TASK_LOST
		if t.fw.partitionAware() {
			state = mesos.TaskState_TASK_UNREACHABLE
		}
		m.masterUpdate(t, state, mesos.TaskStatus_REASON_AGENT_REMOVED, "Agent "+a.id+" did not re-register within "+m.cfg.AgentReregisterTimeout.String())
		m.removeTask(t, true)
	}
	for _, e := range a.executors {
		m.removeExecutor(e)
	}
	for _, fw := range m.frameworks {
		fw.filters.clearAgent(a.id)
	}
	delete(m.agents, a.id)
	m.agentsChanged()
	m.markUnreachable(a.id)
}

// markUnreachable remembers a removed agent, forgetting the oldest past
// maxUnreachableAgents.
func (m *Master) markUnreachable(id string) {
	m.unreachable[id] = time.Now()
	for len(m.unreachable) > maxUnreachableAgents {
		oldest, at := "", time.Time{}
		for k, t := range m.unreachable {
			if oldest == "" || t.Before(at) {
				oldest, at = k, t
			}
		}
		delete(m.unreachable, oldest)
	}
}

// masterUpdate moves a task to a state the master decided and tells the
// framework. Like Mesos, such updates carry no uuid and need no
// acknowledgement, so a terminal one completes the task at once.
func (m *Master) masterUpdate(t *task, state mesos.TaskState, reason mesos.TaskStatus_Reason, msg string) {
	s := &mesos.TaskStatus{
		TaskId:    &mesos.TaskID{Value: proto.String(t.id)},
		State:     state.Enum(),
		Source:    mesos.TaskStatus_SOURCE_MASTER.Enum(),
		Reason:    reason.Enum(),
		Message:   proto.String(msg),
		Timestamp: proto.Float64(now()),
	}
	if t.agent != nil {
		s.AgentId = &mesos.AgentID{Value: proto.String(t.agent.id)}
	}
	if t.executor != "" {
		s.ExecutorId = &mesos.ExecutorID{Value: proto.String(t.executor)}
	}
	m.applyStatus(t, s, state)
	t.fw.send(updateEvent(s))
	if state.IsTerminal() {
		m.completeTask(t)
	}
}

// statusUpdate records an agent's status update and forwards it.
func (m *Master) statusUpdate(a *agent, u *cluster.StatusUpdate) {
	s := u.GetStatus()
	fw := m.frameworks[u.GetFrameworkId().GetValue()]
	if fw == nil {
		m.log.Warn("status update for unknown framework", "framework", u.GetFrameworkId().GetValue(), "task", s.GetTaskId().GetValue())
		return
	}
	t := fw.tasks[s.GetTaskId().GetValue()]
	latest := s.GetState()
	if u.LatestState != nil {
		latest = u.GetLatestState()
	}
	if t != nil {
		m.applyStatus(t, s, latest)
	}
	fw.send(updateEvent(s))
}

func (m *Master) applyStatus(t *task, s *mesos.TaskStatus, latest mesos.TaskState) {
	wasTerminal := t.state.IsTerminal()
	t.state = latest
	s = keptStatus(s)
	t.lastStatus = s
	t.statuses = append(t.statuses, s)
	if n := len(t.statuses); n > maxKeptStatuses {
		t.statuses = t.statuses[n-maxKeptStatuses:]
	}
	if !wasTerminal && latest.IsTerminal() {
		// Resources come back as soon as the agent says the task ended,
		// not when the update is acknowledged, as Mesos does.
		if t.agent != nil {
			m.refund(t.fw, t.agent, t.resources)
		}
		m.requestAllocation()
	}
}

func (m *Master) executorExited(a *agent, fwID, exID string, status *int32) {
	key := taskKey(fwID, exID)
	e := a.executors[key]
	if e != nil {
		m.removeExecutor(e)
		m.requestAllocation()
	}
	if fw := m.frameworks[fwID]; fw != nil {
		fw.send(&scheduler.Event{Type: scheduler.Event_FAILURE.Enum(), Failure: &scheduler.Event_Failure{
			AgentId: &mesos.AgentID{Value: proto.String(a.id)}, ExecutorId: &mesos.ExecutorID{Value: proto.String(exID)}, Status: status,
		}})
	}
}

func (m *Master) removeExecutor(e *executor) {
	key := taskKey(e.fw.id, e.info.GetExecutorId().GetValue())
	if e.agent.executors[key] == e {
		delete(e.agent.executors, key)
		m.refund(e.fw, e.agent, e.resources)
	}
	delete(e.fw.executors, e.agent.id+"/"+e.info.GetExecutorId().GetValue())
}

// removeTask forgets a task; with release its resources return to the agent.
func (m *Master) removeTask(t *task, release bool) {
	if release && !t.state.IsTerminal() && t.agent != nil {
		m.refund(t.fw, t.agent, t.resources)
	}
	delete(t.fw.tasks, t.id)
	if t.agent != nil {
		delete(t.agent.tasks, taskKey(t.fw.id, t.id))
	}
}

// completeTask moves an acknowledged terminal task to the completed list.
func (m *Master) completeTask(t *task) {
	m.removeTask(t, false)
	m.ended[t.state]++
	fw := t.fw
	fw.completed = append(fw.completed, t)
	if n := len(fw.completed); n > m.cfg.MaxCompletedTasksPerFramework {
		fw.completed = fw.completed[n-m.cfg.MaxCompletedTasksPerFramework:]
	}
}

func killEvent(fwID string, taskID *mesos.TaskID, policy *mesos.KillPolicy) *cluster.Event {
	return &cluster.Event{Type: cluster.Event_KILL_TASK.Enum(), KillTask: &cluster.Event_KillTask{
		FrameworkId: &mesos.FrameworkID{Value: proto.String(fwID)}, TaskId: taskID, KillPolicy: policy,
	}}
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
