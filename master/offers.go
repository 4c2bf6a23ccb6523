package master

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/api/v1/scheduler"
	"google.golang.org/protobuf/proto"
)

// minAllocatable is Mesos' default --min_allocatable_resources
// ("cpus:0.01|mem:32"): smaller leftovers are not worth an offer.
func allocatable(r resources.Resources) bool {
	return r.Scalar("cpus") >= 0.01 || r.Scalar("mem") >= 32
}

// allocate offers every agent's free resources to the framework with the
// smallest dominant share that wants them. Called with m.mu held.
func (m *Master) allocate() {
	nowT := time.Now()
	var candidates []*framework
	for _, fw := range m.frameworks {
		if fw.active && fw.stream != nil && len(fw.offerRoles()) > 0 {
			candidates = append(candidates, fw)
		}
	}
	if len(candidates) == 0 {
		return
	}
	agents, total := m.cluster()
	shares := map[*framework]float64{}
	for _, fw := range candidates {
		shares[fw] = share(fw.allocated, total)
	}
	batches := map[*framework][]*mesos.Offer{}
	for _, a := range agents {
		free := a.freeResources()
		if !allocatable(free) {
			continue
		}
		sort.SliceStable(candidates, func(i, j int) bool {
			if shares[candidates[i]] != shares[candidates[j]] {
				return shares[candidates[i]] < shares[candidates[j]]
			}
			return candidates[i].id < candidates[j].id
		})
		for _, fw := range candidates {
			role, mine := offerable(fw, a, free, nowT)
			if role == "" {
				continue
			}
			o := &offer{id: m.offerIDs.Next(), fw: fw, agent: a, role: role, resources: mine}
			m.offers[o.id] = o
			fw.offers[o.id] = o
			m.offered(o)
			batches[fw] = append(batches[fw], m.offerMessage(o))
			shares[fw] += share(holdingsOf(mine), total)
			break
		}
	}
	for fw, offers := range batches {
		fw.send(&scheduler.Event{Type: scheduler.Event_OFFERS.Enum(), Offers: &scheduler.Event_Offers{Offers: offers}})
	}
}

// offerRoles are the framework's roles that are not suppressed.
func (fw *framework) offerRoles() []string {
	var out []string
	for _, r := range fw.roles() {
		if !fw.suppress[r] {
			out = append(out, r)
		}
	}
	return out
}

// offerable picks the first of the framework's roles (not suppressed) for
// which its part of the agent's free resources is worth an offer and not
// refused, and returns that role and part; "" when there is none. The part
// is the unreserved resources and those reserved for the role; refined
// reservations only for frameworks that understand them, as Mesos'
// allocator does.
func offerable(fw *framework, a *agent, free resources.Resources, now time.Time) (string, resources.Resources) {
	refinement := fw.hasCapability(mesos.FrameworkInfo_Capability_RESERVATION_REFINEMENT)
	for _, role := range fw.offerRoles() {
		var mine resources.Resources
		for _, r := range free {
			if rr := resources.Role(r); (rr == "*" || rr == role) && (refinement || !refined(r)) {
				mine = append(mine, r)
			}
		}
		if !allocatable(mine) || fw.filters.filtered(role, a.id, mine, now) {
			continue
		}
		return role, mine
	}
	return "", nil
}

// share is the dominant share of what a framework holds in the cluster's
// total: the largest of its fractions of each shared resource.
func share(held, total holdings) float64 {
	var s float64
	for i := range total {
		if total[i] > 0 {
			s = max(s, held[i]/total[i])
		}
	}
	return s
}

