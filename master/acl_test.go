package master_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/auth"
	"github.com/corral/corral/api/authz"
	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/api/v1/scheduler"
	"github.com/corral/corral/master"
	"github.com/corral/corral/master/mastertest"
)

// aclMatrix: alice may use the analytics role and run tasks as alice;
// bob may use the default role and run tasks as anyone; carol may do
// nothing (not permissive); ops sees everything, alice only what runs as
// alice, and only ops the flags.
const aclMatrix = `{
  "permissive": false,
  "register_frameworks": [
    {"principals": {"values": ["alice"]}, "roles": {"values": ["analytics"]}},
    {"principals": {"values": ["bob"]}, "roles": {"values": ["*"]}}
  ],
  "run_tasks": [
    {"principals": {"values": ["alice"]}, "users": {"values": ["alice"]}},
    {"principals": {"values": ["bob"]}, "users": {"type": "ANY"}}
  ],
  "view_frameworks": [
    {"principals": {"values": ["ops"]}, "users": {"type": "ANY"}},
    {"principals": {"values": ["alice"]}, "users": {"values": ["alice"]}}
  ],
  "view_tasks": [
    {"principals": {"values": ["ops"]}, "users": {"type": "ANY"}},
    {"principals": {"values": ["alice"]}, "users": {"values": ["alice"]}}
  ],
  "view_executors": [
    {"principals": {"values": ["ops"]}, "users": {"type": "ANY"}},
    {"principals": {"values": ["alice"]}, "users": {"values": ["alice"]}}
  ],
  "teardown_frameworks": [
    {"principals": {"values": ["ops"]}, "framework_principals": {"type": "ANY"}},
    {"principals": {"values": ["alice"]}, "framework_principals": {"values": ["alice"]}}
  ],
  "get_endpoints": [
    {"principals": {"values": ["ops"]}, "paths": {"values": ["/metrics/snapshot"]}}
  ],
  "view_flags": [
    {"principals": {"values": ["ops"]}, "flags": {"type": "ANY"}}
  ]
}`

func aclMaster(t *testing.T) *testMaster {
	t.Helper()
	acls, err := authz.Parse([]byte(aclMatrix))
	if err != nil {
		t.Fatal(err)
	}
	creds := auth.Credentials{"alice": "a", "bob": "b", "carol": "c", "ops": "o"}
	return startMasterWith(t, func(c *master.Config) {
		c.FrameworkCredentials, c.ReadonlyCredentials, c.ReadwriteCredentials, c.ACLs = creds, creds, creds, acls
		c.Flags = map[string]string{"acls": "(set)"}
	})
}

// TestACLRegisterFrameworks: a framework subscribes only with roles its
// principal may use; a refusal is an ERROR event and leaves nothing.
func TestACLRegisterFrameworks(t *testing.T) {
	tm := aclMaster(t)
	secrets := map[string]string{"alice": "a", "bob": "b", "carol": "c"}
	for _, tc := range []struct {
		principal, role string
		allowed         bool
	}{
		{"alice", "analytics", true},
		{"alice", "*", false},
		{"bob", "*", true},
		{"bob", "analytics", false},
		{"carol", "*", false},
	} {
		t.Run(tc.principal+"/"+tc.role, func(t *testing.T) {
			info := &mesos.FrameworkInfo{User: proto.String(tc.principal), Name: proto.String("acl"), Role: proto.String(tc.role)}
			if tc.allowed {
				s := subscribeAs(t, tm, codec.JSON, &scheduler.Call_Subscribe{FrameworkInfo: info}, auth.BasicHeader(tc.principal, secrets[tc.principal]))
				if s.id == "" {
					t.Fatal("no framework ID")
				}
				return
			}
			body, _ := proto.Marshal(&scheduler.Call{Type: scheduler.Call_SUBSCRIBE.Enum(), Subscribe: &scheduler.Call_Subscribe{FrameworkInfo: info}})
			h := auth.BasicHeader(tc.principal, secrets[tc.principal])
			h.Set("Content-Type", "application/x-protobuf")
			h.Set("Accept", "application/json")
			code, got, _ := rawPostHeader(t, tm.url("/api/v1/scheduler"), h, body)
			if code != http.StatusOK || !strings.Contains(got, `"ERROR"`) || !strings.Contains(got, "Not authorized to register framework with principal '"+tc.principal+"' for role '"+tc.role+"'") {
				t.Fatalf("SUBSCRIBE as %s with role %s: %d %q, want an ERROR event saying why", tc.principal, tc.role, code, got)
			}
		})
	}
	// UPDATE_FRAMEWORK to a role the principal may not use: 403, as Mesos.
	info := &mesos.FrameworkInfo{User: proto.String("alice"), Name: proto.String("acl-update"), Role: proto.String("analytics")}
	s := subscribeAs(t, tm, codec.JSON, &scheduler.Call_Subscribe{FrameworkInfo: info}, auth.BasicHeader("alice", "a"))
	updated := proto.Clone(info).(*mesos.FrameworkInfo)
	updated.Id, updated.Principal, updated.Role = &mesos.FrameworkID{Value: proto.String(s.id)}, proto.String("alice"), proto.String("*")
	err := s.call(&scheduler.Call{FrameworkId: updated.Id, Type: scheduler.Call_UPDATE_FRAMEWORK.Enum(),
		UpdateFramework: &scheduler.Call_UpdateFramework{FrameworkInfo: updated}})
	if statusCode(err) != http.StatusForbidden || !strings.Contains(err.Error(), "for role '*'") {
		t.Errorf("UPDATE_FRAMEWORK to role *: %v, want 403", err)
	}
	// Nothing of the refused subscriptions is kept.
	st := getMapAs(t, tm, "/state", "ops", "o")
	live, _ := st["frameworks"].([]any)
	done, _ := st["completed_frameworks"].([]any)
	if len(live)+len(done) != 3 {
		t.Errorf("/state has %d frameworks, want the 3 allowed", len(live)+len(done))
	}
}

