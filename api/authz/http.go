package authz

import (
	"net/http"
	"strings"

	"github.com/corral/corral/api/auth"
)

// Endpoint serves h to whom get_endpoints lets get the endpoint, by its
// path as Mesos names it: without the process prefix (/master, /slave(1))
// and the .json alias, so one rule covers every spelling. The principal is
// the one auth.Require found.
func (a *ACLs) Endpoint(h http.HandlerFunc) http.HandlerFunc {
	if a == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.Allowed(GetEndpoint, auth.PrincipalOf(r), EndpointPath(r.URL.Path)) {
			http.Error(w, "Not authorized to GET "+EndpointPath(r.URL.Path), http.StatusForbidden)
			return
		}
		h(w, r)
	}
}

// EndpointPath is path without a process prefix and a .json suffix.
func EndpointPath(path string) string {
	for _, prefix := range []string{"/master/", "/slave(1)/"} {
		if strings.HasPrefix(path, prefix) {
			path = path[len(prefix)-1:]
		}
	}
	return strings.TrimSuffix(path, ".json")
}

// Viewer is who reads a server's state: the principal the request
// authenticated as (auth.Require; none without authentication), judged
// by the view_* actions. What it may not see is left out, as Mesos
// filters /state.
type Viewer struct {
	acls      *ACLs
	principal string
}

// ViewerOf is the viewer of r under a.
func (a *ACLs) ViewerOf(r *http.Request) Viewer {
	return Viewer{acls: a, principal: auth.PrincipalOf(r)}
}

// Sees says whether the viewer may see, under action, what runs as user.
func (v Viewer) Sees(action Action, user string) bool {
	return v.acls.Allowed(action, v.principal, user)
}

// SeesAll says whether the viewer may see, under action, what runs as any
// user.
func (v Viewer) SeesAll(action Action) bool { return v.acls.AllowedAny(action, v.principal) }

// Flags says whether the viewer may see the flags (view_flags).
func (v Viewer) Flags() bool { return v.acls.AllowedAny(ViewFlags, v.principal) }
