package master

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/corral/corral/api/auth"
	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/version"
	"google.golang.org/protobuf/proto"
)

// The JSON endpoints follow Mesos' src/master/readonly_handler.cpp and
// src/common/http.cpp field for field: tools (the Mesos CLI and web UI,
// Prometheus exporters, DC/OS scripts) read them by those names and shapes.

// taskLimit is Mesos' default page size of /tasks (TASK_LIMIT).
const taskLimit = 100

// agentCapabilities are what Mesos' agents announce and Corral's support:
// multi-role frameworks, hierarchical role names, and reservations in the
// refinement form, which is how the master keeps them.
var agentCapabilities = []string{"MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT"}

func (m *Master) registerEndpoints(mux *http.ServeMux) {
	// With --authenticate_http_readonly what shows the cluster needs
	// credentials, as in Mesos; /health, /redirect and /version do not.
	readonly := func(h http.HandlerFunc) http.HandlerFunc {
		return auth.Require(m.cfg.ReadonlyCredentials, readonlyRealm, h)
	}
	// Mesos serves these under /master/ and, the master being libprocess'
	// delegate, without the prefix too.
	for path, h := range map[string]http.HandlerFunc{
		"/health":        httpapi.HealthWarning(m.exposure()),
		"/flags":         readonly(m.serveFlags),
		"/state":         readonly(m.serveState),
		"/state.json":    readonly(m.serveState),
		"/state-summary": readonly(m.serveStateSummary),
		"/frameworks":    readonly(m.serveFrameworks),
		"/slaves":        readonly(m.serveSlaves),
		"/tasks":         readonly(m.serveTasks),
		"/roles":         readonly(m.serveRoles),
		"/redirect":      m.serveRedirect,
		"/teardown":      auth.Require(m.cfg.ReadwriteCredentials, readwriteRealm, m.serveTeardown),
	} {
		mux.HandleFunc(path, h)
		mux.HandleFunc("/master"+path, h)
	}
	mux.HandleFunc("/version", httpapi.Version)
	// get_endpoints (--acls) guards what Mesos guards with it.
	mux.HandleFunc("/metrics/snapshot", readonly(m.cfg.ACLs.Endpoint(m.serveMetrics)))
}

// serveFlags is /flags, for whom view_flags allows.
func (m *Master) serveFlags(w http.ResponseWriter, r *http.Request) {
	if !m.viewerOf(r).Flags() {
		httpapi.Error(w, http.StatusForbidden, "Not authorized to view flags")
		return
	}
	httpapi.Flags(flagsOrEmpty(m.cfg.Flags))(w, r)
}

// readwriteRealm is the realm of the master's endpoints that change the
// cluster (Mesos' READWRITE_HTTP_AUTHENTICATION_REALM).
const readwriteRealm = "mesos-master-readwrite"

// readonlyRealm is the realm of the master's read-only endpoints (Mesos'
// READONLY_HTTP_AUTHENTICATION_REALM).
const readonlyRealm = "mesos-master-readonly"

// serveState is Mesos' /state: the whole cluster as one JSON document.
func (m *Master) serveState(w http.ResponseWriter, r *http.Request) {
	v := m.viewerOf(r)
	m.mu.Lock()
	defer m.mu.Unlock()
	slaves := []map[string]any{}
	for _, a := range sortedAgents(m) {
		slaves = append(slaves, m.slaveJSON(a))
	}
	frameworks := []map[string]any{}
	for _, fw := range sortedFrameworks(m) {
		if v.framework(fw) {
			frameworks = append(frameworks, m.frameworkJSON(fw, v))
		}
	}
	completed := []map[string]any{}
	for _, fw := range m.completedFrameworks {
		if v.framework(fw) {
			completed = append(completed, m.frameworkJSON(fw, v))
		}
	}
	b := version.Build()
	active, inactive := m.agentCounts()
	st := map[string]any{
		"version":            version.MesosCompat,
		"corral_version":     version.Version,
		"build_date":         b.Date,
		"build_time":         b.Time,
		"build_user":         b.User,
		"start_time":         seconds(m.start),
		"elected_time":       seconds(m.start),
		"id":                 m.info.GetId(),
		"pid":                m.info.GetPid(),
		"hostname":           m.info.GetHostname(),
		"capabilities":       masterCapabilities(m.info),
		"activated_slaves":   active,
		"deactivated_slaves": inactive,
		"unreachable_slaves": len(m.unreachable),
		// The master is always the leader: Corral runs one.
		"leader":                  m.info.GetPid(),
		"leader_info":             infoJSON(m.info),
		"slaves":                  slaves,
		"recovered_slaves":        []any{},
		"frameworks":              frameworks,
		"completed_frameworks":    completed,
		"orphan_tasks":            []any{},
		"unregistered_frameworks": []any{},
	}
	// Mesos leaves the flags out for whom view_flags denies them.
	if v.Flags() {
		st["flags"] = flagsOrEmpty(m.cfg.Flags)
	}
	if b.GitSHA != "" {
		st["git_sha"] = b.GitSHA
	}
	if d := m.info.GetDomain(); d != nil {
		st["domain"] = protoJSON(d)
	}
	for _, f := range []string{"cluster", "log_dir", "external_log_file"} {
		if v, ok := m.cfg.Flags[f]; ok && v != "" {
			st[f] = v
		}
	}
	httpapi.WriteJSON(w, st)
}

