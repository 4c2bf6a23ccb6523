package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/testsupport"
)

// TestSandboxACLs: with --acls, the agent's and the master's /state show a
// principal only the executors and tasks it may see, and /files serves a sandbox only to whom
// access_sandboxes lets see the sandboxes of the user its executor runs
// as; a path above the executors only to whom may see them all; and a
// symbolic link a task plants in a sandbox it may read does not lead into
// another's.
func TestSandboxACLs(t *testing.T) {
	prefix := rootTest(t)
	dir := t.TempDir()
	creds := filepath.Join(dir, "http-credentials")
	if err := os.WriteFile(creds, []byte(`{"credentials":[{"principal":"ops","secret":"o"},{"principal":"alice","secret":"a"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	// ops sees everything, alice only what runs as nobody, no one else
	// anything.
	rules := `[
	  {"principals": {"values": ["ops"]}, "users": {"type": "ANY"}},
	  {"principals": {"values": ["alice"]}, "users": {"values": ["nobody"]}},
	  {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}
	]`
	acls := `{"access_sandboxes": ` + rules + `, "view_executors": ` + rules + `, "view_tasks": ` + rules + `,
	  "get_endpoints": [{"principals": {"values": ["ops"]}, "paths": {"type": "ANY"}}, {"principals": {"type": "ANY"}, "paths": {"type": "NONE"}}]}`
	ops, alice := testsupport.AsPrincipal("ops", "o"), testsupport.AsPrincipal("alice", "a")
	c := launchCluster(t, prefix, "http", ops,
		[]string{"--authenticate_http_readonly", "--http_credentials", creds, "--acls", acls})
	// The test's temporary folders are 0700: nobody must reach its sandbox.
	for d := filepath.Dir(c.workDir); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	// A task as root keeps a secret; one as nobody plants a link to it.
	root := newFramework(t, c, "acl-root", codec.JSON)
	secret, planter := prefix+"secret", prefix+"planter"
	root.launch(commandTask(t, secret, "echo root-secret-"+prefix+" > secret"))
	root.awaitTerminal(t, secret)
	rootBox := c.sandbox(t, secret)
	link := fmt.Sprintf("ln -s ../../../%s/runs/latest/secret leak && echo planted", secret)
	plant := commandTask(t, planter, link)
	plant.Command.User = proto.String("nobody")
	root.launch(plant)
	if h := root.awaitTerminal(t, planter)[planter]; h.last.GetState() != mesos.TaskState_TASK_FINISHED {
		t.Fatalf("the planting task went %v %q", h, h.last.GetMessage())
	}
	nobodyBox := c.sandbox(t, planter)

	agentAddr := c.agentAddr(t)
	files := "http://" + agentAddr + "/files/read?"
	get := func(hc *http.Client, url string) string {
		code, body := testsupport.Get(t, hc, url)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", url, code, body)
		}
		return body
	}
	for _, where := range []string{"http://" + agentAddr + "/state", c.url("/state"), c.url("/tasks")} {
		if body := get(ops, where); !strings.Contains(body, `"`+secret+`"`) || !strings.Contains(body, `"`+planter+`"`) {
			t.Errorf("%s as ops lacks a task", where)
		}
		if body := get(alice, where); strings.Contains(body, `"`+secret+`"`) || !strings.Contains(body, `"`+planter+`"`) {
			t.Errorf("%s as alice: want nobody's task and not root's", where)
		}
	}
	// get_endpoints: ops alone gets the agent's containers and statistics.
	for _, path := range []string{"/containers", "/slave(1)/monitor/statistics.json"} {
		get(ops, "http://"+agentAddr+path)
		if code, _ := testsupport.Get(t, alice, "http://"+agentAddr+path); code != http.StatusForbidden {
			t.Errorf("GET %s as alice: %d, want 403", path, code)
		}
	}
	aboveExecutors := filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(rootBox))))
	for _, tc := range []struct {
		name   string
		client *http.Client
		path   string
		code   int
		says   string
	}{
		{"ops reads root's sandbox", ops, rootBox + "/secret", http.StatusOK, "root-secret-" + prefix},
		{"alice reads nobody's sandbox", alice, nobodyBox + "/stdout", http.StatusOK, "planted"},
		{"alice reads root's sandbox", alice, rootBox + "/secret", http.StatusForbidden, "Not authorized to access the sandbox"},
		{"alice through the planted link", alice, nobodyBox + "/leak", http.StatusForbidden, "leads out of the sandboxes"},
		{"alice above the executors", alice, aboveExecutors, http.StatusForbidden, "only the sandboxes of single executors"},
		{"ops above the executors", ops, aboveExecutors, http.StatusBadRequest, "directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := testsupport.Get(t, tc.client, files+url.Values{"path": {tc.path}, "offset": {"0"}}.Encode())
			if code != tc.code || !strings.Contains(body, tc.says) {
				t.Errorf("GET /files/read %s: %d %q, want %d with %q", tc.path, code, body, tc.code, tc.says)
			}
		})
	}
}