// TestACLRunTasks: a task runs only as a user its framework's principal
// may run as; the others are TASK_ERROR with REASON_TASK_UNAUTHORIZED,
// whether the user is the task's, its executor's or the framework's.
func TestACLRunTasks(t *testing.T) {
	tm := aclMaster(t)
	mastertest.ConnectAgent(t, tm.addr, mastertest.AgentOptions{Resources: agentResources, RunCommands: true})
	alice := subscribeAs(t, tm, codec.JSON, &scheduler.Call_Subscribe{FrameworkInfo: &mesos.FrameworkInfo{
		User: proto.String("alice"), Name: proto.String("acl"), Role: proto.String("analytics"),
	}}, auth.BasicHeader("alice", "a"))
	o := alice.offer(10 * time.Second)
	own := task("", "as-alice", o, "cpus:0.1;mem:32", "sleep 60")
	asRoot := task("", "as-root", o, "cpus:0.1;mem:32", "true")
	asRoot.Command.User = proto.String("root")
	viaExecutor := task("", "executor-as-root", o, "cpus:0.1;mem:32", "")
	viaExecutor.Command = nil
	viaExecutor.Executor = &mesos.ExecutorInfo{
		ExecutorId: &mesos.ExecutorID{Value: proto.String("root-executor")},
		Command:    &mesos.CommandInfo{Value: proto.String("/bin/executor"), User: proto.String("root")},
	}
	alice.launch(o, own, asRoot, viaExecutor)
	alice.update("as-alice", 10*time.Second, mesos.TaskState_TASK_RUNNING)
	for _, id := range []string{"as-root", "executor-as-root"} {
		st := alice.update(id, 10*time.Second, mesos.TaskState_TASK_ERROR)
		if st.GetReason() != mesos.TaskStatus_REASON_TASK_UNAUTHORIZED || !strings.Contains(st.GetMessage(), "not authorized to launch as user 'root'") {
			t.Errorf("%s: %v %q, want REASON_TASK_UNAUTHORIZED naming root", id, st.GetReason(), st.GetMessage())
		}
	}

	// A task group is refused whole when one of its users is not allowed.
	o = alice.offer(10 * time.Second)
	member, rooted := task("", "member", o, "cpus:0.1;mem:32", "sleep 60"), task("", "rooted", o, "cpus:0.1;mem:32", "sleep 60")
	rooted.Command.User = proto.String("root")
	alice.mustCall(&scheduler.Call{Type: scheduler.Call_ACCEPT.Enum(), Accept: &scheduler.Call_Accept{
		OfferIds: []*mesos.OfferID{o.GetId()},
		Operations: []*mesos.Offer_Operation{{Type: mesos.Offer_Operation_LAUNCH_GROUP.Enum(), LaunchGroup: &mesos.Offer_Operation_LaunchGroup{
			Executor: &mesos.ExecutorInfo{
				ExecutorId: &mesos.ExecutorID{Value: proto.String("group")}, Type: mesos.ExecutorInfo_DEFAULT.Enum(),
				Resources: task("", "x", nil, "cpus:0.1;mem:32", "").GetResources(),
			},
			TaskGroup: &mesos.TaskGroupInfo{Tasks: []*mesos.TaskInfo{member, rooted}},
		}}},
	}})
	for _, id := range []string{"member", "rooted"} {
		if st := alice.update(id, 10*time.Second, mesos.TaskState_TASK_ERROR); st.GetReason() != mesos.TaskStatus_REASON_TASK_GROUP_UNAUTHORIZED {
			t.Errorf("%s: %v, want REASON_TASK_GROUP_UNAUTHORIZED", id, st.GetReason())
		}
	}

	// bob may run as anyone, root included: his framework runs as alice,
	// one of its tasks as root.
	bob := subscribeAs(t, tm, codec.JSON, &scheduler.Call_Subscribe{FrameworkInfo: &mesos.FrameworkInfo{
		User: proto.String("alice"), Name: proto.String("acl-bob"),
	}}, auth.BasicHeader("bob", "b"))
	o = bob.offer(10 * time.Second)
	bobRoot := task("", "bob-as-root", o, "cpus:0.1;mem:32", "sleep 60")
	bobRoot.Command.User = proto.String("root")
	bob.launch(o, bobRoot, task("", "bob-as-alice", o, "cpus:0.1;mem:32", "sleep 60"))
	bob.update("bob-as-root", 10*time.Second, mesos.TaskState_TASK_RUNNING)
	bob.update("bob-as-alice", 10*time.Second, mesos.TaskState_TASK_RUNNING)

	// What each viewer sees: ops everything, alice what runs as alice,
	// carol (no rule, not permissive) nothing.
	for _, tc := range []struct {
		viewer, secret string
		frameworks     []string // users
		tasks          []string
		flags          bool
	}{
		{"ops", "o", []string{"alice", "alice"}, []string{"as-alice", "bob-as-alice", "bob-as-root"}, true},
		{"alice", "a", []string{"alice", "alice"}, []string{"as-alice", "bob-as-alice"}, false},
		{"carol", "c", nil, nil, false},
	} {
		t.Run("view as "+tc.viewer, func(t *testing.T) {
			st := getMapAs(t, tm, "/state", tc.viewer, tc.secret)
			var users, tasks []string
			fws, _ := st["frameworks"].([]any)
			for _, f := range fws {
				fw := f.(map[string]any)
				users = append(users, fw["user"].(string))
				for _, tk := range fw["tasks"].([]any) {
					tasks = append(tasks, tk.(map[string]any)["id"].(string))
				}
			}
			slices.Sort(tasks)
			if strings.Join(users, ",") != strings.Join(tc.frameworks, ",") || strings.Join(tasks, ",") != strings.Join(tc.tasks, ",") {
				t.Errorf("/state shows frameworks of %v with tasks %v, want %v with %v", users, tasks, tc.frameworks, tc.tasks)
			}
			if _, shown := st["flags"]; shown != tc.flags {
				t.Errorf("/state flags shown: %v, want %v", shown, tc.flags)
			}
			var listed []string
			for _, tk := range getMapAs(t, tm, "/tasks", tc.viewer, tc.secret)["tasks"].([]any) {
				if s := tk.(map[string]any)["state"]; s == "TASK_RUNNING" {
					listed = append(listed, tk.(map[string]any)["id"].(string))
				}
			}
			slices.Sort(listed)
			if strings.Join(listed, ",") != strings.Join(tc.tasks, ",") {
				t.Errorf("/tasks running: %v, want %v", listed, tc.tasks)
			}
			// ops alone may see the flags and get the metrics.
			for _, path := range []string{"/flags", "/metrics/snapshot"} {
				resp := getAs(t, tm, path, tc.viewer, tc.secret)
				resp.Body.Close()
				if want := map[bool]int{true: http.StatusOK, false: http.StatusForbidden}[tc.flags]; resp.StatusCode != want {
					t.Errorf("%s: %s, want %d", path, resp.Status, want)
				}
			}
			// The operator API filters the same way.
			body := []byte(`{"type":"GET_FRAMEWORKS"}`)
			h := auth.BasicHeader(tc.viewer, tc.secret)
			h.Set("Content-Type", "application/json")
			h.Set("Accept", "application/json")
			code, got, _ := rawPostHeader(t, tm.url("/api/v1"), h, body)
			var gf struct {
				GetFrameworks struct {
					Frameworks []struct {
						FrameworkInfo struct {
							User string `json:"user"`
						} `json:"framework_info"`
					} `json:"frameworks"`
				} `json:"get_frameworks"`
			}
			if err := json.Unmarshal([]byte(got), &gf); code != http.StatusOK || err != nil {
				t.Fatalf("GET_FRAMEWORKS: %d %q %v", code, got, err)
			}
			users = nil
			for _, f := range gf.GetFrameworks.Frameworks {
				users = append(users, f.FrameworkInfo.User)
			}
			if strings.Join(users, ",") != strings.Join(tc.frameworks, ",") {
				t.Errorf("GET_FRAMEWORKS shows %v, want %v", users, tc.frameworks)
			}
			code, got, _ = rawPostHeader(t, tm.url("/api/v1"), h, []byte(`{"type":"GET_TASKS"}`))
			var gt struct {
				GetTasks struct {
					Tasks []struct {
						TaskID struct {
							Value string `json:"value"`
						} `json:"task_id"`
					} `json:"tasks"`
				} `json:"get_tasks"`
			}
			if err := json.Unmarshal([]byte(got), &gt); code != http.StatusOK || err != nil {
				t.Fatalf("GET_TASKS: %d %q %v", code, got, err)
			}
			var ids []string
			for _, tk := range gt.GetTasks.Tasks {
				ids = append(ids, tk.TaskID.Value)
			}
			slices.Sort(ids)
			if strings.Join(ids, ",") != strings.Join(tc.tasks, ",") {
				t.Errorf("GET_TASKS shows %v, want %v", ids, tc.tasks)
			}
		})
	}
}

