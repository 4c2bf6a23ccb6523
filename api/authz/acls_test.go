package authz

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAllowed follows Mesos' local authorizer: first matching rule
// decides, NONE denies, no match falls to permissive.
func TestAllowed(t *testing.T) {
	const acls = `{
	  "permissive": false,
	  "register_frameworks": [
	    {"principals": {"values": ["analyst"]}, "roles": {"values": ["analytics"]}},
	    {"principals": {"type": "NONE"}, "roles": {"values": ["prod"]}},
	    {"principals": {"values": ["ops", "deployer"]}, "roles": {"type": "ANY"}},
	    {"principals": {"type": "ANY"}, "roles": {"values": ["*"]}}
	  ],
	  "run_tasks": [
	    {"principals": {"values": ["analyst"]}, "users": {"type": "NONE"}},
	    {"principals": {"type": "ANY"}, "users": {"values": ["nobody"]}}
	  ]
	}`
	a, err := Parse([]byte(acls))
	if err != nil {
		t.Fatal(err)
	}
	permissive, err := Parse([]byte(`{"register_frameworks": [{"principals": {"values": ["analyst"]}, "roles": {"values": ["analytics"]}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		acls      *ACLs
		action    Action
		principal string
		object    string
		want      bool
	}{
		{"listed principal and role", a, RegisterFramework, "analyst", "analytics", true},
		{"listed principal, unlisted role: no rule matches, not permissive", a, RegisterFramework, "analyst", "dev", false},
		{"NONE principals deny everyone", a, RegisterFramework, "ops", "prod", false},
		{"NONE principals deny the unauthenticated", a, RegisterFramework, "", "prod", false},
		{"ANY role", a, RegisterFramework, "deployer", "dev", true},
		{"ANY principal, the default role", a, RegisterFramework, "someone", "*", true},
		{"no principal matches an ANY rule", a, RegisterFramework, "", "*", true},
		{"no principal does not match a listed one", a, RegisterFramework, "", "analytics", false},
		{"NONE users", a, RunTask, "analyst", "nobody", false},
		{"listed user", a, RunTask, "ops", "nobody", true},
		{"unlisted user, not permissive", a, RunTask, "ops", "root", false},
		{"an action without rules, not permissive", a, ViewFramework, "ops", "root", false},
		{"permissive: no rule matches", permissive, RegisterFramework, "analyst", "prod", true},
		{"permissive: the rule matches", permissive, RegisterFramework, "analyst", "analytics", true},
		{"no ACLs", nil, RunTask, "", "root", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.acls.Allowed(tc.action, tc.principal, tc.object); got != tc.want {
				t.Errorf("Allowed(%s, %q, %q) = %v, want %v", tc.action, tc.principal, tc.object, got, tc.want)
			}
		})
	}
	// A request for any object is allowed only by an ANY object.
	flags, err := Parse([]byte(`{"permissive": false, "view_flags": [{"principals": {"values": ["ops"]}, "flags": {"type": "ANY"}}, {"principals": {"values": ["dev"]}, "flags": {"type": "NONE"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if !flags.AllowedAny(ViewFlags, "ops") || flags.AllowedAny(ViewFlags, "dev") || flags.AllowedAny(ViewFlags, "") {
		t.Error("view_flags: want ops allowed, dev and no principal denied")
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, acls, want string }{
		{"not JSON", `{`, "ACLs:"},
		{"unknown action", `{"register_framework": []}`, `unknown action "register_framework"`},
		{"wrong object", `{"run_tasks": [{"principals": {"type": "ANY"}, "roles": {"type": "ANY"}}]}`, `unknown field "roles" (want principals and users)`},
		{"missing object", `{"run_tasks": [{"principals": {"type": "ANY"}}]}`, "run_tasks[0]: users is required"},
		{"bad type", `{"run_tasks": [{"principals": {"type": "ALL"}, "users": {"type": "ANY"}}]}`, `type "ALL": want SOME, ANY or NONE`},
		{"unknown entity field", `{"run_tasks": [{"principals": {"value": ["a"]}, "users": {"type": "ANY"}}]}`, `unknown field "value"`},
		{"bad permissive", `{"permissive": "no"}`, "permissive"},
		{"listed flags", `{"view_flags": [{"principals": {"type": "ANY"}, "flags": {"values": ["acls"]}}]}`, "view_flags[0].flags: must be ANY or NONE"},
		{"unguarded endpoint", `{"get_endpoints": [{"principals": {"type": "ANY"}, "paths": {"values": ["/state"]}}]}`, `"/state" is not an authorizable path`},
		{"Mesos' older nested-container name", `{"launch_nested_containers": []}`, `unknown action "launch_nested_containers"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.acls))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse(%s) = %v, want an error with %q", tc.acls, err, tc.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "acls.json")
	if err := os.WriteFile(path, []byte(`{"permissive": false, "get_quotas": [{"principals": {"type": "ANY"}, "roles": {"type": "ANY"}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{path, "file://" + path} {
		a, err := Load(flag)
		if err != nil {
			t.Fatal(err)
		}
		if a.AllowedAny(ViewFlags, "x") {
			t.Errorf("%s: not permissive, yet allowed", flag)
		}
		if got := a.Unenforced(); len(got) != 1 || got[0] != "get_quotas" {
			t.Errorf("Unenforced = %v, want [get_quotas]", got)
		}
	}
	if a, err := Load(` {"permissive": true}`); err != nil || !a.AllowedAny(ViewFlags, "") {
		t.Errorf("inline JSON: %v", err)
	}
	if _, err := Load("/nonexistent/acls.json"); err == nil || !strings.Contains(err.Error(), "--acls") {
		t.Errorf("a missing file: %v, want an error naming --acls", err)
	}
	if a, err := Load(""); a != nil || err != nil {
		t.Errorf(`Load("") = %v, %v; want no ACLs`, a, err)
	}
}

// Mesos' hierarchical role rules: "eng/%" stands for every role below
// eng, not eng itself, and keeps its place among the rules.
func TestHierarchicalRoles(t *testing.T) {
	a, err := Parse([]byte(`{"permissive": false, "register_frameworks": [
	  {"principals": {"type": "NONE"}, "roles": {"values": ["prod/%"]}},
	  {"principals": {"values": ["eng"]}, "roles": {"values": ["eng/%", "eng"]}},
	  {"principals": {"type": "ANY"}, "roles": {"type": "ANY"}}
	]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		principal, role string
		want            bool
	}{
		{"alice", "prod/web", false}, // NONE for everything below prod
		{"alice", "prod", true},      // prod itself is not below prod
		{"eng", "eng/dev", true},
		{"eng", "eng/dev/ci", true},
		{"eng", "eng", true},
		{"eng", "prod/db", false},
		{"alice", "eng/dev", true}, // the eng rule is eng's; ANY decides
	} {
		if got := a.Allowed(RegisterFramework, tc.principal, tc.role); got != tc.want {
			t.Errorf("Allowed(%q, %q) = %v, want %v", tc.principal, tc.role, got, tc.want)
		}
	}
}

// get_endpoints judges an endpoint by Mesos' name of it, whatever alias
// the request used.
func TestEndpoint(t *testing.T) {
	a, err := Parse([]byte(`{"permissive": false, "get_endpoints": [
	  {"principals": {"values": ["ops"]}, "paths": {"type": "ANY"}},
	  {"principals": {"type": "ANY"}, "paths": {"values": ["/monitor/statistics"]}}
	]}`))
	if err != nil {
		t.Fatal(err)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	for _, tc := range []struct {
		acls *ACLs
		path string
		want int
	}{
		{a, "/monitor/statistics", http.StatusOK},
		{a, "/monitor/statistics.json", http.StatusOK},
		{a, "/slave(1)/monitor/statistics", http.StatusOK},
		{a, "/slave(1)/monitor/statistics.json", http.StatusOK},
		{a, "/containers", http.StatusForbidden},
		{a, "/slave(1)/containers.json", http.StatusForbidden},
		{a, "/master/metrics/snapshot", http.StatusForbidden},
		{nil, "/containers", http.StatusOK},
	} {
		w := httptest.NewRecorder()
		tc.acls.Endpoint(ok)(w, httptest.NewRequest(http.MethodGet, tc.path, nil))
		if w.Code != tc.want {
			t.Errorf("GET %s: %d, want %d", tc.path, w.Code, tc.want)
		}
	}
	if got := EndpointPath("/master/state.json"); got != "/state" {
		t.Errorf("EndpointPath = %q", got)
	}
}
