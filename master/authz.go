package master

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/corral/corral/api/auth"
	"github.com/corral/corral/api/authz"
	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/v1/mesos"
)

// frameworkRoles are the roles a FrameworkInfo subscribes with: roles for
// a MULTI_ROLE framework, else role.
func frameworkRoles(info *mesos.FrameworkInfo) []string {
	for _, c := range info.GetCapabilities() {
		if c.GetType() == mesos.FrameworkInfo_Capability_MULTI_ROLE {
			return info.GetRoles()
		}
	}
	return []string{info.GetRole()}
}

// authorizeRoles is register_frameworks: the framework's principal may
// subscribe with each of its roles.
func (m *Master) authorizeRoles(info *mesos.FrameworkInfo) error {
	if m.cfg.ACLs == nil {
		return nil
	}
	roles := frameworkRoles(info)
	if len(roles) == 0 && !m.cfg.ACLs.AllowedAny(authz.RegisterFramework, info.GetPrincipal()) {
		// No role to judge: as Mesos, the request for any role decides.
		return fmt.Errorf("%w to register framework with principal '%s' without roles", errNotAuthorized, info.GetPrincipal())
	}
	for _, role := range roles {
		if !m.cfg.ACLs.Allowed(authz.RegisterFramework, info.GetPrincipal(), role) {
			return fmt.Errorf("%w to register framework with principal '%s' for role '%s'", errNotAuthorized, info.GetPrincipal(), role)
		}
	}
	return nil
}

// errNotAuthorized is what a call the ACLs refuse wraps: 403, as Mesos.
var errNotAuthorized = errors.New("Not authorized")

// commandUser is the user a command runs as: its own, else the
// framework's (the agent's choice, with --switch_user).
func commandUser(fw *mesos.FrameworkInfo, c *mesos.CommandInfo) string {
	if u := c.GetUser(); u != "" {
		return u
	}
	return fw.GetUser()
}

// runUsers are the users launching ti runs something as: its command's,
// or its executor's (ex: the task's own executor or its group's), and
// both for a task of a group, whose command runs beside the executor.
func runUsers(fw *mesos.FrameworkInfo, ti *mesos.TaskInfo, ex *mesos.ExecutorInfo) []string {
	var users []string
	if ex != nil {
		users = append(users, commandUser(fw, ex.GetCommand()))
	}
	if ti.Command != nil {
		if u := commandUser(fw, ti.GetCommand()); len(users) == 0 || u != users[0] {
			users = append(users, u)
		}
	}
	if len(users) == 0 {
		users = append(users, fw.GetUser())
	}
	return users
}

// authorizeTask is run_tasks: the framework's principal may run what
// launching ti runs, as the users it runs as.
func (m *Master) authorizeTask(fw *framework, ti *mesos.TaskInfo, ex *mesos.ExecutorInfo) error {
	if m.cfg.ACLs == nil {
		return nil // nothing to judge on the launch path
	}
	for _, u := range runUsers(fw.info, ti, ex) {
		if !m.cfg.ACLs.Allowed(authz.RunTask, fw.info.GetPrincipal(), u) {
			return fmt.Errorf("Task '%s' is not authorized to launch as user '%s' (principal '%s')", ti.GetTaskId().GetValue(), u, fw.info.GetPrincipal())
		}
	}
	return nil
}

// viewer judges what a reader of the master's state may see (--acls).
type viewer struct{ authz.Viewer }

func (m *Master) viewerOf(r *http.Request) viewer { return viewer{m.cfg.ACLs.ViewerOf(r)} }

func (v viewer) framework(fw *framework) bool { return v.Sees(authz.ViewFramework, fw.info.GetUser()) }

// task judges a task by the user it runs as: its command's, else its
// executor's, else its framework's, as Mesos' view_tasks does.
func (v viewer) task(t *task) bool {
	user := t.info.GetCommand().GetUser()
	if user == "" {
		user = commandUser(t.fw.info, t.info.GetExecutor().GetCommand())
	}
	return v.Sees(authz.ViewTask, user)
}

func (v viewer) executor(e *executor) bool {
	return v.Sees(authz.ViewExecutor, commandUser(e.fw.info, e.info.GetCommand()))
}

// serveTeardown is Mesos' /teardown: an operator removes a framework
// (POST, frameworkId=ID in the form body) when teardown_frameworks lets
// its principal remove frameworks of the framework's principal.
func (m *Master) serveTeardown(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httpapi.Error(w, http.StatusMethodNotAllowed, "Expecting 'POST', received '%s'", r.Method)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, "Reading the request body: %v", err)
		return
	}
	values, err := url.ParseQuery(string(body))
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, "Unable to decode query string: %v", err)
		return
	}
	if !values.Has("frameworkId") {
		httpapi.Error(w, http.StatusBadRequest, "Missing 'frameworkId' query parameter in the request body")
		return
	}
	principal := auth.PrincipalOf(r)
	m.mu.Lock()
	defer m.mu.Unlock()
	fw := m.frameworks[values.Get("frameworkId")]
	if fw == nil {
		httpapi.Error(w, http.StatusBadRequest, "No framework found with specified ID")
		return
	}
	allowed := m.cfg.ACLs.AllowedAny(authz.TeardownFramework, principal)
	if fw.info.Principal != nil {
		allowed = m.cfg.ACLs.Allowed(authz.TeardownFramework, principal, fw.info.GetPrincipal())
	}
	if !allowed {
		m.log.Warn("teardown refused by --acls", "framework", fw.id, "principal", principal)
		httpapi.Error(w, http.StatusForbidden, "Not authorized to teardown framework %s", fw.id)
		return
	}
	m.log.Info("operator tears down framework", "framework", fw.id, "principal", principal)
	if fw.stream != nil {
		fw.stream.Send(errorEvent("Framework removed"))
	}
	m.teardown(fw)
	m.requestAllocation()
	w.WriteHeader(http.StatusOK)
}

// exposure says, when the master listens beyond loopback without
// authenticating frameworks or agents, who can then act as one ("" when
// it does not, or authenticates both).
func (m *Master) exposure() string {
	host, _, _ := net.SplitHostPort(m.cfg.Address)
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return ""
	}
	var open []string
	if m.cfg.FrameworkCredentials == nil {
		open = append(open, "act as any framework (--authenticate_http_frameworks)")
	}
	// A CA on the agent link authenticates agents by certificate.
	if m.cfg.AgentCredentials == nil && (m.cfg.TLS == nil || m.cfg.TLS.ClientCAs == nil) {
		open = append(open, "act as any agent (--authenticate_agents)")
	}
	if m.cfg.ReadwriteCredentials == nil {
		open = append(open, "tear down any framework (--authenticate_http_readwrite)")
	}
	if len(open) == 0 {
		return ""
	}
	return "unauthenticated: anyone who reaches this master can " + strings.Join(open, ", ")
}