func getAs(t *testing.T, tm *testMaster, path, principal, secret string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, tm.url(path), nil)
	req.SetBasicAuth(principal, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func getMapAs(t *testing.T, tm *testMaster, path, principal, secret string) map[string]any {
	t.Helper()
	resp := getAs(t, tm, path, principal, secret)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s as %s: %s", path, principal, resp.Status)
	}
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestACLTeardown: /teardown wants read-write credentials and removes a
// framework only for a principal teardown_frameworks allows.
func TestACLTeardown(t *testing.T) {
	tm := aclMaster(t)
	bob := subscribeAs(t, tm, codec.JSON, &scheduler.Call_Subscribe{FrameworkInfo: &mesos.FrameworkInfo{
		User: proto.String("root"), Name: proto.String("acl-bob"),
	}}, auth.BasicHeader("bob", "b"))
	post := func(principal, secret, body string) (int, string, http.Header) {
		h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
		if principal != "" {
			h = auth.BasicHeader(principal, secret)
			h.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		return rawPostHeader(t, tm.url("/master/teardown"), h, []byte(body))
	}
	if code, _, h := post("", "", "frameworkId="+bob.id); code != http.StatusUnauthorized || h.Get("WWW-Authenticate") != `Basic realm="mesos-master-readwrite"` {
		t.Errorf("without credentials: %d %q, want 401 in the readwrite realm", code, h.Get("WWW-Authenticate"))
	}
	for _, tc := range []struct {
		name, principal, secret, body string
		code                          int
		says                          string
	}{
		{"no frameworkId", "ops", "o", "", http.StatusBadRequest, "Missing 'frameworkId'"},
		{"unknown framework", "ops", "o", "frameworkId=nope", http.StatusBadRequest, "No framework found"},
		{"another principal's framework", "alice", "a", "frameworkId=" + bob.id, http.StatusForbidden, "Not authorized to teardown"},
		{"no rule", "carol", "c", "frameworkId=" + bob.id, http.StatusForbidden, "Not authorized to teardown"},
	} {
		if code, body, _ := post(tc.principal, tc.secret, tc.body); code != tc.code || !strings.Contains(body, tc.says) {
			t.Errorf("%s: %d %q, want %d saying %q", tc.name, code, body, tc.code, tc.says)
		}
	}
	bob.noEvent(scheduler.Event_ERROR, 100*time.Millisecond)
	if code, body, _ := post("ops", "o", "frameworkId="+bob.id); code != http.StatusOK {
		t.Fatalf("ops tears bob's framework down: %d %q", code, body)
	}
	if ev := bob.next(scheduler.Event_ERROR, 5*time.Second); ev.GetError().GetMessage() != "Framework removed" {
		t.Errorf("bob's ERROR says %q", ev.GetError().GetMessage())
	}
	if fws, _ := getMapAs(t, tm, "/state", "ops", "o")["frameworks"].([]any); len(fws) != 0 {
		t.Errorf("%d frameworks left after the teardown", len(fws))
	}
	resp := getAs(t, tm, "/teardown", "ops", "o")
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /teardown: %s, want 405", resp.Status)
	}
}

// A master beyond loopback that does not authenticate frameworks and
// agents says so on /health (a Warning header; the body stays empty).
func TestHealthSaysUnauthenticated(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     master.Config
		warning string
	}{
		{"loopback", master.Config{Address: "127.0.0.1:5050"}, ""},
		{"open", master.Config{Address: "10.1.2.3:5050"}, "act as any framework (--authenticate_http_frameworks), act as any agent (--authenticate_agents), tear down any framework"},
		{"frameworks authenticate", master.Config{Address: "10.1.2.3:5050", FrameworkCredentials: auth.Credentials{"a": "b"}}, "act as any agent (--authenticate_agents)"},
		{"all authenticate", master.Config{Address: "0.0.0.0:5050", FrameworkCredentials: auth.Credentials{"a": "b"}, AgentCredentials: auth.Credentials{"c": "d"}, ReadwriteCredentials: auth.Credentials{"e": "f"}}, ""},
		{"teardown open", master.Config{Address: "0.0.0.0:5050", FrameworkCredentials: auth.Credentials{"a": "b"}, AgentCredentials: auth.Credentials{"c": "d"}}, "tear down any framework (--authenticate_http_readwrite)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Log = quietLog()
			w := httptest.NewRecorder()
			master.New(tc.cfg).Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/health", nil))
			got := w.Header().Get("Warning")
			if w.Code != http.StatusOK || w.Body.Len() != 0 || (tc.warning == "") != (got == "") || !strings.Contains(got, tc.warning) {
				t.Fatalf("/health: %d %q, Warning %q; want 200, no body and a warning with %q", w.Code, w.Body.String(), got, tc.warning)
			}
		})
	}
}

