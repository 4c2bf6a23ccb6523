package master_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/codec"
	masterapi "github.com/corral/corral/api/v1/master"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/api/v1/scheduler"
	"github.com/corral/corral/internal/testsupport"
	"github.com/corral/corral/master/mastertest"
	"google.golang.org/protobuf/proto"
)

// getMap fetches path as a JSON object.
func getMap(t *testing.T, tm *testMaster, path string) map[string]any {
	t.Helper()
	resp := rawGet(t, tm.url(path))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return m
}

// jsonKind names a decoded JSON value's shape.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// checkShape checks that obj has each key with the JSON kind Mesos writes,
// and none of absent.
func checkShape(t *testing.T, what string, obj map[string]any, kinds map[string]string, absent ...string) {
	t.Helper()
	for k, want := range kinds {
		v, ok := obj[k]
		if !ok {
			t.Errorf("%s lacks %q", what, k)
			continue
		}
		if got := jsonKind(v); got != want {
			t.Errorf("%s %q is %s (%v), want %s", what, k, got, v, want)
		}
	}
	for _, k := range absent {
		if _, ok := obj[k]; ok {
			t.Errorf("%s has %q, which Mesos does not write there", what, k)
		}
	}
}

// arr, obj, str and num read decoded JSON without panicking on another
// shape (which the checks then report).
func arr(v any) []any          { a, _ := v.([]any); return a }
func obj(v any) map[string]any { m, _ := v.(map[string]any); return m }
func str(v any) string         { s, _ := v.(string); return s }
func num(v any) float64        { f, _ := v.(float64); return f }

func index(v any, path ...any) any {
	for _, p := range path {
		switch p := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[p]
		case int:
			a, _ := v.([]any)
			if p >= len(a) {
				return nil
			}
			v = a[p]
		}
	}
	return v
}

// reservedCluster is a master with a fake agent "cpus:1;mem:512;cpus(web):1",
// a framework of role web running one task on cpus(web):0.5 and mem:64.
func reservedCluster(t *testing.T) (*testMaster, *mastertest.FakeAgent, *schedulerClient, *mesos.TaskInfo) {
	t.Helper()
	tm := startMaster(t)
	fa := connectFakeAgentWith(t, tm, "cpus:1;mem:512;cpus(web):1", "", nil, nil)
	s := subscribe(t, tm, codec.JSON, func(fi *mesos.FrameworkInfo) { fi.Role = proto.String("web") })
	o := s.offer(offerWait)
	ti := task("", "web-task", o, "cpus(web):0.5;mem:64", "sleep 60")
	s.launch(o, ti)
	fa.Next(cluster.Event_RUN_TASK)
	fa.Update(s.id, ti, mesos.TaskState_TASK_RUNNING)
	s.update("web-task", 5*time.Second, mesos.TaskState_TASK_RUNNING)
	return tm, fa, s, ti
}

