package master

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/corral/corral/api/auth"
	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/api/v1/scheduler"
	"github.com/corral/corral/internal/ids"
	"google.golang.org/protobuf/proto"
)

// serveScheduler is the v1 scheduler API. Its refusals follow Mesos'
// src/master/http.cpp (Master::Http::scheduler) status for status, because
// clients branch on them: mesos-go, for one, reads 400 as a malformed
// request and 403 as "not subscribed, subscribe again".
func (m *Master) serveScheduler(w http.ResponseWriter, r *http.Request) {
	// Authentication comes first, as Mesos' authenticators run before the
	// handler: an unauthenticated caller learns nothing of the call.
	principal, authenticated := "", false
	if m.cfg.FrameworkCredentials != nil {
		if principal, authenticated = m.cfg.FrameworkCredentials.Authenticate(r); !authenticated {
			auth.Unauthorized(w, frameworkRealm)
			return
		}
	}
	call := &scheduler.Call{}
	respCodec, ok := httpapi.DecodeCall(w, r, call)
	if !ok {
		return
	}
	sid, hasSID := streamIDHeader(r)
	if call.GetType() == scheduler.Call_SUBSCRIBE {
		if hasSID {
			httpapi.Error(w, http.StatusBadRequest, "Subscribe calls should not include the '%s' header", httpapi.StreamIDHeader)
			return
		}
		info := call.GetSubscribe().GetFrameworkInfo()
		if authenticated && info != nil {
			if info.Principal == nil {
				// Mesos takes the authenticated principal for a framework
				// that names none.
				info.Principal = proto.String(principal)
			} else if info.GetPrincipal() != principal {
				httpapi.Error(w, http.StatusBadRequest, "Failed to validate scheduler::Call: %v", principalMismatch(principal, info.GetPrincipal()))
				return
			}
		}
		m.subscribeFramework(w, r, call, respCodec)
		return
	}
	fwID := call.GetFrameworkId().GetValue()
	if fwID == "" {
		httpapi.Error(w, http.StatusBadRequest, "Expecting 'framework_id' to be present")
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	fw := m.frameworks[fwID]
	switch {
	case fw == nil:
		httpapi.Error(w, http.StatusBadRequest, "Framework cannot be found")
		return
	case fw.stream == nil:
		// Known but disconnected (failing over, or recovered from an
		// agent's report): it must subscribe again.
		httpapi.Error(w, http.StatusForbidden, "Framework is not subscribed")
		return
	case !hasSID:
		httpapi.Error(w, http.StatusBadRequest, "All non-subscribe calls should include the '%s' header", httpapi.StreamIDHeader)
		return
	case sid != fw.streamID:
		httpapi.Error(w, http.StatusBadRequest, "The stream ID '%s' included in this request didn't match the stream ID currently associated with framework ID %s", sid, fwID)
		return
	case authenticated && principal != fw.info.GetPrincipal():
		// Only the framework's own principal may act for it.
		httpapi.Error(w, http.StatusBadRequest, "%v", principalMismatch(principal, fw.info.GetPrincipal()))
		return
	}
	if err := m.handleFrameworkCall(fw, call); err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, errNotAuthorized) {
			code = http.StatusForbidden
		}
		httpapi.Error(w, code, "%v", err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// frameworkRealm is the realm frameworks authenticate in (Mesos'
// DEFAULT_HTTP_FRAMEWORK_AUTHENTICATION_REALM).
const frameworkRealm = "mesos-master-scheduler"

// principalMismatch is Mesos' error for a call whose authenticated
// principal is not the framework's.
func principalMismatch(authenticated, framework string) error {
	return fmt.Errorf("Authenticated principal '%s' does not match principal '%s' set in `FrameworkInfo`", authenticated, framework)
}

// errPrincipalChanged refuses a subscription or update that would give a
// known framework another principal, as Mesos does: a framework ID read
// from /state is no way to take a framework over.
var errPrincipalChanged = errors.New("Changing framework's principal is not allowed.")

// principalChanged: the two name different principals (or one names none).
func principalChanged(old, updated *mesos.FrameworkInfo) bool {
	return (old.Principal == nil) != (updated.Principal == nil) || old.GetPrincipal() != updated.GetPrincipal()
}

// immutableChanged refuses, as Mesos' validateUpdate, a FrameworkInfo that
// changes what a known framework's tasks were authorized and run as (its
// user) or how its agents keep them (checkpoint).
func immutableChanged(fw *framework, updated *mesos.FrameworkInfo) error {
	switch {
	case fw == nil || fw.recovered:
		// A framework known only from its agents' reports may hold a
		// stand-in FrameworkInfo: the subscriber's is taken.
		return nil
	case updated.GetUser() != fw.info.GetUser():
		return fmt.Errorf("Updating 'FrameworkInfo.user' is unsupported; attempted to update from '%s' to '%s'", fw.info.GetUser(), updated.GetUser())
	case updated.GetCheckpoint() != fw.info.GetCheckpoint():
		return fmt.Errorf("Updating 'FrameworkInfo.checkpoint' is unsupported; attempted to update from '%v' to '%v'", fw.info.GetCheckpoint(), updated.GetCheckpoint())
	}
	return nil
}

// streamIDHeader returns the Mesos-Stream-Id header and whether the request
// has one at all: Mesos tells a missing header (even an empty one counts as
// present) from a wrong one.
func streamIDHeader(r *http.Request) (string, bool) {
	v, ok := r.Header[http.CanonicalHeaderKey(httpapi.StreamIDHeader)]
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[0], true
}

// handleFrameworkCall applies a call; an error is the caller's fault (400).
func (m *Master) handleFrameworkCall(fw *framework, call *scheduler.Call) error {
	switch call.GetType() {
	case scheduler.Call_TEARDOWN:
		m.teardown(fw)
	case scheduler.Call_ACCEPT:
		if call.Accept == nil {
			return fmt.Errorf("Expecting 'accept' to be present")
		}
		return m.accept(fw, call.GetAccept())
	case scheduler.Call_DECLINE:
		if call.Decline == nil {
			return fmt.Errorf("Expecting 'decline' to be present")
		}
		m.decline(fw, call.GetDecline().GetOfferIds(), call.GetDecline().GetFilters())
	case scheduler.Call_ACCEPT_INVERSE_OFFERS, scheduler.Call_DECLINE_INVERSE_OFFERS:
		// Corral makes no inverse offers (no maintenance schedules yet), so
		// there is nothing to accept or decline.
	case scheduler.Call_REVIVE:
		m.revive(fw, call.GetRevive().GetRoles())
	case scheduler.Call_SUPPRESS:
		m.suppress(fw, call.GetSuppress().GetRoles())
	case scheduler.Call_KILL:
		if call.Kill == nil {
			return fmt.Errorf("Expecting 'kill' to be present")
		}
		m.killTask(fw, call.GetKill())
	case scheduler.Call_SHUTDOWN:
		if call.Shutdown == nil {
			return fmt.Errorf("Expecting 'shutdown' to be present")
		}
		m.shutdownExecutor(fw, call.GetShutdown())
	case scheduler.Call_ACKNOWLEDGE:
		if call.Acknowledge == nil {
			return fmt.Errorf("Expecting 'acknowledge' to be present")
		}
		return m.acknowledge(fw, call.GetAcknowledge())
	case scheduler.Call_RECONCILE:
		if call.Reconcile == nil {
			return fmt.Errorf("Expecting 'reconcile' to be present")
		}
		m.reconcile(fw, call.GetReconcile())
	case scheduler.Call_MESSAGE:
		if call.Message == nil {
			return fmt.Errorf("Expecting 'message' to be present")
		}
		return m.frameworkMessage(fw, call.GetMessage())
	case scheduler.Call_REQUEST:
		// Mesos' allocator ignores requests too; answered 202.
	case scheduler.Call_UPDATE_FRAMEWORK:
		if call.UpdateFramework == nil {
			return fmt.Errorf("Expecting 'update_framework' to be present")
		}
		return m.updateFramework(fw, call.GetUpdateFramework())
	case scheduler.Call_ACKNOWLEDGE_OPERATION_STATUS, scheduler.Call_RECONCILE_OPERATIONS:
		return fmt.Errorf("call %s is not supported: Corral has no operation feedback yet", call.GetType())
	default:
		return fmt.Errorf("Unknown call type %v", call.GetType())
	}
	return nil
}

func validateFrameworkInfo(info *mesos.FrameworkInfo) error {
	if info == nil {
		return fmt.Errorf("Expecting 'subscribe.framework_info' to be present")
	}
	if info.GetUser() == "" && info.User == nil {
		return fmt.Errorf("'framework_info.user' is required")
	}
	if info.GetName() == "" && info.Name == nil {
		return fmt.Errorf("'framework_info.name' is required")
	}
	multi := false
	for _, c := range info.GetCapabilities() {
		if c.GetType() == mesos.FrameworkInfo_Capability_MULTI_ROLE {
			multi = true
		}
	}
	if multi && info.Role != nil {
		return fmt.Errorf("'framework_info.role' must not be set with the MULTI_ROLE capability; use 'roles'")
	}
	if !multi && len(info.GetRoles()) > 0 {
		return fmt.Errorf("'framework_info.roles' needs the MULTI_ROLE capability")
	}
	if v := info.GetFailoverTimeout(); v < 0 {
		return fmt.Errorf("'framework_info.failover_timeout' must not be negative")
	}
	return checkFrameworkInfoSize(info)
}

func (m *Master) subscribeFramework(w http.ResponseWriter, r *http.Request, call *scheduler.Call, respCodec codec.Codec) {
	info := call.GetSubscribe().GetFrameworkInfo()
	if err := validateFrameworkInfo(info); err != nil {
		httpapi.Error(w, http.StatusBadRequest, "%v", err)
		return
	}
	if (call.FrameworkId != nil) != (info.Id != nil) || call.GetFrameworkId().GetValue() != info.GetId().GetValue() {
		httpapi.Error(w, http.StatusBadRequest, "'framework_id' must be set exactly when 'subscribe.framework_info.id' is, and equal to it")
		return
	}
	stream := httpapi.NewStream(respCodec)
	streamID := ids.String()

	m.mu.Lock()
	info = proto.Clone(info).(*mesos.FrameworkInfo)
	var fw *framework
	refuse := ""
	if id := info.GetId().GetValue(); id != "" && m.removed(id) {
		refuse = "Framework has been removed"
	} else if old := m.frameworks[id]; id != "" && old != nil && principalChanged(old.info, info) {
		// Before the framework is failed over: the subscriber is not it.
		m.log.Warn("framework tried to (re)subscribe with another principal", "framework", id,
			"principal", old.info.GetPrincipal(), "new_principal", info.GetPrincipal())
		refuse = errPrincipalChanged.Error()
	} else if err := immutableChanged(old, info); err != nil {
		refuse = err.Error()
	} else if err := m.authorizeRoles(info); err != nil {
		m.log.Warn("framework refused by --acls", "framework", id, "principal", info.GetPrincipal(), "err", err)
		refuse = err.Error()
	}
	if refuse != "" {
		m.mu.Unlock()
		// Mesos answers a subscription it refuses with an ERROR event; the
		// stream then ends.
		stream.Send(errorEvent(refuse))
		stream.Close()
		stream.Serve(w, r, streamID, nil, 0)
		return
	}
	if id := info.GetId().GetValue(); id != "" {
		fw = m.frameworks[id]
		if fw == nil {
			// A framework that re-subscribes with an ID we do not know (the
			// master restarted) keeps its ID.
			fw = newFramework(id, info)
			m.frameworks[id] = fw
		} else {
			fw.reregisteredTime = time.Now()
			if fw.stream != nil {
				m.log.Info("framework failed over", "framework", id)
				fw.stream.Send(errorEvent("Framework failed over"))
				fw.stream.Close()
			}
		}
		fw.info = info
		fw.recovered = false
	} else {
		id := m.frameworkIDs.Next()
		info.Id = &mesos.FrameworkID{Value: proto.String(id)}
		fw = newFramework(id, info)
		m.frameworks[id] = fw
	}
	if fw.failoverTimer != nil {
		fw.failoverTimer.Stop()
		fw.failoverTimer = nil
	}
	fw.stream, fw.streamID, fw.active = stream, streamID, true
	fw.suppress = map[string]bool{}
	for _, role := range call.GetSubscribe().GetSuppressedRoles() {
		fw.suppress[role] = true
	}
	// A (re)subscribed framework starts from fresh offers.
	for _, o := range fw.offers {
		m.removeOffer(o)
	}
	stream.Send(&scheduler.Event{
		Type: scheduler.Event_SUBSCRIBED.Enum(),
		Subscribed: &scheduler.Event_Subscribed{
			FrameworkId:              &mesos.FrameworkID{Value: proto.String(fw.id)},
			HeartbeatIntervalSeconds: proto.Float64(m.cfg.HeartbeatInterval.Seconds()),
			MasterInfo:               m.info,
		},
	})
	m.log.Info("framework subscribed", "framework", fw.id, "name", info.GetName())
	m.mu.Unlock()
	m.requestAllocation()

	stream.Serve(w, r, streamID, &scheduler.Event{Type: scheduler.Event_HEARTBEAT.Enum()}, m.cfg.HeartbeatInterval)

	m.mu.Lock()
	defer m.mu.Unlock()
	if fw.stream == stream {
		m.frameworkDisconnected(fw)
	}
}

// removed reports whether a framework with this ID was torn down.
func (m *Master) removed(id string) bool {
	for _, fw := range m.completedFrameworks {
		if fw.id == id {
			return true
		}
	}
	return false
}

func newFramework(id string, info *mesos.FrameworkInfo) *framework {
	now := time.Now()
	return &framework{
		id: id, info: info,
		filters:          offerFilters{},
		offers:           map[string]*offer{},
		tasks:            map[string]*task{},
		executors:        map[string]*executor{},
		suppress:         map[string]bool{},
		registeredTime:   now,
		reregisteredTime: now,
	}
}

func errorEvent(msg string) *scheduler.Event {
	return &scheduler.Event{Type: scheduler.Event_ERROR.Enum(), Error: &scheduler.Event_Error{Message: proto.String(msg)}}
}

// frameworkDisconnected deactivates a framework whose stream ended and
// removes it once its failover timeout passes.
func (m *Master) frameworkDisconnected(fw *framework) {
	m.log.Info("framework disconnected", "framework", fw.id)
	fw.stream, fw.streamID, fw.active = nil, "", false
	// Mesos' allocator drops a deactivated framework's refusals: when it
	// comes back it starts from fresh offers.
	fw.filters = offerFilters{}
	for _, o := range fw.offers {
		m.removeOffer(o)
	}
	timeout := time.Duration(fw.info.GetFailoverTimeout() * float64(time.Second))
	fw.failoverTimer = time.AfterFunc(timeout, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.frameworks[fw.id] == fw && !fw.active {
			m.log.Info("framework failover timeout passed", "framework", fw.id, "timeout", timeout)
			m.teardown(fw)
		}
	})
	m.requestAllocation()
}

// teardown removes a framework: its tasks are killed on their agents, its
// offers withdrawn and its stream closed.
func (m *Master) teardown(fw *framework) {
	m.log.Info("tearing down framework", "framework", fw.id)
	for _, o := range fw.offers {
		m.removeOffer(o)
	}
	agents := map[*agent]bool{}
	for _, t := range fw.tasks {
		agents[t.agent] = true
		// As Mesos' removeFramework: the task is implicitly killed and kept
		// among the completed ones (for /state and GET_TASKS), without an
		// update to the framework that is going away.
		if !t.state.IsTerminal() {
			s := &mesos.TaskStatus{
				TaskId:    &mesos.TaskID{Value: proto.String(t.id)},
				State:     mesos.TaskState_TASK_KILLED.Enum(),
				Source:    mesos.TaskStatus_SOURCE_MASTER.Enum(),
				Reason:    mesos.TaskStatus_REASON_FRAMEWORK_REMOVED.Enum(),
				Message:   proto.String("Framework " + fw.id + " removed"),
				Timestamp: proto.Float64(now()),
			}
			if t.agent != nil {
				s.AgentId = &mesos.AgentID{Value: proto.String(t.agent.id)}
			}
			m.applyStatus(t, s, mesos.TaskState_TASK_KILLED)
		}
		m.completeTask(t)
	}
	for _, e := range fw.executors {
		agents[e.agent] = true
		m.removeExecutor(e)
	}
	for a := range agents {
		a.send(&cluster.Event{Type: cluster.Event_SHUTDOWN_FRAMEWORK.Enum(), ShutdownFramework: &cluster.Event_ShutdownFramework{
			FrameworkId: &mesos.FrameworkID{Value: proto.String(fw.id)},
		}})
	}
	if fw.failoverTimer != nil {
		fw.failoverTimer.Stop()
	}
	if fw.stream != nil {
		fw.stream.Close()
	}
	fw.stream, fw.streamID, fw.active = nil, "", false
	fw.unregisteredTime = time.Now()
	delete(m.frameworks, fw.id)
	m.completedFrameworks = append(m.completedFrameworks, fw)
	if n := len(m.completedFrameworks); n > 50 {
		m.completedFrameworks = m.completedFrameworks[n-50:]
	}
	m.requestAllocation()
}

func (m *Master) decline(fw *framework, offerIDs []*mesos.OfferID, filters *mesos.Filters) {
	for _, oid := range offerIDs {
		o := fw.offers[oid.GetValue()]
		if o == nil {
			continue
		}
		m.removeOffer(o)
		m.filter(fw, o.agent, o.role, o.resources, filters)
	}
	m.requestAllocation()
}

// filter keeps refused (resources of agent a that the framework declined or
// left unused) away from it for refuse_seconds (default 5 s), as Mesos'
// allocator does: the refused resources, not the whole agent.
func (m *Master) filter(fw *framework, a *agent, role string, refused resources.Resources, f *mesos.Filters) {
	d := refuseDuration(f, m.cfg.AllocationInterval)
	if d <= 0 {
		return
	}
	fw.filters.add(role, a.id, refused, time.Now().Add(d))
}

// revive removes the filters of the roles (all the framework's when none
// are named) and unsuppresses them, as Mesos' allocator does.
func (m *Master) revive(fw *framework, roles []string) {
	if len(roles) == 0 {
		roles = fw.roles()
	}
	fw.filters.clearRoles(roles)
	for _, r := range roles {
		delete(fw.suppress, r)
	}
	m.requestAllocation()
}

func (m *Master) suppress(fw *framework, roles []string) {
	if len(roles) == 0 {
		roles = fw.roles()
	}
	for _, r := range roles {
		fw.suppress[r] = true
	}
	// Outstanding offers stay valid, as in Mesos: SUPPRESS only stops new ones.
}

func (m *Master) updateFramework(fw *framework, u *scheduler.Call_UpdateFramework) error {
	info := u.GetFrameworkInfo()
	if err := validateFrameworkInfo(info); err != nil {
		return err
	}
	if info.GetId().GetValue() != fw.id {
		return fmt.Errorf("'update_framework.framework_info.id' must be the framework's ID %s", fw.id)
	}
	if principalChanged(fw.info, info) {
		return errPrincipalChanged
	}
	if err := immutableChanged(fw, info); err != nil {
		return err
	}
	if err := m.authorizeRoles(info); err != nil {
		return err
	}
	fw.info = proto.Clone(info).(*mesos.FrameworkInfo)
	// Refusals of roles the framework left go with them (Mesos'
	// updateFramework).
	kept := map[string]bool{}
	for _, r := range fw.roles() {
		kept[r] = true
	}
	for r := range fw.filters {
		if !kept[r] {
			delete(fw.filters, r)
		}
	}
	fw.suppress = map[string]bool{}
	for _, r := range u.GetSuppressedRoles() {
		fw.suppress[r] = true
	}
	m.requestAllocation()
	return nil
}

func (m *Master) killTask(fw *framework, k *scheduler.Call_Kill) {
	t := fw.tasks[k.GetTaskId().GetValue()]
	if t == nil || t.agent == nil {
		// Not running: answer as reconciliation does, so the framework
		// learns where the task is — a kill sent again while the task's
		// end was on its way gets that end restated, not a TASK_LOST.
		if done := fw.completedTask(k.GetTaskId().GetValue()); done != nil {
			fw.send(updateEvent(reconciledStatus(done)))
			return
		}
		fw.send(m.unknownTaskUpdate(fw, k.GetTaskId(), k.GetAgentId(), "Attempted to kill an unknown task"))
		return
	}
	t.agent.send(killEvent(fw.id, k.GetTaskId(), k.GetKillPolicy()))
}

func (m *Master) shutdownExecutor(fw *framework, s *scheduler.Call_Shutdown) {
	a := m.agents[s.GetAgentId().GetValue()]
	if a == nil {
		return
	}
	a.send(&cluster.Event{Type: cluster.Event_SHUTDOWN_EXECUTOR.Enum(), ShutdownExecutor: &cluster.Event_ShutdownExecutor{
		FrameworkId: &mesos.FrameworkID{Value: proto.String(fw.id)}, ExecutorId: s.GetExecutorId(),
	}})
}

func (m *Master) acknowledge(fw *framework, ack *scheduler.Call_Acknowledge) error {
	if len(ack.GetUuid()) != 16 {
		return fmt.Errorf("'acknowledge.uuid' must be 16 bytes, got %d", len(ack.GetUuid()))
	}
	a := m.agents[ack.GetAgentId().GetValue()]
	t := fw.tasks[ack.GetTaskId().GetValue()]
	if t != nil && t.lastStatus != nil && t.lastStatus.GetState().IsTerminal() && bytes.Equal(t.lastStatus.GetUuid(), ack.GetUuid()) {
		m.completeTask(t)
	}
	if a == nil {
		// Master-generated updates (and those of removed agents) need no
		// agent to hear the acknowledgement.
		return nil
	}
	a.send(&cluster.Event{Type: cluster.Event_ACKNOWLEDGE.Enum(), Acknowledge: &cluster.Event_Acknowledge{
		FrameworkId: &mesos.FrameworkID{Value: proto.String(fw.id)}, TaskId: ack.GetTaskId(), Uuid: ack.GetUuid(),
	}})
	return nil
}

func (m *Master) reconcile(fw *framework, rc *scheduler.Call_Reconcile) {
	if len(rc.GetTasks()) == 0 {
		// Implicit: the latest state of every task we know.
		for _, t := range fw.tasks {
			fw.send(updateEvent(reconciledStatus(t)))
		}
		return
	}
	for _, rt := range rc.GetTasks() {
		t := fw.tasks[rt.GetTaskId().GetValue()]
		if t == nil {
			// Ended and acknowledged: Mesos answers TASK_LOST for these
			// (it forgets them); the kept end is the truth.
			t = fw.completedTask(rt.GetTaskId().GetValue())
		}
		if t != nil {
			fw.send(updateEvent(reconciledStatus(t)))
			continue
		}
		fw.send(m.unknownTaskUpdate(fw, rt.GetTaskId(), rt.GetAgentId(), "Reconciliation: task is unknown"))
	}
}

// completedTask is the task with this ID among those that ended and were
// acknowledged (bounded by --max_completed_tasks_per_framework), newest
// first; nil when it is not kept.
func (fw *framework) completedTask(id string) *task {
	for i := len(fw.completed) - 1; i >= 0; i-- {
		if fw.completed[i].id == id {
			return fw.completed[i]
		}
	}
	return nil
}

// reconciledStatus is the task's latest state without a uuid: answers to
// reconciliation need no acknowledgement.
func reconciledStatus(t *task) *mesos.TaskStatus {
	s := &mesos.TaskStatus{
		TaskId:    &mesos.TaskID{Value: proto.String(t.id)},
		State:     t.state.Enum(),
		Source:    mesos.TaskStatus_SOURCE_MASTER.Enum(),
		Reason:    mesos.TaskStatus_REASON_RECONCILIATION.Enum(),
		Timestamp: proto.Float64(now()),
	}
	if t.lastStatus != nil {
		s.Message = t.lastStatus.Message
		s.Healthy = t.lastStatus.Healthy
		s.ContainerStatus = t.lastStatus.ContainerStatus
	}
	if t.agent != nil {
		s.AgentId = &mesos.AgentID{Value: proto.String(t.agent.id)}
	}
	if t.executor != "" {
		s.ExecutorId = &mesos.ExecutorID{Value: proto.String(t.executor)}
	}
	return s
}

func (m *Master) unknownTaskUpdate(fw *framework, taskID *mesos.TaskID, agentID *mesos.AgentID, msg string) *scheduler.Event {
	state := mesos.TaskState_TASK_LOST
	if fw.partitionAware() {
		state = mesos.TaskState_TASK_UNKNOWN
	}
	s := &mesos.TaskStatus{
		TaskId:    taskID,
		State:     state.Enum(),
		Source:    mesos.TaskStatus_SOURCE_MASTER.Enum(),
		Reason:    mesos.TaskStatus_REASON_RECONCILIATION.Enum(),
		Message:   proto.String(msg),
		Timestamp: proto.Float64(now()),
	}
	if agentID != nil {
		s.AgentId = agentID
	}
	return updateEvent(s)
}

func (m *Master) frameworkMessage(fw *framework, msg *scheduler.Call_Message) error {
	a := m.agents[msg.GetAgentId().GetValue()]
	if a == nil {
		return fmt.Errorf("Unknown agent %s", msg.GetAgentId().GetValue())
	}
	a.send(&cluster.Event{Type: cluster.Event_FRAMEWORK_MESSAGE.Enum(), FrameworkMessage: &cluster.FrameworkMessage{
		FrameworkId: &mesos.FrameworkID{Value: proto.String(fw.id)}, ExecutorId: msg.GetExecutorId(), Data: msg.GetData(),
	}})
	return nil
}

func updateEvent(s *mesos.TaskStatus) *scheduler.Event {
	return &scheduler.Event{Type: scheduler.Event_UPDATE.Enum(), Update: &scheduler.Event_Update{Status: s}}
}

// send queues an event to the framework if it is connected. A disconnected
// framework misses master-generated events; updates from agents are retried
// by the agent until acknowledged.
func (fw *framework) send(e *scheduler.Event) {
	if fw.stream != nil {
		fw.stream.Send(e)
	}
}

func now() float64 { return float64(time.Now().UnixNano()) / 1e9 }

// rescind withdraws an outstanding offer and tells the framework.
func (m *Master) rescind(o *offer) {
	o.fw.send(&scheduler.Event{
		Type:    scheduler.Event_RESCIND.Enum(),
		Rescind: &scheduler.Event_Rescind{OfferId: &mesos.OfferID{Value: proto.String(o.id)}},
	})
	m.removeOffer(o)
}

func (m *Master) removeOffer(o *offer) {
	delete(m.offers, o.id)
	delete(o.fw.offers, o.id)
	m.withdrawn(o)
}