// serveStateSummary is Mesos' /state-summary: agents and frameworks with
// task counts per state and which agents run which frameworks.
func (m *Master) serveStateSummary(w http.ResponseWriter, r *http.Request) {
	v := m.viewerOf(r)
	m.mu.Lock()
	defer m.mu.Unlock()
	var live []*framework
	for _, fw := range sortedFrameworks(m) {
		if v.framework(fw) {
			live = append(live, fw)
		}
	}
	byAgent := map[string]taskCounts{}
	byFramework := map[string]taskCounts{}
	agentFrameworks := map[string]map[string]bool{}
	frameworkAgents := map[string]map[string]bool{}
	for _, fw := range live {
		for _, t := range fw.allTasks() {
			if !v.task(t) {
				continue
			}
			aid := t.agentID()
			count(byAgent, aid, t.state)
			count(byFramework, fw.id, t.state)
			link(agentFrameworks, aid, fw.id)
			link(frameworkAgents, fw.id, aid)
		}
	}
	slaves := []map[string]any{}
	for _, a := range sortedAgents(m) {
		j := m.slaveJSON(a)
		byAgent[a.id].write(j)
		j["framework_ids"] = sortedSet(agentFrameworks[a.id])
		slaves = append(slaves, j)
	}
	frameworks := []map[string]any{}
	for _, fw := range live {
		j := frameworkSummaryJSON(fw)
		byFramework[fw.id].write(j)
		j["slave_ids"] = sortedSet(frameworkAgents[fw.id])
		frameworks = append(frameworks, j)
	}
	out := map[string]any{"hostname": m.info.GetHostname(), "slaves": slaves, "frameworks": frameworks}
	if v := m.cfg.Flags["cluster"]; v != "" {
		out["cluster"] = v
	}
	httpapi.WriteJSON(w, out)
}

// serveFrameworks is Mesos' /frameworks, optionally for one ?framework_id.
func (m *Master) serveFrameworks(w http.ResponseWriter, r *http.Request) {
	want := r.URL.Query().Get("framework_id")
	v := m.viewerOf(r)
	m.mu.Lock()
	defer m.mu.Unlock()
	frameworks, completed := []map[string]any{}, []map[string]any{}
	for _, fw := range sortedFrameworks(m) {
		if (want == "" || fw.id == want) && v.framework(fw) {
			frameworks = append(frameworks, m.frameworkJSON(fw, v))
		}
	}
	for _, fw := range m.completedFrameworks {
		if (want == "" || fw.id == want) && v.framework(fw) {
			completed = append(completed, m.frameworkJSON(fw, v))
		}
	}
	httpapi.WriteJSON(w, map[string]any{
		"frameworks": frameworks, "completed_frameworks": completed, "unregistered_frameworks": []any{},
	})
}

