package cli

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/corral/corral/internal/testsupport"
)

func itoa(i int) string { return strconv.Itoa(i) }

// corral local --agent_port puts its agent on that port: the master's
// state names it and the agent answers there.
func TestLocalAgentPort(t *testing.T) {
	prefix := rootTest(t)
	port := testsupport.FreePort(t)
	c := startCluster(t, prefix, clusterOpts{extra: []string{"--agent_port", itoa(port)}})
	var st struct {
		Slaves []struct {
			PID string `json:"pid"`
		} `json:"slaves"`
	}
	if err := testsupport.GetJSON("http://"+c.master+"/state", &st); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", itoa(port))
	if len(st.Slaves) != 1 || !strings.HasSuffix(st.Slaves[0].PID, "@"+addr) {
		t.Fatalf("master's slaves %+v, want one at %s", st.Slaves, addr)
	}
	var agent struct {
		ID string `json:"id"`
	}
	if err := testsupport.GetJSON("http://"+addr+"/state", &agent); err != nil || agent.ID == "" {
		t.Fatalf("agent's /state at %s: %v %+v", addr, err, agent)
	}
}
