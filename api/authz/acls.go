// Package authz is Corral's local authorizer: Mesos' ACLs (the --acls
// JSON of its local authorizer, the same names and the same evaluation)
// deciding which principal may do what to which object.
//
// Rules of an action are tried in the order given; the first whose
// principals and object both match decides, allowing unless either entity
// is NONE (or a listed entity leaves a value out). When no rule matches,
// "permissive" decides (Mesos' default: true). A caller without a
// principal (authentication off) matches only rules whose principals are
// ANY or NONE.
package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
)

// Action names a kind of request, by its key in the ACLs JSON.
type Action string

// The actions Corral enforces.
const (
	RegisterFramework Action = "register_frameworks" // object: a role the framework subscribes with
	RunTask           Action = "run_tasks"           // object: the user a task runs as
	TeardownFramework Action = "teardown_frameworks" // object: the framework's principal
	ViewFramework     Action = "view_frameworks"     // object: the framework's user
	ViewTask          Action = "view_tasks"          // object: the task's user
	ViewExecutor      Action = "view_executors"      // object: the executor's user
	AccessSandbox     Action = "access_sandboxes"    // object: the executor's user
	ViewFlags         Action = "view_flags"          // object: ANY
	GetEndpoint       Action = "get_endpoints"       // object: the endpoint's path
)

// objectKeys are Mesos' actions with the key of their object. The ones
// Corral has no operation for yet (quota, weights, reservations, volumes,
// maintenance, nested containers...) are read and kept, so that an
// operator's Mesos file loads, and decide nothing.
var objectKeys = map[Action]string{
	RegisterFramework: "roles", RunTask: "users", TeardownFramework: "framework_principals",
	ViewFramework: "users", ViewTask: "users", ViewExecutor: "users", AccessSandbox: "users", ViewFlags: "flags",
	"reserve_resources": "roles", "unreserve_resources": "reserver_principals", "create_volumes": "roles",
	"destroy_volumes": "creator_principals", "resize_volumes": "roles", "update_weights": "roles",
	GetEndpoint: "paths", "get_quotas": "roles", "update_quotas": "roles", "view_roles": "roles",
	"access_mesos_logs": "logs", "set_log_level": "level", "register_agents": "agents",
	"launch_nested_containers_as_user": "users", "launch_nested_containers_under_parent_with_user": "users",
	"kill_nested_containers": "users", "wait_nested_containers": "users", "remove_nested_containers": "users",
	"launch_nested_container_sessions_as_user": "users", "launch_nested_container_sessions_under_parent_with_user": "users",
	"attach_containers_input": "users", "attach_containers_output": "users", "view_containers": "users",
	"update_maintenance_schedules": "machines", "get_maintenance_schedules": "machines",
	"start_maintenances": "machines", "stop_maintenances": "machines", "get_maintenance_statuses": "machines",
	"drain_agents": "agents", "deactivate_agents": "agents", "reactivate_agents": "agents", "mark_agents_gone": "agents",
	"launch_standalone_containers": "users", "kill_standalone_containers": "users",
	"wait_standalone_containers": "users", "remove_standalone_containers": "users", "view_standalone_containers": "users",
	"modify_resource_provider_configs": "resource_providers", "mark_resource_providers_gone": "resource_providers",
	"view_resource_providers": "resource_providers", "prune_images": "images",
	"create_block_disks": "roles", "destroy_block_disks": "roles", "create_mount_disks": "roles",
	"destroy_mount_disks": "roles", "destroy_raw_disks": "roles",
}

// Enforced says whether Corral checks action anywhere.
func Enforced(a Action) bool {
	switch a {
	case RegisterFramework, RunTask, TeardownFramework, ViewFramework, ViewTask, ViewExecutor, AccessSandbox, ViewFlags, GetEndpoint:
		return true
	}
	return false
}

type kind int

const (
	some kind = iota // the listed values
	anyValue
	none
)

// entity is ACL.Entity: {"values": [...]}, {"type": "ANY"} or {"type": "NONE"}.
type entity struct {
	kind   kind
	values []string
}