// A known framework cannot change the user its tasks were authorized and
// run as, nor its checkpointing, as Mesos refuses (validateUpdate).
func TestFrameworkUserIsImmutable(t *testing.T) {
	tm := startMaster(t)
	info := &mesos.FrameworkInfo{User: proto.String("alice"), Name: proto.String("immutable"), FailoverTimeout: proto.Float64(60)}
	s := subscribe(t, tm, codec.JSON, func(fi *mesos.FrameworkInfo) { proto.Merge(fi, info) })
	changed := proto.Clone(info).(*mesos.FrameworkInfo)
	changed.Name = proto.String(t.Name())
	changed.Id = &mesos.FrameworkID{Value: proto.String(s.id)}
	changed.User = proto.String("root")
	err := s.call(&scheduler.Call{
		FrameworkId: &mesos.FrameworkID{Value: proto.String(s.id)}, Type: scheduler.Call_UPDATE_FRAMEWORK.Enum(),
		UpdateFramework: &scheduler.Call_UpdateFramework{FrameworkInfo: changed},
	})
	if err == nil || !strings.Contains(err.Error(), "Updating 'FrameworkInfo.user' is unsupported") {
		t.Fatalf("UPDATE_FRAMEWORK to user root: %v, want it refused", err)
	}
	changed.User, changed.Checkpoint = info.User, proto.Bool(true)
	body, _ := proto.Marshal(&scheduler.Call{FrameworkId: changed.Id, Type: scheduler.Call_SUBSCRIBE.Enum(), Subscribe: &scheduler.Call_Subscribe{FrameworkInfo: changed}})
	code, got := rawPost(t, tm.url("/api/v1/scheduler"), map[string]string{"Content-Type": "application/x-protobuf", "Accept": "application/json"}, body)
	if code != http.StatusOK || !strings.Contains(got, "Updating 'FrameworkInfo.checkpoint' is unsupported") {
		t.Fatalf("re-SUBSCRIBE with checkpointing: %d %q, want an ERROR event", code, got)
	}
	s.noEvent(scheduler.Event_ERROR, 100*time.Millisecond)
}
