package master

import (
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/v1/master"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/version"
	"google.golang.org/protobuf/proto"
)

func (m *Master) registerEndpoints(mux *http.ServeMux) {
	mux.HandleFunc("/health", httpapi.Health)
	mux.HandleFunc("/version", httpapi.Version)
	mux.HandleFunc("/flags", httpapi.Flags(m.cfg.Flags))
	mux.HandleFunc("/state", m.serveState)
	mux.HandleFunc("/state.json", m.serveState)
	mux.HandleFunc("/master/state", m.serveState)
	mux.HandleFunc("/metrics/snapshot", m.serveMetrics)
}

// serveState is Mesos' /state: the whole cluster as one JSON document.
func (m *Master) serveState(w http.ResponseWriter, _ *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var agents []map[string]any
	for _, a := range sortedAgents(m) {
		agents = append(agents, map[string]any{
			"id":                   a.id,
			"pid":                  "slave(1)@" + a.endpoint.GetAddress().GetIp() + ":" + itoa(int(a.endpoint.GetAddress().GetPort())),
			"hostname":             a.info.GetHostname(),
			"port":                 a.endpoint.GetAddress().GetPort(),
			"registered_time":      float64(a.regTime.UnixNano()) / 1e9,
			"resources":            a.total.StateJSON(),
			"used_resources":       a.used.StateJSON(),
			"offered_resources":    a.offered.StateJSON(),
			"unreserved_resources": a.total.StateJSON(),
			"attributes":           map[string]any{},
			"active":               a.connected,
			"version":              a.version,
		})
	}
	frameworks := []map[string]any{}
	for _, fw := range sortedFrameworks(m) {
		frameworks = append(frameworks, m.frameworkJSON(fw))
	}
	completed := []map[string]any{}
	for _, fw := range m.completedFrameworks {
		completed = append(completed, m.frameworkJSON(fw))
	}
	httpapi.WriteJSON(w, map[string]any{
		"version":                 version.MesosCompat,
		"corral_version":          version.Version,
		"id":                      m.info.GetId(),
		"pid":                     m.info.GetPid(),
		"hostname":                m.info.GetHostname(),
		"start_time":              float64(m.start.UnixNano()) / 1e9,
		"elected_time":            float64(m.start.UnixNano()) / 1e9,
		"activated_slaves":        countConnected(m),
		"deactivated_slaves":      0,
		"leader":                  m.info.GetPid(),
		"leader_info":             infoJSON(m.info),
		"flags":                   m.cfg.Flags,
		"slaves":                  orEmpty(agents),
		"frameworks":              frameworks,
		"completed_frameworks":    completed,
		"orphan_tasks":            []any{},
		"unregistered_frameworks": []any{},
	})
}

func orEmpty(v []map[string]any) []map[string]any {
	if v == nil {
		return []map[string]any{}
	}
	return v
}

func infoJSON(i *mesos.MasterInfo) map[string]any {
	return map[string]any{
		"id": i.GetId(), "pid": i.GetPid(), "port": i.GetPort(), "hostname": i.GetHostname(),
		"version": version.MesosCompat,
		"address": map[string]any{"hostname": i.GetAddress().GetHostname(), "ip": i.GetAddress().GetIp(), "port": i.GetAddress().GetPort()},
	}
}

func countConnected(m *Master) int {
	n := 0
	for _, a := range m.agents {
		if a.connected {
			n++
		}
	}
	return n
}

func (m *Master) frameworkJSON(fw *framework) map[string]any {
	var used, offered resources.Resources
	tasks := []map[string]any{}
	for _, t := range sortedTasks(fw.tasks) {
		if !isTerminal(t.state) {
			used = used.Plus(t.resources)
		}
		tasks = append(tasks, taskJSON(t))
	}
	done := []map[string]any{}
	for _, t := range fw.completed {
		done = append(done, taskJSON(t))
	}
	offers := []map[string]any{}
	for _, o := range fw.offers {
		offered = offered.Plus(o.resources)
		offers = append(offers, map[string]any{"id": o.id, "framework_id": fw.id, "slave_id": o.agent.id, "resources": o.resources.StateJSON()})
	}
	var caps []string
	for _, c := range fw.info.GetCapabilities() {
		caps = append(caps, c.GetType().String())
	}
	return map[string]any{
		"id": fw.id, "name": fw.info.GetName(), "user": fw.info.GetUser(), "hostname": fw.info.GetHostname(),
		"principal": fw.info.GetPrincipal(), "webui_url": fw.info.GetWebuiUrl(),
		"role": fw.info.GetRole(), "roles": fw.roles(), "capabilities": caps,
		"failover_timeout": fw.info.GetFailoverTimeout(), "checkpoint": fw.info.GetCheckpoint(),
		"active": fw.active, "connected": fw.stream != nil,
		"registered_time": float64(fw.registeredTime.UnixNano()) / 1e9,
		"tasks":           tasks, "completed_tasks": done, "offers": offers,
		"resources": used.Plus(offered).StateJSON(), "used_resources": used.StateJSON(), "offered_resources": offered.StateJSON(),
		"executors": []any{}, "completed_executors": []any{},
	}
}