func (e *entity) UnmarshalJSON(b []byte) error {
	var raw struct {
		Type   *string  `json:"type"`
		Values []string `json:"values"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return err
	}
	e.kind = some
	if raw.Type != nil {
		switch *raw.Type {
		case "SOME":
		case "ANY":
			e.kind = anyValue
		case "NONE":
			e.kind = none
		default:
			return fmt.Errorf("type %q: want SOME, ANY or NONE", *raw.Type)
		}
	}
	e.values = raw.Values
	return nil
}

func (e entity) String() string {
	switch e.kind {
	case anyValue:
		return "ANY"
	case none:
		return "NONE"
	}
	return fmt.Sprintf("%q", e.values)
}

// contains: every value of the request is listed.
func (e entity) contains(request []string) bool {
	for _, v := range request {
		if !slices.Contains(e.values, v) {
			return false
		}
	}
	return true
}

// matches and allows are Mesos' two matrices. A request entity is SOME (a
// principal, an object) or ANY (no principal; an object not named).
func (e entity) matches(req entity) bool {
	switch req.kind {
	case none:
		return e.kind == none
	case anyValue:
		return e.kind != some
	}
	return e.kind != some || e.contains(req.values)
}

func (e entity) allows(req entity) bool {
	switch req.kind {
	case none:
		return e.kind == none
	case anyValue:
		return e.kind == anyValue
	}
	switch e.kind {
	case anyValue:
		return true
	case none:
		return false
	}
	return e.contains(req.values)
}

type rule struct {
	principals, objects entity
	// recursive: objects is the one role "parent/%", which stands for
	// every role below parent (Mesos' hierarchical role ACLs).
	recursive bool
}

// authorizableEndpoints are the paths get_endpoints may name, as Mesos'
// AUTHORIZABLE_ENDPOINTS (Corral serves the first three).
var authorizableEndpoints = []string{"/metrics/snapshot", "/monitor/statistics", "/containers", "/containerizer/debug", "/files/debug", "/logging/toggle"}

// anyOrNone are the actions whose object may only be ANY or NONE, as
// Mesos' validation wants.
var anyOrNone = map[Action]bool{
	ViewFlags: true, "set_log_level": true, "register_agents": true, "update_maintenance_schedules": true,
	"get_maintenance_schedules": true, "start_maintenances": true, "stop_maintenances": true, "get_maintenance_statuses": true,
}

// ACLs are the parsed --acls. A nil *ACLs allows everything (no --acls).
type ACLs struct {
	permissive bool
	rules      map[Action][]rule
}

// Parse reads Mesos' ACLs JSON and checks it as Mesos' local authorizer
// does (objects that must be ANY or NONE, get_endpoints' paths). Unknown
// actions and fields are errors too, where Mesos' parser ignores them: a
// misspelt rule must not leave a hole.
func Parse(b []byte) (*ACLs, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("ACLs: %w", err)
	}
	a := &ACLs{permissive: true, rules: map[Action][]rule{}}
	for _, key := range slices.Sorted(maps.Keys(raw)) {
		v := raw[key]
		if key == "permissive" {
			if err := json.Unmarshal(v, &a.permissive); err != nil {
				return nil, fmt.Errorf("ACLs: permissive: %w", err)
			}
			continue
		}
		action := Action(key)
		objectKey, ok := objectKeys[action]
		if !ok {
			return nil, fmt.Errorf("ACLs: unknown action %q", key)
		}
		var list []map[string]json.RawMessage
		if err := json.Unmarshal(v, &list); err != nil {
			return nil, fmt.Errorf("ACLs: %s: want a list of rules: %w", key, err)
		}
		for i, r := range list {
			var parsed rule
			for field, ev := range r {
				var dst *entity
				switch field {
				case "principals":
					dst = &parsed.principals
				case objectKey:
					dst = &parsed.objects
				default:
					return nil, fmt.Errorf("ACLs: %s[%d]: unknown field %q (want principals and %s)", key, i, field, objectKey)
				}
				if err := json.Unmarshal(ev, dst); err != nil {
					return nil, fmt.Errorf("ACLs: %s[%d].%s: %w", key, i, field, err)
				}
			}
			for _, need := range []string{"principals", objectKey} {
				if _, ok := r[need]; !ok {
					return nil, fmt.Errorf("ACLs: %s[%d]: %s is required", key, i, need)
				}
			}
			if err := validate(action, parsed.objects); err != nil {
				return nil, fmt.Errorf("ACLs: %s[%d].%s: %w", key, i, objectKey, err)
			}
			if objectKey == "roles" {
				a.rules[action] = append(a.rules[action], splitRecursive(parsed)...)
				continue
			}
			a.rules[action] = append(a.rules[action], parsed)
		}
	}
	return a, nil
}

func validate(action Action, objects entity) error {
	if objects.kind != some {
		return nil
	}
	if anyOrNone[action] {
		return errors.New("must be ANY or NONE")
	}
	if action == GetEndpoint {
		for _, p := range objects.values {
			if !slices.Contains(authorizableEndpoints, p) {
				return fmt.Errorf("%q is not an authorizable path (%s)", p, strings.Join(authorizableEndpoints, ", "))
			}
		}
	}
	return nil
}

// splitRecursive gives each "parent/%" role of r a rule of its own, before
// the rule for the rest, as Mesos does: the order of the decisions stays.
func splitRecursive(r rule) []rule {
	if r.objects.kind != some {
		return []rule{r}
	}
	var out []rule
	var rest []string
	for _, v := range r.objects.values {
		if strings.HasSuffix(v, "/%") {
			out = append(out, rule{principals: r.principals, objects: entity{kind: some, values: []string{v}}, recursive: true})
		} else {
			rest = append(rest, v)
		}
	}
	if len(rest) > 0 {
		out = append(out, rule{principals: r.principals, objects: entity{kind: some, values: rest}})
	}
	return out
}

// Load reads --acls: inline JSON, or the path of a file holding it
// (optionally file://path), as Mesos takes it. "" is nil: no ACLs.
func Load(flag string) (*ACLs, error) {
	if flag == "" {
		return nil, nil
	}
	b := []byte(flag)
	if s := strings.TrimSpace(flag); !strings.HasPrefix(s, "{") {
		var err error
		if b, err = os.ReadFile(strings.TrimPrefix(s, "file://")); err != nil {
			return nil, fmt.Errorf("--acls: %w", err)
		}
	}
	a, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("--acls: %w", err)
	}
	return a, nil
}

// Allowed says whether principal ("": none) may do action to object.
func (a *ACLs) Allowed(action Action, principal, object string) bool {
	return a.allowed(action, principal, entity{kind: some, values: []string{object}})
}

// AllowedAny is Allowed for a request that names no object (view_flags,
// a check made before the objects are known).
func (a *ACLs) AllowedAny(action Action, principal string) bool {
	return a.allowed(action, principal, entity{kind: anyValue})
}

func (a *ACLs) allowed(action Action, principal string, object entity) bool {
	if a == nil {
		return true
	}
	subject := entity{kind: anyValue}
	if principal != "" {
		subject = entity{kind: some, values: []string{principal}}
	}
	for _, r := range a.rules[action] {
		if r.recursive {
			// A role below the rule's parent matches as if the rule
			// named ANY role; other roles pass the rule by.
			parent := strings.TrimSuffix(r.objects.values[0], "%")
			if object.kind == some && strings.HasPrefix(object.values[0], parent) && r.principals.matches(subject) {
				return r.principals.allows(subject)
			}
			continue
		}
		if r.principals.matches(subject) && r.objects.matches(object) {
			return r.principals.allows(subject) && r.objects.allows(object)
		}
	}
	return a.permissive
}

// Unenforced lists the actions the ACLs have rules for that Corral does
// not check (it has no such operation yet), for a warning at start.
func (a *ACLs) Unenforced() []string {
	if a == nil {
		return nil
	}
	var out []string
	for action := range a.rules {
		if !Enforced(action) {
			out = append(out, string(action))
		}
	}
	sort.Strings(out)
	return out
}