// serveSlaves is Mesos' /slaves, optionally for one ?slave_id: the agents
// as in /state plus their resources in full protobuf form (the *_full
// fields), which operators need for reservations and volumes.
func (m *Master) serveSlaves(w http.ResponseWriter, r *http.Request) {
	want := r.URL.Query().Get("slave_id")
	m.mu.Lock()
	defer m.mu.Unlock()
	slaves := []map[string]any{}
	for _, a := range sortedAgents(m) {
		if want != "" && a.id != want {
			continue
		}
		j := m.slaveJSON(a)
		full := map[string]any{}
		for role, rs := range reservations(a.total) {
			full[role] = fullJSON(rs)
		}
		j["reserved_resources_full"] = full
		j["unreserved_resources_full"] = fullJSON(unreserved(a.total))
		j["used_resources_full"] = fullJSON(a.used)
		j["offered_resources_full"] = fullJSON(a.offered)
		slaves = append(slaves, j)
	}
	httpapi.WriteJSON(w, map[string]any{"slaves": slaves, "recovered_slaves": []any{}})
}

// serveTasks is Mesos' /tasks: the tasks of all frameworks (live and
// completed; running, unreachable and completed tasks) ordered by their
// first status' time, newest first unless ?order=asc, paged by ?limit
// (default 100) and ?offset, optionally for one ?framework_id or ?task_id.
func (m *Master) serveTasks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := queryCount(q.Get("limit"), taskLimit)
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, "Invalid 'limit': %v", err)
		return
	}
	offset, err := queryCount(q.Get("offset"), 0)
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, "Invalid 'offset': %v", err)
		return
	}
	order := q.Get("order")
	switch order {
	case "", "des":
		order = "des"
	case "asc":
	default:
		httpapi.Error(w, http.StatusBadRequest, "Invalid 'order' %q: expecting 'asc' or 'des'", order)
		return
	}
	fwID, taskID := q.Get("framework_id"), q.Get("task_id")
	v := m.viewerOf(r)

	m.mu.Lock()
	defer m.mu.Unlock()
	var tasks []*task
	for _, fw := range m.allFrameworks() {
		if fwID != "" && fw.id != fwID || !v.framework(fw) {
			continue
		}
		for _, t := range fw.allTasks() {
			if (taskID == "" || t.id == taskID) && v.task(t) {
				tasks = append(tasks, t)
			}
		}
	}
	sort.SliceStable(tasks, func(i, j int) bool { return taskBefore(tasks[i], tasks[j], order == "asc") })
	out := []map[string]any{}
	for i := offset; i < len(tasks) && i-offset < limit; i++ {
		out = append(out, taskJSON(tasks[i]))
	}
	httpapi.WriteJSON(w, map[string]any{"tasks": out})
}

// queryCount parses a non-negative integer query parameter; empty is def.
func queryCount(s string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not an integer", s)
	}
	if n < 0 {
		return 0, fmt.Errorf("%d is negative", n)
	}
	return n, nil
}

// taskBefore orders by the first status' timestamp as Mesos'
// TaskComparator does; tasks without a status sort first ascending and
// last descending.
func taskBefore(a, b *task, asc bool) bool {
	switch {
	case len(a.statuses) == 0 && len(b.statuses) == 0:
		return false
	case len(a.statuses) == 0:
		return asc
	case len(b.statuses) == 0:
		return !asc
	}
	ta, tb := a.statuses[0].GetTimestamp(), b.statuses[0].GetTimestamp()
	if asc {
		return ta < tb
	}
	return ta > tb
}