// TestStateMatchesMesos: /master/state carries the fields of Mesos'
// ReadOnlyHandler::state, SlaveWriter and FullFrameworkWriter with their
// JSON shapes.
func TestStateMatchesMesos(t *testing.T) {
	tm, fa, s, _ := reservedCluster(t)
	st := getMap(t, tm, "/master/state")
	checkShape(t, "/master/state", st, map[string]string{
		"version": "string", "build_date": "string", "build_time": "number", "build_user": "string",
		"start_time": "number", "elected_time": "number", "id": "string", "pid": "string", "hostname": "string",
		"capabilities": "array", "activated_slaves": "number", "deactivated_slaves": "number", "unreachable_slaves": "number",
		"leader": "string", "leader_info": "object", "flags": "object",
		"slaves": "array", "recovered_slaves": "array", "frameworks": "array", "completed_frameworks": "array",
		"orphan_tasks": "array", "unregistered_frameworks": "array",
	})
	if caps := index(st, "capabilities"); !reflect.DeepEqual(caps, []any{"AGENT_UPDATE"}) {
		t.Errorf("capabilities %v, want [AGENT_UPDATE]", caps)
	}
	if st["activated_slaves"] != 1.0 || st["deactivated_slaves"] != 0.0 || st["unreachable_slaves"] != 0.0 {
		t.Errorf("slave counts activated %v deactivated %v unreachable %v, want 1 0 0", st["activated_slaves"], st["deactivated_slaves"], st["unreachable_slaves"])
	}
	checkShape(t, "leader_info", obj(index(st, "leader_info")), map[string]string{
		"id": "string", "pid": "string", "port": "number", "hostname": "string",
	})

	sl, _ := index(st, "slaves", 0).(map[string]any)
	checkShape(t, "slaves[0]", sl, map[string]string{
		"id": "string", "hostname": "string", "port": "number", "attributes": "object", "pid": "string",
		"registered_time": "number", "resources": "object", "used_resources": "object", "offered_resources": "object",
		"reserved_resources": "object", "unreserved_resources": "object", "active": "bool", "deactivated": "bool",
		"version": "string", "capabilities": "array",
	}, "reserved_resources_full", "unreserved_resources_full", "used_resources_full", "offered_resources_full")
	if sl["id"] != fa.ID || sl["deactivated"] != false || sl["active"] != true {
		t.Errorf("slave id %v active %v deactivated %v", sl["id"], sl["active"], sl["deactivated"])
	}
	if c := index(sl, "reserved_resources", "web", "cpus"); c != 1.0 {
		t.Errorf("reserved_resources.web.cpus %v, want 1 (%v)", c, sl["reserved_resources"])
	}
	if c := index(sl, "unreserved_resources", "cpus"); c != 1.0 {
		t.Errorf("unreserved_resources.cpus %v, want 1", c)
	}
	for _, c := range arr(index(sl, "capabilities")) {
		if _, ok := c.(string); !ok {
			t.Errorf("slave capability %v is not a string (Mesos writes the enum names)", c)
		}
	}

	fw, _ := index(st, "frameworks", 0).(map[string]any)
	checkShape(t, "frameworks[0]", fw, map[string]string{
		"id": "string", "name": "string", "used_resources": "object", "offered_resources": "object",
		"capabilities": "array", "hostname": "string", "webui_url": "string", "active": "bool", "connected": "bool",
		"recovered": "bool", "user": "string", "failover_timeout": "number", "checkpoint": "bool",
		"registered_time": "number", "unregistered_time": "number", "resources": "object", "role": "string",
		"tasks": "array", "unreachable_tasks": "array", "completed_tasks": "array", "offers": "array",
		"executors": "array", "offer_constraints": "object",
	}, "roles", "reregistered_time", "pid")
	if fw["id"] != s.id || fw["role"] != "web" || fw["recovered"] != false || fw["unregistered_time"] != 0.0 {
		t.Errorf("framework id %v role %v recovered %v unregistered_time %v", fw["id"], fw["role"], fw["recovered"], fw["unregistered_time"])
	}
	tk, _ := index(fw, "tasks", 0).(map[string]any)
	checkShape(t, "tasks[0]", tk, map[string]string{
		"id": "string", "name": "string", "framework_id": "string", "executor_id": "string", "slave_id": "string",
		"state": "string", "resources": "object", "role": "string", "statuses": "array",
	})
	if tk["role"] != "web" || tk["state"] != "TASK_RUNNING" || tk["slave_id"] != fa.ID {
		t.Errorf("task role %v state %v slave_id %v", tk["role"], tk["state"], tk["slave_id"])
	}

	// Torn down: the framework is completed, with when, and its task is
	// kept as killed.
	s.mustCall(&scheduler.Call{Type: scheduler.Call_TEARDOWN.Enum()})
	st = getMap(t, tm, "/master/state")
	done, _ := index(st, "completed_frameworks", 0).(map[string]any)
	if u, _ := done["unregistered_time"].(float64); u <= 0 {
		t.Errorf("completed framework unregistered_time %v, want its removal time", done["unregistered_time"])
	}
	if got := index(done, "completed_tasks", 0, "state"); got != "TASK_KILLED" {
		t.Errorf("torn-down framework's running task is %v in completed_tasks, want TASK_KILLED", got)
	}
}