// offerMessage is the offer as the framework sees it. As in Mesos'
// Master::offer: allocation_info (on the offer and each resource) only for
// MULTI_ROLE frameworks, which know it; the old reservation form (`role`
// "*" or the reserved role) for frameworks without RESERVATION_REFINEMENT.
func (m *Master) offerMessage(o *offer) *mesos.Offer {
	role := o.role
	res := []*mesos.Resource(o.resources.Clone())
	if o.fw.hasCapability(mesos.FrameworkInfo_Capability_RESERVATION_REFINEMENT) {
		upgradeResources(res)
	} else {
		res = preRefinement(res)
	}
	multi := o.fw.hasCapability(mesos.FrameworkInfo_Capability_MULTI_ROLE)
	if multi {
		for _, r := range res {
			r.AllocationInfo = &mesos.Resource_AllocationInfo{Role: proto.String(role)}
		}
	}
	msg := &mesos.Offer{
		Id:          &mesos.OfferID{Value: proto.String(o.id)},
		FrameworkId: &mesos.FrameworkID{Value: proto.String(o.fw.id)},
		AgentId:     &mesos.AgentID{Value: proto.String(o.agent.id)},
		Hostname:    proto.String(o.agent.info.GetHostname()),
		Url:         o.agent.endpoint,
		Resources:   res,
		Attributes:  o.agent.info.GetAttributes(),
		Domain:      o.agent.info.GetDomain(),
	}
	if multi {
		msg.AllocationInfo = &mesos.Resource_AllocationInfo{Role: proto.String(role)}
	}
	for key, e := range o.agent.executors {
		if strings.HasPrefix(key, o.fw.id+"/") {
			msg.ExecutorIds = append(msg.ExecutorIds, e.info.GetExecutorId())
		}
	}
	return msg
}

