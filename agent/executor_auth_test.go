package agent

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/corral/corral/api/auth"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/ids"
)

// The attack of issue 14: a POST to the agent's executor API with a custom
// executor's IDs got 202, and its framework received a forged
// TASK_FINISHED while the task still ran. With executor authentication
// only the executor's own token speaks for it: no token, a token signed
// with another key or one with another algorithm is 401; another
// executor's valid token is 403.
func TestExecutorAuthentication(t *testing.T) {
	ta := newTestAgent(t, false)
	key := []byte("the agent's key")
	ta.cfg.executorKey = key
	ta.runTasks(fakeFramework(false), fakeHTTPExecutor("ex-1", 16), []*mesos.TaskInfo{fakeTask("t1", "", 32)}, false)
	ta.runTasks(fakeFramework(false), fakeHTTPExecutor("ex-2", 16), []*mesos.TaskInfo{fakeTask("t2", "", 32)}, false)
	tokens := map[string]string{}
	for range 2 {
		c := ta.cz.get(ta.launched(t))
		for _, kv := range c.cfg.Env {
			if v, ok := strings.CutPrefix(kv, executorTokenEnv+"="); ok {
				tokens[c.cfg.ID] = v
			}
		}
	}
	ta.Agent.mu.Lock()
	ex1 := ta.executorLocked("fw-1", "ex-1")
	ex2 := ta.executorLocked("fw-1", "ex-2")
	ta.Agent.mu.Unlock()
	own, others := tokens[ex1.containerID], tokens[ex2.containerID]
	if own == "" || others == "" {
		t.Fatalf("executors launched without %s: %v", executorTokenEnv, tokens)
	}
	otherKey, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, executorClaims{Framework: "fw-1", Executor: "ex-1", Container: ex1.containerID}).SignedString([]byte("another key"))
	unsigned, _ := jwt.NewWithClaims(jwt.SigningMethodNone, executorClaims{Framework: "fw-1", Executor: "ex-1", Container: ex1.containerID}).SignedString(jwt.UnsafeAllowNoneSignatureType)

	forged := updateCall("fw-1", "ex-1", "t1", mesos.TaskState_TASK_FINISHED, mesos.TaskStatus_SOURCE_EXECUTOR, ids.UUID())
	for _, c := range []struct {
		name, token string
		code        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"another key", otherKey, http.StatusUnauthorized},
		{"alg none", unsigned, http.StatusUnauthorized},
		{"garbage", "not-a-jwt", http.StatusUnauthorized},
		{"another executor's token", others, http.StatusForbidden},
	} {
		if code, msg := ta.executorCallAs(t, forged, c.token); code != c.code {
			t.Errorf("forged TASK_FINISHED with %s: %d %s, want %d", c.name, code, msg, c.code)
		}
	}
	select {
	case u := <-ta.updates:
		t.Fatalf("a forged update reached the master: %v", u.GetStatus())
	default:
	}

	// The executor itself, with its token, reports.
	running := updateCall("fw-1", "ex-1", "t1", mesos.TaskState_TASK_RUNNING, mesos.TaskStatus_SOURCE_EXECUTOR, ids.UUID())
	if code, msg := ta.executorCallAs(t, running, own); code != http.StatusAccepted {
		t.Fatalf("the executor's own update: %d %s", code, msg)
	}
	ta.expect(t, "t1", mesos.TaskState_TASK_RUNNING, fromExecutor)
}

// With --authenticate_http_readonly the agent's endpoints that show the
// node (and the sandboxes through /files) want credentials; /health and
// /version do not.
func TestReadonlyEndpointsAuthenticate(t *testing.T) {
	ta := newTestAgent(t, false)
	ta.cfg.readonlyCredentials = auth.Credentials{"ops": "pw"}
	h := ta.Handler()
	get := func(path string, header http.Header) (int, string) {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		for k, v := range header {
			r.Header[k] = v
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code, w.Header().Get("WWW-Authenticate")
	}
	for _, p := range []string{"/state", "/slave(1)/state.json", "/flags", "/metrics/snapshot", "/monitor/statistics", "/containers", "/files/browse?path=/", "/files/read?path=/x&offset=0"} {
		if code, realm := get(p, nil); code != http.StatusUnauthorized || realm != `Basic realm="mesos-agent-readonly"` {
			t.Errorf("GET %s without credentials: %d %q, want 401 in mesos-agent-readonly", p, code, realm)
		}
		if code, _ := get(p, auth.BasicHeader("ops", "pw")); code == http.StatusUnauthorized {
			t.Errorf("GET %s with credentials: 401", p)
		}
	}
	for _, p := range []string{"/health", "/version"} {
		if code, _ := get(p, nil); code != http.StatusOK {
			t.Errorf("GET %s without credentials: %d, want 200", p, code)
		}
	}
}