// TestSlavesEndpoint: /master/slaves adds the *_full fields of Mesos'
// SlavesWriter: each resource as protobuf JSON in the endpoint form, with
// `role` and (for reserved ones) `reservations`.
func TestSlavesEndpoint(t *testing.T) {
	tm, fa, _, _ := reservedCluster(t)
	sl := getMap(t, tm, "/master/slaves")
	checkShape(t, "/master/slaves", sl, map[string]string{"slaves": "array", "recovered_slaves": "array"})
	a, _ := index(sl, "slaves", 0).(map[string]any)
	checkShape(t, "slaves[0]", a, map[string]string{
		"deactivated": "bool", "capabilities": "array", "reserved_resources": "object",
		"reserved_resources_full": "object", "unreserved_resources_full": "array",
		"used_resources_full": "array", "offered_resources_full": "array",
	})
	web, _ := index(a, "reserved_resources_full", "web", 0).(map[string]any)
	if web["name"] != "cpus" || web["type"] != "SCALAR" || index(web, "scalar", "value") != 1.0 || web["role"] != "web" ||
		index(web, "reservations", 0, "role") != "web" || index(web, "reservations", 0, "type") != "STATIC" {
		t.Errorf("reserved_resources_full.web[0] = %v, want cpus 1 with role web and a STATIC reservation for web", web)
	}
	for _, r := range arr(index(a, "unreserved_resources_full")) {
		if r := obj(r); r["role"] != "*" || r["reservations"] != nil {
			t.Errorf("unreserved_resources_full entry %v, want role * and no reservations", r)
		}
	}
	var usedCPU float64
	for _, r := range arr(index(a, "used_resources_full")) {
		if r := obj(r); r["name"] == "cpus" {
			usedCPU += num(index(r, "scalar", "value"))
		}
	}
	if usedCPU != 0.5 {
		t.Errorf("used_resources_full cpus %v, want 0.5", usedCPU)
	}
	if got := getMap(t, tm, "/master/slaves?slave_id=nope"); len(arr(got["slaves"])) != 0 {
		t.Errorf("/master/slaves?slave_id=nope lists %v", got["slaves"])
	}
	if got := getMap(t, tm, "/slaves?slave_id="+fa.ID); len(arr(got["slaves"])) != 1 {
		t.Errorf("/slaves?slave_id=%s lists %v", fa.ID, got["slaves"])
	}
}

// TestStateSummary: Mesos' /state-summary: agents and frameworks with the
// counts of their tasks by state and which run where.
func TestStateSummary(t *testing.T) {
	tm, fa, s, _ := reservedCluster(t)
	for _, path := range []string{"/master/state-summary", "/state-summary"} {
		sum := getMap(t, tm, path)
		checkShape(t, path, sum, map[string]string{"hostname": "string", "slaves": "array", "frameworks": "array"})
		sl, _ := index(sum, "slaves", 0).(map[string]any)
		checkShape(t, path+" slaves[0]", sl, map[string]string{
			"id": "string", "deactivated": "bool", "TASK_STAGING": "number", "TASK_RUNNING": "number",
			"TASK_FINISHED": "number", "TASK_UNREACHABLE": "number", "framework_ids": "array",
		})
		if sl["TASK_RUNNING"] != 1.0 || !reflect.DeepEqual(sl["framework_ids"], []any{s.id}) {
			t.Errorf("%s slave TASK_RUNNING %v framework_ids %v, want 1 [%s]", path, sl["TASK_RUNNING"], sl["framework_ids"], s.id)
		}
		fw, _ := index(sum, "frameworks", 0).(map[string]any)
		checkShape(t, path+" frameworks[0]", fw, map[string]string{
			"id": "string", "name": "string", "recovered": "bool", "TASK_RUNNING": "number", "slave_ids": "array",
		}, "tasks")
		if fw["TASK_RUNNING"] != 1.0 || !reflect.DeepEqual(fw["slave_ids"], []any{fa.ID}) {
			t.Errorf("%s framework TASK_RUNNING %v slave_ids %v, want 1 [%s]", path, fw["TASK_RUNNING"], fw["slave_ids"], fa.ID)
		}
	}
}