// serveRoles is Mesos' /roles: every known role (of frameworks, of
// allocations, of reservations, and their ancestors) with its weight,
// quota and resources.
func (m *Master) serveRoles(w http.ResponseWriter, _ *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	known := map[string]bool{}
	members := map[string]map[string]bool{}
	live := sortedFrameworks(m)
	for _, fw := range live {
		for _, r := range fw.roles() {
			known[r] = true
			link(members, r, fw.id)
		}
		for _, t := range fw.tasks {
			if !t.state.IsTerminal() {
				known[t.role] = true
				link(members, t.role, fw.id)
			}
		}
	}
	for _, a := range m.agents {
		for r := range reservations(a.total) {
			known[r] = true
		}
	}
	for r := range known {
		for _, anc := range ancestors(r) {
			known[anc] = true
		}
	}
	names := make([]string, 0, len(known))
	for r := range known {
		names = append(names, r)
	}
	sort.Strings(names)
	roles := []map[string]any{}
	for _, name := range names {
		var allocated, offered, reserved, unusedReserved resources.Resources
		for _, fw := range live {
			allocated = allocated.Plus(fw.usedByRole(name))
			for _, o := range fw.offers {
				if inSubtree(o.role, name) {
					offered = offered.Plus(o.resources)
				}
			}
		}
		for _, a := range m.agents {
			var mine resources.Resources
			for _, r := range a.total {
				if len(r.GetReservations()) > 0 && inSubtree(resources.Role(r), name) {
					mine = append(mine, r)
				}
			}
			reserved = reserved.Plus(mine)
			unusedReserved = unusedReserved.Plus(mine.Minus(a.used))
		}
		roles = append(roles, map[string]any{
			"name":   name,
			"weight": 1.0,
			"quota": map[string]any{
				"role": name, "guarantee": map[string]any{}, "limit": map[string]any{},
				"consumed": quantities(allocated.Plus(unusedReserved)),
			},
			"resources":  quantities(allocated.Plus(offered)),
			"allocated":  quantities(allocated),
			"offered":    quantities(offered),
			"reserved":   quantities(reserved),
			"frameworks": sortedSet(members[name]),
		})
	}
	httpapi.WriteJSON(w, map[string]any{"roles": roles})
}

// serveRedirect is Mesos' /redirect: a 307 to the leading master, which is
// this one, as a protocol-relative URL ("//host:port") so the client keeps
// its scheme.
func (m *Master) serveRedirect(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Location", "//"+m.info.GetHostname()+":"+strconv.Itoa(int(m.info.GetPort())))
	w.WriteHeader(http.StatusTemporaryRedirect)
}

// slaveJSON is one agent as Mesos' SlaveWriter writes it.
func (m *Master) slaveJSON(a *agent) map[string]any {
	reserved := map[string]any{}
	for role, rs := range reservations(a.total) {
		reserved[role] = rs.StateJSON()
	}
	port := a.info.GetPort()
	if p := a.endpoint.GetAddress().GetPort(); p != 0 {
		port = p
	}
	j := map[string]any{
		"id":                   a.id,
		"hostname":             a.info.GetHostname(),
		"port":                 port,
		"attributes":           attributesJSON(a.info.GetAttributes()),
		"pid":                  "slave(1)@" + a.endpoint.GetAddress().GetIp() + ":" + strconv.Itoa(int(a.endpoint.GetAddress().GetPort())),
		"registered_time":      seconds(a.regTime),
		"resources":            a.total.StateJSON(),
		"used_resources":       a.used.StateJSON(),
		"offered_resources":    a.offered.StateJSON(),
		"reserved_resources":   reserved,
		"unreserved_resources": unreserved(a.total).StateJSON(),
		"active":               a.connected,
		// Operators cannot deactivate (drain) agents in Corral yet.
		"deactivated":  false,
		"version":      a.version,
		"capabilities": agentCapabilities,
	}
	if !a.reregTime.IsZero() {
		j["reregistered_time"] = seconds(a.reregTime)
	}
	if d := a.info.GetDomain(); d != nil {
		j["domain"] = protoJSON(d)
	}
	return j
}

// frameworkSummaryJSON is Mesos' Summary<Framework>.
func frameworkSummaryJSON(fw *framework) map[string]any {
	used, offered := fw.usedResources(), fw.offeredResources()
	caps := []string{}
	for _, c := range fw.info.GetCapabilities() {
		caps = append(caps, c.GetType().String())
	}
	return map[string]any{
		"id": fw.id, "name": fw.info.GetName(),
		"used_resources": used.StateJSON(), "offered_resources": offered.StateJSON(),
		"capabilities": caps, "hostname": fw.info.GetHostname(), "webui_url": fw.info.GetWebuiUrl(),
		"active": fw.active, "connected": fw.stream != nil, "recovered": fw.recovered,
	}
}

