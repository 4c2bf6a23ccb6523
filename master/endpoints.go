package master

import (
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/v1/master"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/version"
	"google.golang.org/protobuf/proto"
)

func sortedAgents(m *Master) []*agent {
	out := make([]*agent, 0, len(m.agents))
	for _, a := range m.agents {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

func sortedFrameworks(m *Master) []*framework {
	out := make([]*framework, 0, len(m.frameworks))
	for _, fw := range m.frameworks {
		out = append(out, fw)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

func sortedTasks(tasks map[string]*task) []*task {
	out := make([]*task, 0, len(tasks))
	for _, t := range tasks {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// serveOperator is the v1 operator API (POST /api/v1) for the calls Corral
// answers so far.
func (m *Master) serveOperator(w http.ResponseWriter, r *http.Request) {
	call := &master.Call{}
	c, ok := httpapi.DecodeCall(w, r, call)
	if !ok {
		return
	}
	resp := &master.Response{}
	v := m.viewerOf(r)
	switch call.GetType() {
	case master.Call_GET_HEALTH:
		resp.Type = master.Response_GET_HEALTH.Enum()
		resp.GetHealth = &master.Response_GetHealth{Healthy: proto.Bool(true)}
	case master.Call_GET_VERSION:
		resp.Type = master.Response_GET_VERSION.Enum()
		resp.GetVersion = &master.Response_GetVersion{VersionInfo: &mesos.VersionInfo{Version: proto.String(version.MesosCompat)}}
	case master.Call_GET_FLAGS:
		if !v.Flags() {
			httpapi.Error(w, http.StatusForbidden, "Not authorized to view flags")
			return
		}
		resp.Type = master.Response_GET_FLAGS.Enum()
		resp.GetFlags = &master.Response_GetFlags{}
		for _, k := range sortedKeys(m.cfg.Flags) {
			resp.GetFlags.Flags = append(resp.GetFlags.Flags, &mesos.Flag{Name: proto.String(k), Value: proto.String(m.cfg.Flags[k])})
		}
	case master.Call_GET_STATE:
		resp.Type = master.Response_GET_STATE.Enum()
		m.mu.Lock()
		resp.GetState = &master.Response_GetState{GetTasks: m.getTasks(v), GetFrameworks: m.getFrameworks(v), GetAgents: m.getAgents(), GetExecutors: m.getExecutors(v)}
		m.mu.Unlock()
	case master.Call_GET_AGENTS:
		resp.Type = master.Response_GET_AGENTS.Enum()
		m.mu.Lock()
		resp.GetAgents = m.getAgents()
		m.mu.Unlock()
	case master.Call_GET_FRAMEWORKS:
		resp.Type = master.Response_GET_FRAMEWORKS.Enum()
		m.mu.Lock()
		resp.GetFrameworks = m.getFrameworks(v)
		m.mu.Unlock()
	case master.Call_GET_TASKS:
		resp.Type = master.Response_GET_TASKS.Enum()
		m.mu.Lock()
		resp.GetTasks = m.getTasks(v)
		m.mu.Unlock()
	case master.Call_GET_EXECUTORS:
		resp.Type = master.Response_GET_EXECUTORS.Enum()
		m.mu.Lock()
		resp.GetExecutors = m.getExecutors(v)
		m.mu.Unlock()
	default:
		httpapi.Error(w, http.StatusBadRequest, "Operator call %v is not supported by this master", call.GetType())
		return
	}
	httpapi.Respond(w, c, resp)
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func timeInfo(t time.Time) *mesos.TimeInfo {
	return &mesos.TimeInfo{Nanoseconds: proto.Int64(t.UnixNano())}
}

func (m *Master) getAgents() *master.Response_GetAgents {
	out := &master.Response_GetAgents{}
	for _, a := range sortedAgents(m) {
		ag := &master.Response_GetAgents_Agent{
			AgentInfo: a.info, Active: proto.Bool(a.connected), Deactivated: proto.Bool(false), Version: proto.String(a.version),
			Pid:            proto.String("slave(1)@" + a.endpoint.GetAddress().GetIp() + ":" + strconv.Itoa(int(a.endpoint.GetAddress().GetPort()))),
			RegisteredTime: timeInfo(a.regTime), TotalResources: a.total,
			AllocatedResources: a.used, OfferedResources: a.offered,
		}
		if !a.reregTime.IsZero() {
			ag.ReregisteredTime = timeInfo(a.reregTime)
		}
		for _, c := range agentCapabilities {
			ag.Capabilities = append(ag.Capabilities, &mesos.AgentInfo_Capability{
				Type: mesos.AgentInfo_Capability_Type(mesos.AgentInfo_Capability_Type_value[c]).Enum(),
			})
		}
		out.Agents = append(out.Agents, ag)
	}
	return out
}

func (m *Master) getFrameworks(v viewer) *master.Response_GetFrameworks {
	out := &master.Response_GetFrameworks{}
	for _, fw := range sortedFrameworks(m) {
		if v.framework(fw) {
			out.Frameworks = append(out.Frameworks, frameworkMessage(fw))
		}
	}
	for _, fw := range m.completedFrameworks {
		if v.framework(fw) {
			out.CompletedFrameworks = append(out.CompletedFrameworks, frameworkMessage(fw))
		}
	}
	return out
}

func frameworkMessage(fw *framework) *master.Response_GetFrameworks_Framework {
	f := &master.Response_GetFrameworks_Framework{
		FrameworkInfo: fw.info, Active: proto.Bool(fw.active), Connected: proto.Bool(fw.stream != nil),
		Recovered: proto.Bool(fw.recovered), RegisteredTime: timeInfo(fw.registeredTime),
		ReregisteredTime:   timeInfo(fw.reregisteredTime),
		AllocatedResources: fw.usedResources(), OfferedResources: fw.offeredResources(),
	}
	if !fw.unregisteredTime.IsZero() {
		f.UnregisteredTime = timeInfo(fw.unregisteredTime)
	}
	return f
}

// getTasks lists, as Mesos' GET_TASKS does, the tasks of the live and of
// the completed (torn down) frameworks: the live ones, and the completed
// ones kept (--max_completed_tasks_per_framework).
func (m *Master) getTasks(v viewer) *master.Response_GetTasks {
	out := &master.Response_GetTasks{}
	for _, fw := range m.allFrameworks() {
		if !v.framework(fw) {
			continue
		}
		for _, t := range sortedTasks(fw.tasks) {
			if v.task(t) {
				out.Tasks = append(out.Tasks, taskMessage(t))
			}
		}
		for _, t := range fw.completed {
			if v.task(t) {
				out.CompletedTasks = append(out.CompletedTasks, taskMessage(t))
			}
		}
	}
	return out
}

// allFrameworks are the live frameworks by ID, then the completed ones,
// oldest first.
func (m *Master) allFrameworks() []*framework {
	return append(sortedFrameworks(m), m.completedFrameworks...)
}

func (m *Master) getExecutors(v viewer) *master.Response_GetExecutors {
	out := &master.Response_GetExecutors{}
	for _, a := range sortedAgents(m) {
		for _, e := range a.executors {
			if !v.framework(e.fw) || !v.executor(e) {
				continue
			}
			out.Executors = append(out.Executors, &master.Response_GetExecutors_Executor{
				ExecutorInfo: e.info, AgentId: &mesos.AgentID{Value: proto.String(a.id)},
			})
		}
	}
	return out
}

func taskMessage(t *task) *mesos.Task {
	mt := &mesos.Task{
		Name: proto.String(t.info.GetName()), TaskId: &mesos.TaskID{Value: proto.String(t.id)},
		FrameworkId: &mesos.FrameworkID{Value: proto.String(t.fw.id)},
		State:       t.state.Enum(), Resources: t.resources, Statuses: t.statuses, Labels: t.info.GetLabels(),
	}
	if t.agent != nil {
		mt.AgentId = &mesos.AgentID{Value: proto.String(t.agent.id)}
	} else {
		mt.AgentId = &mesos.AgentID{Value: proto.String("")}
	}
	if t.executor != "" {
		mt.ExecutorId = &mesos.ExecutorID{Value: proto.String(t.executor)}
	}
	return mt
}