// TestRolesEndpoint: Mesos' /roles lists the roles of frameworks and
// reservations, and their ancestors, with weight, quota and resources.
func TestRolesEndpoint(t *testing.T) {
	tm := startMaster(t)
	fa := connectFakeAgentWith(t, tm, "cpus:1;mem:512;cpus(eng/web):1", "", nil, nil)
	s := subscribe(t, tm, codec.JSON, func(fi *mesos.FrameworkInfo) { fi.Role = proto.String("eng/web") })
	o := s.offer(offerWait)
	s.launch(o, task("", "t", o, "cpus(eng/web):0.5;mem:64", "sleep 60"))
	fa.Next(cluster.Event_RUN_TASK)

	roles := arr(getMap(t, tm, "/master/roles")["roles"])
	var names []string
	byName := map[string]map[string]any{}
	for _, r := range roles {
		r := obj(r)
		names = append(names, str(r["name"]))
		byName[str(r["name"])] = r
	}
	if !reflect.DeepEqual(names, []string{"eng", "eng/web"}) {
		t.Fatalf("roles %v, want [eng eng/web] (the framework's, its reservation's, and their ancestor)", names)
	}
	for _, c := range []struct {
		role       string
		allocated  map[string]any
		reserved   map[string]any
		frameworks []any
	}{
		{"eng/web", map[string]any{"cpus": 0.5, "mem": 64.0}, map[string]any{"cpus": 1.0}, []any{s.id}},
		{"eng", map[string]any{"cpus": 0.5, "mem": 64.0}, map[string]any{"cpus": 1.0}, []any{}},
	} {
		r := byName[c.role]
		checkShape(t, "role "+c.role, r, map[string]string{
			"name": "string", "weight": "number", "quota": "object", "resources": "object",
			"allocated": "object", "offered": "object", "reserved": "object", "frameworks": "array",
		})
		checkShape(t, "role "+c.role+" quota", obj(r["quota"]), map[string]string{
			"role": "string", "guarantee": "object", "limit": "object", "consumed": "object",
		})
		if r["weight"] != 1.0 || !reflect.DeepEqual(r["allocated"], c.allocated) || !reflect.DeepEqual(r["reserved"], c.reserved) ||
			!reflect.DeepEqual(r["frameworks"], c.frameworks) {
			t.Errorf("role %s: weight %v allocated %v reserved %v frameworks %v; want 1 %v %v %v",
				c.role, r["weight"], r["allocated"], r["reserved"], r["frameworks"], c.allocated, c.reserved, c.frameworks)
		}
	}
}

// TestTasksEndpoint: Mesos' /tasks: all tasks, live and completed, newest
// first by their first status, paged by limit and offset; bad parameters
// get 400 with the reason.
func TestTasksEndpoint(t *testing.T) {
	tm := startMaster(t)
	fa := connectFakeAgent(t, tm, "", nil, nil)
	s := subscribe(t, tm, codec.JSON)
	o := s.offer(offerWait)
	var tis []*mesos.TaskInfo
	for _, id := range []string{"t1", "t2", "t3"} {
		tis = append(tis, task("", id, o, "cpus:0.1;mem:32", "sleep 60"))
	}
	s.launch(o, tis...)
	for i, ti := range tis {
		fa.Next(cluster.Event_RUN_TASK)
		state := mesos.TaskState_TASK_RUNNING
		if i == 0 {
			state = mesos.TaskState_TASK_FINISHED // t1 ends: a completed task
		}
		fa.UpdateAt(s.id, ti, state, float64(100*(i+1)))
		s.update(ti.GetTaskId().GetValue(), 5*time.Second, state)
	}
	testsupport.Eventually(t, "t1 to be completed", 5*time.Second, func() bool {
		st := getState(t, tm)
		return len(st.Frameworks) == 1 && len(st.Frameworks[0].CompletedTasks) == 1
	})

	ids := func(m map[string]any) string {
		var out []string
		for _, tk := range arr(m["tasks"]) {
			out = append(out, str(obj(tk)["id"]))
		}
		return strings.Join(out, ",")
	}
	for _, c := range []struct {
		query string
		want  string
	}{
		{"", "t3,t2,t1"},
		{"?order=asc", "t1,t2,t3"},
		{"?order=des&limit=1&offset=1", "t2"},
		{"?limit=0", ""},
		{"?offset=5", ""},
		{"?task_id=t1", "t1"},
		{"?framework_id=" + s.id + "&order=asc&limit=2", "t1,t2"},
		{"?framework_id=nope", ""},
	} {
		t.Run("tasks"+c.query, func(t *testing.T) {
			for _, p := range []string{"/master/tasks", "/tasks"} {
				if got := ids(getMap(t, tm, p+c.query)); got != c.want {
					t.Errorf("%s%s: tasks %q, want %q", p, c.query, got, c.want)
				}
			}
		})
	}
	for _, q := range []string{"?limit=x", "?limit=-1", "?offset=1.5", "?order=up"} {
		t.Run("bad"+q, func(t *testing.T) {
			resp := rawGet(t, tm.url("/master/tasks"+q))
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("/master/tasks%s: %s, want 400", q, resp.Status)
			}
		})
	}
}