// accept applies an ACCEPT call. Structural problems (operations Corral does
// not support) are refused whole with an error (400); problems with offers
// or tasks become TASK_DROPPED/TASK_LOST or TASK_ERROR updates, as in Mesos.
func (m *Master) accept(fw *framework, acc *scheduler.Call_Accept) error {
	for i, op := range acc.GetOperations() {
		switch op.GetType() {
		case mesos.Offer_Operation_LAUNCH, mesos.Offer_Operation_LAUNCH_GROUP:
		default:
			return fmt.Errorf("operation %d: type %v is not supported (Corral supports LAUNCH and LAUNCH_GROUP)", i, op.GetType())
		}
		if op.GetType() == mesos.Offer_Operation_LAUNCH && op.Launch == nil {
			return fmt.Errorf("operation %d: LAUNCH without 'launch'", i)
		}
		if op.GetType() == mesos.Offer_Operation_LAUNCH_GROUP && op.LaunchGroup == nil {
			return fmt.Errorf("operation %d: LAUNCH_GROUP without 'launch_group'", i)
		}
		// Frameworks without RESERVATION_REFINEMENT write reservations in
		// the old form; the master compares in the new one, as Mesos'
		// validateAndUpgradeResources does.
		upgradeOperation(op)
	}

	var offers []*offer
	var a *agent
	invalid := ""
	seen := map[string]bool{}
	for _, oid := range acc.GetOfferIds() {
		id := oid.GetValue()
		o := m.offers[id]
		switch {
		case seen[id]:
			invalid = "Offer " + id + " appears more than once"
		case o == nil || o.fw != fw:
			invalid = "Offer " + id + " is no longer valid"
		case a != nil && o.agent != a:
			invalid = "Offers from different agents cannot be accepted together"
		case len(offers) > 0 && o.role != offers[0].role:
			invalid = "Aggregated offers must be allocated to the same role. Offer " + id + " uses role " + o.role + " and offer " + offers[0].id + " uses role " + offers[0].role
		default:
			a = o.agent
			offers = append(offers, o)
		}
		seen[id] = true
	}
	if len(acc.GetOfferIds()) == 0 {
		invalid = "No offers were given"
	}
	var pool resources.Resources
	for _, o := range offers {
		pool = pool.Plus(o.resources)
		m.removeOffer(o)
	}
	if invalid != "" {
		state := mesos.TaskState_TASK_LOST
		if fw.partitionAware() {
			state = mesos.TaskState_TASK_DROPPED
		}
		for _, t := range launchedTasks(acc) {
			fw.send(updateEvent(rejection(t, state, mesos.TaskStatus_REASON_INVALID_OFFERS, invalid)))
		}
		m.requestAllocation()
		return nil
	}

	for _, op := range acc.GetOperations() {
		switch op.GetType() {
		case mesos.Offer_Operation_LAUNCH:
			for _, ti := range op.GetLaunch().GetTaskInfos() {
				if err := m.authorizeTask(fw, ti, ti.GetExecutor()); err != nil {
					fw.send(updateEvent(rejection(ti, mesos.TaskState_TASK_ERROR, mesos.TaskStatus_REASON_TASK_UNAUTHORIZED, err.Error())))
					continue
				}
				used, err := m.validateTask(fw, a, ti, pool, nil)
				if err != nil {
					fw.send(updateEvent(rejection(ti, mesos.TaskState_TASK_ERROR, mesos.TaskStatus_REASON_TASK_INVALID, err.Error())))
					continue
				}
				pool = pool.Minus(used)
				setFrameworkID(ti.GetExecutor(), fw.id)
				m.addTask(fw, a, offers[0].role, ti, ti.GetExecutor())
				a.send(&cluster.Event{Type: cluster.Event_RUN_TASK.Enum(), RunTask: &cluster.Event_RunTask{Framework: fw.info, Task: ti}})
			}
		case mesos.Offer_Operation_LAUNCH_GROUP:
			lg := op.GetLaunchGroup()
			var denied error
			for _, ti := range lg.GetTaskGroup().GetTasks() {
				if err := m.authorizeTask(fw, ti, lg.GetExecutor()); err != nil && denied == nil {
					denied = err
				}
			}
			if denied != nil {
				for _, ti := range lg.GetTaskGroup().GetTasks() {
					fw.send(updateEvent(rejection(ti, mesos.TaskState_TASK_ERROR, mesos.TaskStatus_REASON_TASK_GROUP_UNAUTHORIZED, denied.Error())))
				}
				continue
			}
			used, err := m.validateGroup(fw, a, lg, pool)
			if err != nil {
				for _, ti := range lg.GetTaskGroup().GetTasks() {
					fw.send(updateEvent(rejection(ti, mesos.TaskState_TASK_ERROR, mesos.TaskStatus_REASON_TASK_GROUP_INVALID, err.Error())))
				}
				continue
			}
			pool = pool.Minus(used)
			setFrameworkID(lg.GetExecutor(), fw.id)
			for _, ti := range lg.GetTaskGroup().GetTasks() {
				m.addTask(fw, a, offers[0].role, ti, lg.GetExecutor())
			}
			a.send(&cluster.Event{Type: cluster.Event_RUN_TASK_GROUP.Enum(), RunTaskGroup: &cluster.Event_RunTaskGroup{
				Framework: fw.info, Executor: lg.GetExecutor(), TaskGroup: lg.GetTaskGroup(),
			}})
		}
	}
	// What was not used goes back, kept from this framework for
	// refuse_seconds (default 5 s) as Mesos does: only that remainder is
	// refused, so resources freed later are offered again at once.
	if a != nil {
		m.filter(fw, a, offers[0].role, pool, acc.GetFilters())
	}
	m.requestAllocation()
	return nil
}

// upgradeOperation brings the resources of a launch operation's tasks and
// executors into the reservations form.
func upgradeOperation(op *mesos.Offer_Operation) {
	for _, ti := range op.GetLaunch().GetTaskInfos() {
		upgradeResources(ti.GetResources())
		upgradeResources(ti.GetExecutor().GetResources())
	}
	if lg := op.GetLaunchGroup(); lg != nil {
		upgradeResources(lg.GetExecutor().GetResources())
		for _, ti := range lg.GetTaskGroup().GetTasks() {
			upgradeResources(ti.GetResources())
		}
	}
}

