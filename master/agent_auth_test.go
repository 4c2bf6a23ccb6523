package master_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/auth"
	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/master"
	"github.com/corral/corral/master/mastertest"
)

// With --authenticate_agents an agent authenticates on the agent link, and
// an agent ID is its registering principal's: another principal cannot
// subscribe as it (which, unauthenticated, would cut the real agent off
// and have its tasks reconciled away).
func TestAgentAuthentication(t *testing.T) {
	tm := startMasterWith(t, func(c *master.Config) {
		c.AgentCredentials = auth.Credentials{"agent-a": "sa", "agent-b": "sb"}
	})
	res, err := resources.ParseList(agentResources)
	if err != nil {
		t.Fatal(err)
	}
	subscribeAs := func(h http.Header, id string) (int, string) {
		call := &cluster.Call{Type: cluster.Call_SUBSCRIBE.Enum(), Subscribe: &cluster.Call_Subscribe{
			AgentInfo: &mesos.AgentInfo{Hostname: proto.String("intruder"), Resources: res},
			Endpoint:  &mesos.URL{Scheme: proto.String("http"), Address: &mesos.Address{Ip: proto.String("127.0.0.1"), Port: proto.Int32(1)}},
		}}
		if id != "" {
			call.AgentId = &mesos.AgentID{Value: proto.String(id)}
		}
		body, _ := proto.Marshal(call)
		header := map[string]string{"Content-Type": "application/x-protobuf", "Accept": "application/x-protobuf"}
		for k := range h {
			header[k] = h.Get(k)
		}
		return rawPost(t, tm.url("/internal/v1/agent"), header, body)
	}
	if code, _ := subscribeAs(nil, ""); code != http.StatusUnauthorized {
		t.Fatalf("agent SUBSCRIBE without credentials: %d, want 401", code)
	}
	if code, _ := subscribeAs(auth.BasicHeader("agent-a", "sb"), ""); code != http.StatusUnauthorized {
		t.Fatalf("agent SUBSCRIBE with a wrong secret: %d, want 401", code)
	}
	fa := mastertest.ConnectAgent(t, tm.addr, mastertest.AgentOptions{Resources: agentResources, Header: auth.BasicHeader("agent-a", "sa")})
	code, msg := subscribeAs(auth.BasicHeader("agent-b", "sb"), fa.ID)
	if code != http.StatusForbidden || !strings.Contains(msg, "registered by another principal") {
		t.Fatalf("SUBSCRIBE as agent %s by another principal: %d %q, want 403", fa.ID, code, msg)
	}
	time.Sleep(200 * time.Millisecond)
	slaves, _ := getMap(t, tm, "/master/state")["slaves"].([]any)
	if len(slaves) != 1 || slaves[0].(map[string]any)["active"] != true {
		t.Fatalf("agents after the refused takeover: %v, want the first one still active", slaves)
	}
	// Its own principal subscribes it again.
	again := mastertest.ConnectAgent(t, tm.addr, mastertest.AgentOptions{ID: fa.ID, Resources: agentResources, Header: auth.BasicHeader("agent-a", "sa")})
	if again.ID != fa.ID {
		t.Fatalf("re-subscription by its principal got ID %s, want %s", again.ID, fa.ID)
	}
}