// TestGetTasksListsCompletedTasks: the operator API's GET_TASKS lists the
// completed tasks, also those of torn-down frameworks, as Mesos does.
func TestGetTasksListsCompletedTasks(t *testing.T) {
	tm := startMaster(t)
	fa := connectFakeAgent(t, tm, "", nil, nil)
	s := subscribe(t, tm, codec.JSON)
	o := s.offer(offerWait)
	done, running := task("", "done", o, "cpus:0.1;mem:32", "true"), task("", "running", o, "cpus:0.1;mem:32", "sleep 60")
	s.launch(o, done, running)
	fa.Next(cluster.Event_RUN_TASK)
	fa.Next(cluster.Event_RUN_TASK)
	fa.Update(s.id, done, mesos.TaskState_TASK_FINISHED)
	s.update("done", 5*time.Second, mesos.TaskState_TASK_FINISHED)
	fa.Update(s.id, running, mesos.TaskState_TASK_RUNNING)
	s.update("running", 5*time.Second, mesos.TaskState_TASK_RUNNING)

	getTasks := func() (live, completed map[string]mesos.TaskState) {
		resp := &masterapi.Response{}
		operator(t, tm, codec.JSON, &masterapi.Call{Type: masterapi.Call_GET_TASKS.Enum()}, resp)
		live, completed = map[string]mesos.TaskState{}, map[string]mesos.TaskState{}
		for _, tk := range resp.GetGetTasks().GetTasks() {
			live[tk.GetTaskId().GetValue()] = tk.GetState()
		}
		for _, tk := range resp.GetGetTasks().GetCompletedTasks() {
			completed[tk.GetTaskId().GetValue()] = tk.GetState()
		}
		return live, completed
	}
	testsupport.Eventually(t, "the finished task in completed_tasks", 5*time.Second, func() bool {
		_, c := getTasks()
		return c["done"] == mesos.TaskState_TASK_FINISHED
	})
	live, _ := getTasks()
	if !reflect.DeepEqual(live, map[string]mesos.TaskState{"running": mesos.TaskState_TASK_RUNNING}) {
		t.Errorf("GET_TASKS tasks %v, want running TASK_RUNNING", live)
	}

	s.mustCall(&scheduler.Call{Type: scheduler.Call_TEARDOWN.Enum()})
	live, completed := getTasks()
	want := map[string]mesos.TaskState{"done": mesos.TaskState_TASK_FINISHED, "running": mesos.TaskState_TASK_KILLED}
	if len(live) != 0 || !reflect.DeepEqual(completed, want) {
		t.Errorf("GET_TASKS after TEARDOWN: tasks %v completed_tasks %v, want none and %v", live, completed, want)
	}
}

// TestMesosPaths: the paths Mesos' master serves, with and without the
// /master prefix, answer in Mesos' shapes.
func TestMesosPaths(t *testing.T) {
	tm := startMaster(t)
	_, portStr, _ := net.SplitHostPort(tm.addr)
	hostname := str(getMap(t, tm, "/state")["hostname"])
	for _, c := range []struct {
		path     string
		status   int
		keys     []string
		location string
	}{
		{"/state", 200, []string{"slaves", "frameworks", "build_date"}, ""},
		{"/state.json", 200, []string{"slaves", "frameworks", "build_date"}, ""},
		{"/state-summary", 200, []string{"hostname", "slaves", "frameworks"}, ""},
		{"/frameworks", 200, []string{"frameworks", "completed_frameworks", "unregistered_frameworks"}, ""},
		{"/slaves", 200, []string{"slaves", "recovered_slaves"}, ""},
		{"/tasks", 200, []string{"tasks"}, ""},
		{"/roles", 200, []string{"roles"}, ""},
		{"/flags", 200, []string{"flags"}, ""},
		{"/health", 200, nil, ""},
		{"/redirect", http.StatusTemporaryRedirect, nil, "//" + hostname + ":" + portStr},
	} {
		for _, p := range []string{"/master" + c.path, c.path} {
			t.Run(p, func(t *testing.T) {
				resp := rawGet(t, tm.url(p))
				if resp.StatusCode != c.status {
					t.Fatalf("GET %s: %s, want %d", p, resp.Status, c.status)
				}
				if loc := resp.Header.Get("Location"); loc != c.location {
					t.Errorf("GET %s: Location %q, want %q", p, loc, c.location)
				}
				if len(c.keys) == 0 {
					return
				}
				var m map[string]any
				if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
					t.Fatalf("GET %s: %v", p, err)
				}
				for _, k := range c.keys {
					if _, ok := m[k]; !ok {
						t.Errorf("GET %s lacks %q", p, k)
					}
				}
			})
		}
	}
	// Mesos refuses what lies below /redirect, which would loop.
	if resp := rawGet(t, tm.url("/master/redirect/x")); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/master/redirect/x: %s, want 404", resp.Status)
	}
}