// setFrameworkID fills an ExecutorInfo's framework_id as Mesos' master
// does: the agent keeps the ExecutorInfo and reports it when it
// re-registers, and the master needs the framework to own it by.
func setFrameworkID(ex *mesos.ExecutorInfo, fwID string) {
	if ex != nil && ex.FrameworkId == nil {
		ex.FrameworkId = &mesos.FrameworkID{Value: proto.String(fwID)}
	}
}

func launchedTasks(acc *scheduler.Call_Accept) []*mesos.TaskInfo {
	var out []*mesos.TaskInfo
	for _, op := range acc.GetOperations() {
		out = append(out, op.GetLaunch().GetTaskInfos()...)
		out = append(out, op.GetLaunchGroup().GetTaskGroup().GetTasks()...)
	}
	return out
}

func rejection(ti *mesos.TaskInfo, state mesos.TaskState, reason mesos.TaskStatus_Reason, msg string) *mesos.TaskStatus {
	return &mesos.TaskStatus{
		TaskId:    ti.GetTaskId(),
		AgentId:   ti.GetAgentId(),
		State:     state.Enum(),
		Source:    mesos.TaskStatus_SOURCE_MASTER.Enum(),
		Reason:    reason.Enum(),
		Message:   proto.String(msg),
		Timestamp: proto.Float64(now()),
	}
}

// validateID applies Mesos' rules for task and executor IDs: they name
// directories on the agent.
func validateID(kind, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%s ID must not be empty", kind)
	case id == "." || id == "..":
		return fmt.Errorf("%s ID '%s' is disallowed", kind, id)
	case strings.ContainsAny(id, "/\\"):
		return fmt.Errorf("%s ID '%s' contains a path separator", kind, id)
	case len(id) > 255:
		return fmt.Errorf("%s ID is longer than 255 characters", kind)
	}
	for _, c := range id {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("%s ID '%s' contains control characters", kind, id)
		}
	}
	return nil
}

// validateTask checks one task against the framework, agent and pool and
// returns the resources it takes (its own plus a new executor's).
func (m *Master) validateTask(fw *framework, a *agent, ti *mesos.TaskInfo, pool resources.Resources, groupExecutor *mesos.ExecutorInfo) (resources.Resources, error) {
	id := ti.GetTaskId().GetValue()
	if err := validateID("Task", id); err != nil {
		return nil, err
	}
	if _, dup := fw.tasks[id]; dup {
		return nil, fmt.Errorf("Task has duplicate ID: %s", id)
	}
	if ti.AgentId != nil && ti.GetAgentId().GetValue() != a.id {
		return nil, fmt.Errorf("Task uses agent %s but the offer is for agent %s", ti.GetAgentId().GetValue(), a.id)
	}
	if groupExecutor == nil && (ti.Command == nil) == (ti.Executor == nil) {
		return nil, fmt.Errorf("Task should have at least one (but not both) of CommandInfo or ExecutorInfo present")
	}
	if err := checkTaskSize(ti); err != nil {
		return nil, err
	}
	if ti.Command != nil && !ti.GetCommand().GetShell() && ti.GetCommand().GetValue() == "" {
		return nil, fmt.Errorf("Task's command has no value (with shell=false, 'value' is the program to run)")
	}
	if g := ti.GetKillPolicy().GetGracePeriod(); g != nil && g.GetNanoseconds() < 0 {
		return nil, fmt.Errorf("Task's kill policy grace period must be non-negative")
	}
	used, err := resources.New(ti.GetResources())
	if err != nil {
		return nil, fmt.Errorf("Task uses invalid resources: %v", err)
	}
	if used.Empty() {
		return nil, fmt.Errorf("Task uses no resources")
	}
	if ex := ti.GetExecutor(); ex != nil {
		exRes, err := m.validateExecutor(fw, a, ex)
		if err != nil {
			return nil, err
		}
		used = used.Plus(exRes)
	}
	if !pool.Contains(used) {
		return nil, fmt.Errorf("Task uses more resources %s than available %s", used, pool)
	}
	return used, nil
}