func taskJSON(t *task) map[string]any {
	statuses := []map[string]any{}
	for _, s := range t.statuses {
		statuses = append(statuses, map[string]any{"state": s.GetState().String(), "timestamp": s.GetTimestamp()})
	}
	j := map[string]any{
		"id": t.id, "name": t.info.GetName(), "framework_id": t.fw.id, "executor_id": t.executor,
		"state": t.state.String(), "resources": t.resources.StateJSON(), "statuses": statuses,
	}
	if t.agent != nil {
		j["slave_id"] = t.agent.id
	}
	return j
}

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

func itoa(i int) string { return strconv.Itoa(i) }

// serveOperator is the v1 operator API (POST /api/v1) for the calls Corral
// answers so far.
func (m *Master) serveOperator(w http.ResponseWriter, r *http.Request) {
	call := &master.Call{}
	c, ok := httpapi.DecodeCall(w, r, call)
	if !ok {
		return
	}
	resp := &master.Response{}
	switch call.GetType() {
	case master.Call_GET_HEALTH:
		resp.Type = master.Response_GET_HEALTH.Enum()
		resp.GetHealth = &master.Response_GetHealth{Healthy: proto.Bool(true)}
	case master.Call_GET_VERSION:
		resp.Type = master.Response_GET_VERSION.Enum()
		resp.GetVersion = &master.Response_GetVersion{VersionInfo: &mesos.VersionInfo{Version: proto.String(version.MesosCompat)}}
	case master.Call_GET_FLAGS:
		resp.Type = master.Response_GET_FLAGS.Enum()
		resp.GetFlags = &master.Response_GetFlags{}
		for _, k := range sortedKeys(m.cfg.Flags) {
			resp.GetFlags.Flags = append(resp.GetFlags.Flags, &mesos.Flag{Name: proto.String(k), Value: proto.String(m.cfg.Flags[k])})
		}
	case master.Call_GET_STATE:
		resp.Type = master.Response_GET_STATE.Enum()
		m.mu.Lock()
		resp.GetState = &master.Response_GetState{GetTasks: m.getTasks(), GetFrameworks: m.getFrameworks(), GetAgents: m.getAgents(), GetExecutors: m.getExecutors()}
		m.mu.Unlock()
	case master.Call_GET_AGENTS:
		resp.Type = master.Response_GET_AGENTS.Enum()
		m.mu.Lock()
		resp.GetAgents = m.getAgents()
		m.mu.Unlock()
	case master.Call_GET_FRAMEWORKS:
		resp.Type = master.Response_GET_FRAMEWORKS.Enum()
		m.mu.Lock()
		resp.GetFrameworks = m.getFrameworks()
		m.mu.Unlock()
	case master.Call_GET_TASKS:
		resp.Type = master.Response_GET_TASKS.Enum()
		m.mu.Lock()
		resp.GetTasks = m.getTasks()
		m.mu.Unlock()
	case master.Call_GET_EXECUTORS:
		resp.Type = master.Response_GET_EXECUTORS.Enum()
		m.mu.Lock()
		resp.GetExecutors = m.getExecutors()
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
		out.Agents = append(out.Agents, &master.Response_GetAgents_Agent{
			AgentInfo: a.info, Active: proto.Bool(a.connected), Version: proto.String(a.version),
			RegisteredTime: timeInfo(a.regTime), TotalResources: a.total,
			AllocatedResources: a.used, OfferedResources: a.offered,
		})
	}
	return out
}

func (m *Master) getFrameworks() *master.Response_GetFrameworks {
	out := &master.Response_GetFrameworks{}
	for _, fw := range sortedFrameworks(m) {
		out.Frameworks = append(out.Frameworks, &master.Response_GetFrameworks_Framework{
			FrameworkInfo: fw.info, Active: proto.Bool(fw.active), Connected: proto.Bool(fw.stream != nil),
			Recovered: proto.Bool(false), RegisteredTime: timeInfo(fw.registeredTime),
		})
	}
	for _, fw := range m.completedFrameworks {
		out.CompletedFrameworks = append(out.CompletedFrameworks, &master.Response_GetFrameworks_Framework{
			FrameworkInfo: fw.info, Active: proto.Bool(false), Connected: proto.Bool(false), Recovered: proto.Bool(false),
		})
	}
	return out
}

func (m *Master) getTasks() *master.Response_GetTasks {
	out := &master.Response_GetTasks{}
	for _, fw := range sortedFrameworks(m) {
		for _, t := range sortedTasks(fw.tasks) {
			out.Tasks = append(out.Tasks, taskMessage(t))
		}
		for _, t := range fw.completed {
			out.CompletedTasks = append(out.CompletedTasks, taskMessage(t))
		}
	}
	return out
}

func (m *Master) getExecutors() *master.Response_GetExecutors {
	out := &master.Response_GetExecutors{}
	for _, a := range sortedAgents(m) {
		for _, e := range a.executors {
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