// frameworkJSON is one framework as Mesos' FullFrameworkWriter writes it.
func (m *Master) frameworkJSON(fw *framework, v viewer) map[string]any {
	j := frameworkSummaryJSON(fw)
	used, offered := fw.usedResources(), fw.offeredResources()
	j["user"] = fw.info.GetUser()
	j["failover_timeout"] = fw.info.GetFailoverTimeout()
	j["checkpoint"] = fw.info.GetCheckpoint()
	j["registered_time"] = seconds(fw.registeredTime)
	j["unregistered_time"] = seconds(fw.unregisteredTime)
	if fw.info.Principal != nil {
		j["principal"] = fw.info.GetPrincipal()
	}
	j["resources"] = used.Plus(offered).StateJSON()
	if !fw.reregisteredTime.Equal(fw.registeredTime) {
		j["reregistered_time"] = seconds(fw.reregisteredTime)
	}
	// Mesos mirrors the protobuf: roles for MULTI_ROLE frameworks, else role.
	if fw.hasCapability(mesos.FrameworkInfo_Capability_MULTI_ROLE) {
		j["roles"] = orEmptyStrings(fw.info.GetRoles())
	} else {
		j["role"] = fw.info.GetRole()
	}
	tasks, unreachable, done := []map[string]any{}, []map[string]any{}, []map[string]any{}
	for _, t := range sortedTasks(fw.tasks) {
		if !v.task(t) {
			continue
		}
		if t.state == mesos.TaskState_TASK_UNREACHABLE {
			unreachable = append(unreachable, taskJSON(t))
		} else {
			tasks = append(tasks, taskJSON(t))
		}
	}
	for _, t := range fw.completed {
		if v.task(t) {
			done = append(done, taskJSON(t))
		}
	}
	j["tasks"], j["unreachable_tasks"], j["completed_tasks"] = tasks, unreachable, done
	offers := []map[string]any{}
	for _, o := range sortedOffers(fw.offers) {
		alloc := map[string]any{}
		if fw.hasCapability(mesos.FrameworkInfo_Capability_MULTI_ROLE) {
			alloc["role"] = o.role
		}
		offers = append(offers, map[string]any{
			"id": o.id, "framework_id": fw.id, "allocation_info": alloc, "slave_id": o.agent.id,
			"resources": o.resources.StateJSON(),
		})
	}
	j["offers"] = offers
	executors := []map[string]any{}
	for _, key := range sortedKeysOf(fw.executors) {
		if e := fw.executors[key]; v.executor(e) {
			executors = append(executors, executorJSON(e))
		}
	}
	j["executors"] = executors
	if l := fw.info.GetLabels(); l != nil {
		j["labels"] = labelsJSON(l)
	}
	j["offer_constraints"] = map[string]any{}
	return j
}

// executorJSON is json(ExecutorInfo) of Mesos' common/http.cpp, with the
// agent it runs on.
func executorJSON(e *executor) map[string]any {
	ei := e.info
	cmd := map[string]any{"argv": orEmptyStrings(ei.GetCommand().GetArguments())}
	if c := ei.GetCommand(); c != nil {
		if c.Shell != nil {
			cmd["shell"] = c.GetShell()
		}
		if c.Value != nil {
			cmd["value"] = c.GetValue()
		}
		if c.Environment != nil {
			cmd["environment"] = protoJSON(c.GetEnvironment())
		}
	}
	uris := []map[string]any{}
	for _, u := range ei.GetCommand().GetUris() {
		uris = append(uris, map[string]any{"value": u.GetValue(), "executable": u.GetExecutable()})
	}
	cmd["uris"] = uris
	j := map[string]any{
		"executor_id": ei.GetExecutorId().GetValue(), "name": ei.GetName(),
		"framework_id": e.fw.id, "command": cmd, "resources": e.resources.StateJSON(),
		"slave_id": e.agent.id,
	}
	if len(ei.GetResources()) > 0 {
		j["role"] = e.role
	}
	if l := ei.GetLabels(); l != nil {
		j["labels"] = labelsJSON(l)
	}
	if ei.Type != nil {
		j["type"] = ei.GetType().String()
	}
	return j
}

