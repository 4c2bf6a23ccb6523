package master_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/corral/corral/agent"
	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/api/v1/scheduler"
	"github.com/corral/corral/internal/testsupport"

	// The agent's launcher registers itself by name.
	_ "github.com/corral/corral/launcher/posix"
)

// The master's tests run on mastertest.FakeAgent; the ones here need the
// real agent (posix launcher, built binaries), because what they check
// happens on the node: a task's processes end when its framework is torn
// down.

// testAgent is a real agent (posix launcher) registered with the master.
type testAgent struct {
	a        *agent.Agent
	endpoint string
}

func startAgent(t *testing.T, tm *testMaster) *testAgent {
	t.Helper()
	a, err := agent.New(agent.Config{
		Master:               tm.addr,
		WorkDir:              t.TempDir(),
		IP:                   "127.0.0.1",
		Port:                 0,
		Resources:            agentResources,
		Launcher:             "posix",
		LauncherDir:          testsupport.BinDir(t),
		StatusUpdateRetryMin: 200 * time.Millisecond,
		StatusUpdateRetryMax: time.Second,
		Log:                  quietLog(),
	})
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Errorf("agent did not stop within 15s")
		}
	})
	return &testAgent{a: a, endpoint: a.Endpoint()}
}

// setupRealAgent starts a master and a real agent, with a leak check for
// prefix.
func setupRealAgent(t *testing.T) (*testMaster, *testAgent, string) {
	t.Helper()
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix) // runs after the agent is stopped
	tm := startMaster(t)
	ta := startAgent(t, tm)
	return tm, ta, prefix
}

// processWithEnv reports whether a process carrying s in its environment
// is alive.
func processWithEnv(s string) bool {
	for _, l := range testsupport.Leaks(s) {
		if strings.HasPrefix(l, "process") {
			return true
		}
	}
	return false
}

// TestTeardown: the real agent matters for the processes: they must end.
func TestTeardown(t *testing.T) {
	tm, _, prefix := setupRealAgent(t)
	s := subscribe(t, tm, codec.JSON)
	o := s.offer(offerWait)
	id := prefix + "victim"
	s.launch(o, task(prefix, "victim", o, "cpus:1;mem:64", "sleep 60"))
	s.update(id, 10*time.Second, mesos.TaskState_TASK_RUNNING)
	if !processWithEnv(prefix) {
		t.Fatal("the running task's process is not found by its prefix: the leak check would be blind")
	}

	s.mustCall(&scheduler.Call{Type: scheduler.Call_TEARDOWN.Enum()})

	// The event stream ends.
	deadline := time.After(5 * time.Second)
	for ended := false; !ended; {
		select {
		case _, ok := <-s.events:
			ended = !ok
		case <-deadline:
			t.Fatal("event stream still open 5s after TEARDOWN")
		}
	}
	if !errors.Is(s.endErr, io.EOF) && !errors.Is(s.endErr, io.ErrUnexpectedEOF) {
		t.Errorf("stream ended with %v, want EOF", s.endErr)
	}

	// Calls on the old stream are refused now: the framework is gone, which
	// Mesos answers 400 "Framework cannot be found".
	if err := s.call(&scheduler.Call{Type: scheduler.Call_REVIVE.Enum()}); statusCode(err) != http.StatusBadRequest {
		t.Errorf("call after TEARDOWN: %v, want 400", err)
	}

	// The task's processes are gone (killed on the agent).
	testsupport.Eventually(t, "the task's processes to end", 10*time.Second, func() bool { return !processWithEnv(prefix) })

	st := getState(t, tm)
	if len(st.Frameworks) != 0 {
		t.Errorf("/state frameworks = %d after TEARDOWN, want 0", len(st.Frameworks))
	}
	if len(st.CompletedFrameworks) != 1 || st.CompletedFrameworks[0].ID != s.id {
		t.Errorf("/state completed_frameworks = %v, want %s", st.CompletedFrameworks, s.id)
	}
	if u := st.Slaves[0].UsedResources["cpus"]; u != 0.0 {
		t.Errorf("agent used cpus %v after TEARDOWN, want 0", u)
	}
	// A new framework gets the whole agent.
	s2 := subscribe(t, tm, codec.JSON)
	o2 := s2.offer(offerWait)
	if c := scalar(o2.GetResources(), "cpus"); c != 2 {
		t.Errorf("offer after TEARDOWN: cpus %v, want 2", c)
	}
}