// validateExecutor returns the resources a new executor takes (none when it
// already runs on the agent with the same ExecutorInfo).
func (m *Master) validateExecutor(fw *framework, a *agent, ex *mesos.ExecutorInfo) (resources.Resources, error) {
	exID := ex.GetExecutorId().GetValue()
	if err := validateID("Executor", exID); err != nil {
		return nil, err
	}
	if ex.FrameworkId != nil && ex.GetFrameworkId().GetValue() != fw.id {
		return nil, fmt.Errorf("ExecutorInfo has an invalid FrameworkID (expected %s, got %s)", fw.id, ex.GetFrameworkId().GetValue())
	}
	if ex.GetType() != mesos.ExecutorInfo_DEFAULT && ex.Command == nil {
		return nil, fmt.Errorf("Executor %s has no command", exID)
	}
	if cur := a.executors[taskKey(fw.id, exID)]; cur != nil {
		if !proto.Equal(stripFramework(cur.info), stripFramework(ex)) {
			return nil, fmt.Errorf("ExecutorInfo is not compatible with ExecutorInfo of running executor %s", exID)
		}
		return nil, nil
	}
	r, err := resources.New(ex.GetResources())
	if err != nil {
		return nil, fmt.Errorf("Executor %s uses invalid resources: %v", exID, err)
	}
	return r, nil
}

func stripFramework(e *mesos.ExecutorInfo) *mesos.ExecutorInfo {
	c := proto.Clone(e).(*mesos.ExecutorInfo)
	c.FrameworkId = nil
	return c
}

func (m *Master) validateGroup(fw *framework, a *agent, lg *mesos.Offer_Operation_LaunchGroup, pool resources.Resources) (resources.Resources, error) {
	ex := lg.GetExecutor()
	if ex == nil {
		return nil, fmt.Errorf("LAUNCH_GROUP needs an executor")
	}
	if ex.GetType() != mesos.ExecutorInfo_DEFAULT && ex.GetType() != mesos.ExecutorInfo_CUSTOM {
		return nil, fmt.Errorf("LAUNCH_GROUP's executor must be of type DEFAULT or CUSTOM")
	}
	tasks := lg.GetTaskGroup().GetTasks()
	if len(tasks) == 0 {
		return nil, fmt.Errorf("Task group is empty")
	}
	used, err := m.validateExecutor(fw, a, ex)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, ti := range tasks {
		if ti.Executor != nil {
			return nil, fmt.Errorf("Task %s in a group must not set 'executor'", ti.GetTaskId().GetValue())
		}
		if seen[ti.GetTaskId().GetValue()] {
			return nil, fmt.Errorf("Task group has duplicate task ID %s", ti.GetTaskId().GetValue())
		}
		seen[ti.GetTaskId().GetValue()] = true
		r, err := m.validateTask(fw, a, ti, pool.Minus(used), ex)
		if err != nil {
			return nil, err
		}
		used = used.Plus(r)
	}
	if !pool.Contains(used) {
		return nil, fmt.Errorf("Task group uses more resources %s than available %s", used, pool)
	}
	return used, nil
}

func (m *Master) addTask(fw *framework, a *agent, role string, ti *mesos.TaskInfo, ex *mesos.ExecutorInfo) {
	res, _ := resources.New(ti.GetResources())
	t := &task{fw: fw, agent: a, id: ti.GetTaskId().GetValue(), role: role, info: keptTask(ti), resources: res, state: mesos.TaskState_TASK_STAGING}
	if ex != nil {
		t.executor = ex.GetExecutorId().GetValue()
		key := taskKey(fw.id, t.executor)
		if a.executors[key] == nil {
			exRes, _ := resources.New(ex.GetResources())
			e := &executor{fw: fw, agent: a, role: role, info: ex, resources: exRes}
			a.executors[key] = e
			fw.executors[a.id+"/"+t.executor] = e
			m.charge(fw, a, exRes)
		}
	}
	fw.tasks[t.id] = t
	a.tasks[taskKey(fw.id, t.id)] = t
	m.charge(fw, a, res)
}