// taskJSON is json(Task) of Mesos' common/http.cpp.
func taskJSON(t *task) map[string]any {
	statuses := []map[string]any{}
	for _, s := range t.statuses {
		sj := map[string]any{"state": s.GetState().String(), "timestamp": s.GetTimestamp()}
		if s.Labels != nil {
			sj["labels"] = labelsJSON(s.GetLabels())
		}
		if s.ContainerStatus != nil {
			sj["container_status"] = protoJSON(s.GetContainerStatus())
		}
		if s.Healthy != nil {
			sj["healthy"] = s.GetHealthy()
		}
		statuses = append(statuses, sj)
	}
	j := map[string]any{
		"id": t.id, "name": t.info.GetName(), "framework_id": t.fw.id, "executor_id": t.executor,
		"slave_id": t.agentID(), "state": t.state.String(), "resources": t.resources.StateJSON(),
		"role": t.role, "statuses": statuses,
	}
	if u := t.info.GetCommand().GetUser(); u != "" {
		j["user"] = u
	}
	if l := t.info.GetLabels(); l != nil {
		j["labels"] = labelsJSON(l)
	}
	if d := t.info.GetDiscovery(); d != nil {
		j["discovery"] = protoJSON(d)
	}
	if c := t.info.GetContainer(); c != nil {
		j["container"] = protoJSON(c)
	}
	if h := t.info.GetHealthCheck(); h != nil {
		j["health_check"] = protoJSON(h)
	}
	return j
}

func infoJSON(i *mesos.MasterInfo) map[string]any {
	j := map[string]any{"id": i.GetId(), "pid": i.GetPid(), "port": i.GetPort(), "hostname": i.GetHostname()}
	if d := i.GetDomain(); d != nil {
		j["domain"] = protoJSON(d)
	}
	return j
}

func masterCapabilities(i *mesos.MasterInfo) []string {
	out := []string{}
	for _, c := range i.GetCapabilities() {
		out = append(out, c.GetType().String())
	}
	return out
}

// agentCounts are Mesos' activated_slaves and deactivated_slaves: agents
// that are connected, and those that are registered but not (disconnected,
// within their re-register timeout).
func (m *Master) agentCounts() (active, inactive int) {
	for _, a := range m.agents {
		if a.connected {
			active++
		} else {
			inactive++
		}
	}
	return active, inactive
}

// attributesJSON writes attributes as Mesos does: name to value, scalars
// as numbers, ranges as "[a-b, c-d]", sets as "{x, y}", text as text.
func attributesJSON(attrs []*mesos.Attribute) map[string]any {
	out := map[string]any{}
	for _, at := range attrs {
		switch at.GetType() {
		case mesos.Value_SCALAR:
			out[at.GetName()] = at.GetScalar().GetValue()
		case mesos.Value_RANGES:
			var rgs []string
			for _, rg := range at.GetRanges().GetRange() {
				rgs = append(rgs, fmt.Sprintf("%d-%d", rg.GetBegin(), rg.GetEnd()))
			}
			out[at.GetName()] = "[" + strings.Join(rgs, ", ") + "]"
		case mesos.Value_SET:
			out[at.GetName()] = "{" + strings.Join(at.GetSet().GetItem(), ", ") + "}"
		case mesos.Value_TEXT:
			out[at.GetName()] = at.GetText().GetValue()
		}
	}
	return out
}

// labelsJSON writes Labels as Mesos' endpoints do: the list of labels.
func labelsJSON(l *mesos.Labels) []json.RawMessage {
	out := []json.RawMessage{}
	for _, lb := range l.GetLabels() {
		out = append(out, protoJSON(lb))
	}
	return out
}

// protoJSON is a message in Mesos' JSON (proto field names, 64-bit numbers
// as numbers), ready to embed.
func protoJSON(msg proto.Message) json.RawMessage {
	b, err := codec.JSON.Marshal(msg)
	if err != nil {
		// Only a message that cannot be encoded at all gets here; null
		// keeps the document valid.
		return json.RawMessage("null")
	}
	return b
}

// fullJSON is a resource list as the *_full fields of /slaves write it: each
// resource as protobuf JSON in Mesos' endpoint form.
func fullJSON(rs resources.Resources) []json.RawMessage {
	out := []json.RawMessage{}
	for _, r := range endpointForm(rs) {
		out = append(out, protoJSON(r))
	}
	return out
}

// reservations groups the reserved resources by the role they are reserved
// for (the last reservation's), as Mesos' Resources::reservations().
func reservations(rs resources.Resources) map[string]resources.Resources {
	out := map[string]resources.Resources{}
	for _, r := range rs {
		if len(r.GetReservations()) > 0 {
			role := resources.Role(r)
			out[role] = append(out[role], r)
		}
	}
	return out
}

func unreserved(rs resources.Resources) resources.Resources {
	var out resources.Resources
	for _, r := range rs {
		if len(r.GetReservations()) == 0 {
			out = append(out, r)
		}
	}
	return out
}

// quantities are Mesos' ResourceQuantities in JSON: scalar name to amount,
// only the names present.
func quantities(rs resources.Resources) map[string]any {
	out := map[string]any{}
	for _, r := range rs {
		if r.GetType() == mesos.Value_SCALAR {
			v, _ := out[r.GetName()].(float64)
			out[r.GetName()] = v + r.GetScalar().GetValue()
		}
	}
	for k, v := range out {
		// Mesos' fixed point: three decimals.
		out[k] = math.Round(v.(float64)*1000) / 1000
	}
	return out
}

// ancestors of "a/b/c" are "a/b" and "a".
func ancestors(role string) []string {
	var out []string
	for i := strings.LastIndexByte(role, '/'); i > 0; i = strings.LastIndexByte(role, '/') {
		role = role[:i]
		out = append(out, role)
	}
	return out
}

// inSubtree reports whether role is root or below it.
func inSubtree(role, root string) bool {
	return role == root || strings.HasPrefix(role, root+"/")
}

// usedResources are what the framework's live tasks and executors hold.
func (fw *framework) usedResources() resources.Resources {
	var used resources.Resources
	for _, t := range fw.tasks {
		if !t.state.IsTerminal() && t.state != mesos.TaskState_TASK_UNREACHABLE {
			used = used.Plus(t.resources)
		}
	}
	for _, e := range fw.executors {
		used = used.Plus(e.resources)
	}
	return used
}

// usedByRole is usedResources allocated to role or below it.
func (fw *framework) usedByRole(role string) resources.Resources {
	var used resources.Resources
	for _, t := range fw.tasks {
		if !t.state.IsTerminal() && inSubtree(t.role, role) {
			used = used.Plus(t.resources)
		}
	}
	for _, e := range fw.executors {
		if inSubtree(e.role, role) {
			used = used.Plus(e.resources)
		}
	}
	return used
}

func (fw *framework) offeredResources() resources.Resources {
	var offered resources.Resources
	for _, o := range fw.offers {
		offered = offered.Plus(o.resources)
	}
	return offered
}

// allTasks are the framework's live tasks (by ID) then its completed ones.
func (fw *framework) allTasks() []*task {
	return append(sortedTasks(fw.tasks), fw.completed...)
}

func (t *task) agentID() string {
	if t.agent == nil {
		return ""
	}
	return t.agent.id
}

// taskCounts are the per-state counts of /state-summary.
type taskCounts map[mesos.TaskState]int

func count(m map[string]taskCounts, key string, s mesos.TaskState) {
	if m[key] == nil {
		m[key] = taskCounts{}
	}
	m[key][s]++
}

// write adds the counts Mesos writes (TASK_STAGING ... TASK_UNREACHABLE,
// zeros included) to j.
func (c taskCounts) write(j map[string]any) {
	for _, s := range []mesos.TaskState{
		mesos.TaskState_TASK_STAGING, mesos.TaskState_TASK_STARTING, mesos.TaskState_TASK_RUNNING,
		mesos.TaskState_TASK_KILLING, mesos.TaskState_TASK_FINISHED, mesos.TaskState_TASK_KILLED,
		mesos.TaskState_TASK_FAILED, mesos.TaskState_TASK_LOST, mesos.TaskState_TASK_ERROR,
		mesos.TaskState_TASK_UNREACHABLE,
	} {
		j[s.String()] = c[s]
	}
}

func link(m map[string]map[string]bool, from, to string) {
	if m[from] == nil {
		m[from] = map[string]bool{}
	}
	m[from][to] = true
}

func sortedSet(s map[string]bool) []string {
	out := []string{}
	for k := range s {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedKeysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedOffers(offers map[string]*offer) []*offer {
	out := make([]*offer, 0, len(offers))
	for _, k := range sortedKeysOf(offers) {
		out = append(out, offers[k])
	}
	return out
}

func orEmptyStrings(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

func flagsOrEmpty(f map[string]string) map[string]string {
	if f == nil {
		return map[string]string{}
	}
	return f
}

func seconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
