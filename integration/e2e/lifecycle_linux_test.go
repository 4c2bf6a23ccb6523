package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/codec"
	executorapi "github.com/corral/corral/api/v1/executor"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/ids"
	"github.com/corral/corral/internal/testsupport"
)

// stagingRuns is how many rounds TestTasksForExitingExecutors runs:
// CORRAL_STAGING_RUNS, else 20 (3 in the VM tier, where each takes 7-30
// times as long and the race is a host-speed matter).
func stagingRuns(tb testing.TB) int {
	if v := os.Getenv("CORRAL_STAGING_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			tb.Fatalf("CORRAL_STAGING_RUNS=%q is not a positive number", v)
		}
		return n
	}
	if os.Getenv("CORRAL_VM") != "" {
		return 3
	}
	return 20
}

// exitingExecutor is a custom executor that never subscribes and exits on
// its own, as the seed's sample framework's `executor.command` does.
func exitingExecutor(tb testing.TB, id, command string) *mesos.ExecutorInfo {
	return &mesos.ExecutorInfo{
		ExecutorId: &mesos.ExecutorID{Value: proto.String(id)},
		Type:       mesos.ExecutorInfo_CUSTOM.Enum(),
		Command:    &mesos.CommandInfo{Value: proto.String(command), Shell: proto.Bool(true)},
		Resources:  mustResources(tb, "cpus:0.01;mem:4"),
	}
}

// TestTasksForExitingExecutors: tasks stream in for five custom executors
// that exit without subscribing, so tasks keep arriving while an executor
// is ending (its end reported, not yet gone). Every task gets a terminal
// update from the agent: failed with its executor, or TASK_DROPPED
// (TASK_LOST for a framework that is not partition-aware) when it came for
// an executor already terminating. None is left in STAGING.
func TestTasksForExitingExecutors(t *testing.T) {
	prefix := rootTest(t)
	n := startNode(t, prefix, "linux")
	runs, perRun := stagingRuns(t), 250
	outcomes := map[string]int{}
	for run := 0; run < runs; run++ {
		// Every other run partition-aware: its dropped tasks are
		// TASK_DROPPED, the others' TASK_LOST.
		partitionAware := run%2 == 1
		dropped := mesos.TaskState_TASK_LOST
		if partitionAware {
			dropped = mesos.TaskState_TASK_DROPPED
		}
		f := ckptFramework(t, n.master, fmt.Sprintf("exiting-executors-%d", run), false, partitionAware)
		var executors []*mesos.ExecutorInfo
		for i := 0; i < 5; i++ {
			// Half exit at once, half after a moment: both ends of the
			// window in which tasks can arrive for an ending executor.
			cmd := "exit 0"
			if i%2 == 1 {
				cmd = "sleep 0.2"
			}
			executors = append(executors, exitingExecutor(t, fmt.Sprintf("r%d-ex%d", run, i), cmd))
		}
		var all []string
		for i := 0; i < perRun; i++ {
			id := fmt.Sprintf("r%d-t%d", run, i)
			all = append(all, id)
			f.launch(&mesos.TaskInfo{
				Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)},
				Resources: mustResources(t, "cpus:0.01;mem:1"), Executor: executors[i%5],
			})
			if i%10 == 9 {
				time.Sleep(5 * time.Millisecond) // a stream of launches, not one ACCEPT
			}
		}
		ended := f.awaitTerminal(t, all...)
		for _, id := range all {
			s := ended[id].last
			outcomes[s.GetState().String()+" "+s.GetReason().String()]++
			ok := s.GetSource() == mesos.TaskStatus_SOURCE_AGENT && s.GetMessage() != "" &&
				((s.GetState() == mesos.TaskState_TASK_FAILED && s.GetReason() == mesos.TaskStatus_REASON_EXECUTOR_TERMINATED) ||
					(s.GetState() == dropped && s.GetReason() == mesos.TaskStatus_REASON_EXECUTOR_TERMINATED))
			if !ok {
				t.Errorf("%s: %s (%v from %v, %q); want TASK_FAILED or %v with REASON_EXECUTOR_TERMINATED from the agent",
					id, historyOf(ended, id), s.GetReason(), s.GetSource(), s.GetMessage(), dropped)
			}
		}
		f.stop()
		if t.Failed() {
			break
		}
	}
	t.Logf("%d runs of %d tasks on exiting executors: %v", runs, perRun, outcomes)
}

// TestAgentMadeUpdates: what the agent concludes itself comes from
// SOURCE_AGENT, what a builtin executor reports of its task from
// SOURCE_EXECUTOR; an executor killed for not subscribing ends its task
// with REASON_EXECUTOR_REGISTRATION_TIMEOUT and Mesos' message, and the
// scheduler gets a FAILURE event for it.
func TestAgentMadeUpdates(t *testing.T) {
	prefix := rootTest(t)
	n := startNode(t, prefix, "linux", "--executor_registration_timeout", "1s")
	f := ckptFramework(t, n.master, "agent-made", false, false)

	f.launch(commandTask(t, "exits-1", "exit 1"))
	f.launch(&mesos.TaskInfo{
		Name: proto.String("silent"), TaskId: &mesos.TaskID{Value: proto.String("silent")},
		Resources: mustResources(t, "cpus:0.01;mem:1"), Executor: exitingExecutor(t, "never-subscribes", "exec sleep 1000"),
	})
	ended := f.awaitTerminal(t, "exits-1", "silent")

	if h := ended["exits-1"]; h.last.GetState() != mesos.TaskState_TASK_FAILED || h.last.GetSource() != mesos.TaskStatus_SOURCE_EXECUTOR {
		t.Errorf("exits-1: %v, last from %v; want TASK_FAILED from the (command) executor", h, h.last.GetSource())
	}
	s := ended["silent"].last
	if s.GetState() != mesos.TaskState_TASK_FAILED || s.GetReason() != mesos.TaskStatus_REASON_EXECUTOR_REGISTRATION_TIMEOUT ||
		s.GetSource() != mesos.TaskStatus_SOURCE_AGENT || s.GetMessage() != "Executor did not register within 1secs" {
		t.Errorf("silent: %v %v from %v, %q; want TASK_FAILED REASON_EXECUTOR_REGISTRATION_TIMEOUT from the agent, \"Executor did not register within 1secs\"",
			s.GetState(), s.GetReason(), s.GetSource(), s.GetMessage())
	}
	select {
	case fl := <-f.failures:
		if fl.executorID != "never-subscribes" || fl.agentID == "" {
			t.Errorf("FAILURE for executor %q on agent %q, want never-subscribes", fl.executorID, fl.agentID)
		}
	case <-time.After(taskTimeout):
		t.Error("no FAILURE event for the executor killed for not subscribing")
	}
}

// TestExecutorCannotForgeSource: an executor's update must come from
// SOURCE_EXECUTOR and name no other executor; the agent answers anything
// else with 400, as Mesos' executor API validation does, and the task's
// state is untouched. The test subscribes as the executor itself.
func TestExecutorCannotForgeSource(t *testing.T) {
	prefix := rootTest(t)
	n := startNode(t, prefix, "linux")
	f := ckptFramework(t, n.master, "forged-source", false, false)
	f.launch(&mesos.TaskInfo{
		Name: proto.String("held"), TaskId: &mesos.TaskID{Value: proto.String("held")},
		Resources: mustResources(t, "cpus:0.01;mem:1"), Executor: exitingExecutor(t, "impostor", "exec sleep 1000"),
	})
	var fwID string
	testsupport.Eventually(t, "the executor to be launched", taskTimeout, func() bool {
		_, fwID, _ = n.executorOf(t, "impostor")
		return fwID != ""
	})
	endpoint := "http://127.0.0.1:" + strconv.Itoa(n.agentPort) + "/api/v1/executor"
	call := func(c *executorapi.Call) (*http.Response, error) {
		c.FrameworkId = &mesos.FrameworkID{Value: proto.String(fwID)}
		c.ExecutorId = &mesos.ExecutorID{Value: proto.String("impostor")}
		body, err := codec.JSON.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, endpoint, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		return http.DefaultClient.Do(req)
	}
	// The stream stays open until the test closes it.
	sub, err := call(&executorapi.Call{Type: executorapi.Call_SUBSCRIBE.Enum(), Subscribe: &executorapi.Call_Subscribe{}})
	if err != nil || sub.StatusCode != http.StatusOK {
		t.Fatalf("SUBSCRIBE as the executor: %v %v", err, sub)
	}
	defer sub.Body.Close()

	update := func(src *mesos.TaskStatus_Source, exID string) *executorapi.Call {
		s := &mesos.TaskStatus{
			TaskId: &mesos.TaskID{Value: proto.String("held")}, State: mesos.TaskState_TASK_RUNNING.Enum(),
			Source: src, Uuid: ids.UUID(),
		}
		if exID != "" {
			s.ExecutorId = &mesos.ExecutorID{Value: proto.String(exID)}
		}
		return &executorapi.Call{Type: executorapi.Call_UPDATE.Enum(), Update: &executorapi.Call_Update{Status: s}}
	}
	for _, tc := range []struct {
		name string
		call *executorapi.Call
		want int
		why  string
	}{
		{"master source", update(mesos.TaskStatus_SOURCE_MASTER.Enum(), ""), http.StatusBadRequest, "SOURCE_EXECUTOR"},
		{"agent source", update(mesos.TaskStatus_SOURCE_AGENT.Enum(), ""), http.StatusBadRequest, "SOURCE_EXECUTOR"},
		{"no source", update(nil, ""), http.StatusBadRequest, "SOURCE_EXECUTOR"},
		{"another executor", update(mesos.TaskStatus_SOURCE_EXECUTOR.Enum(), "someone-else"), http.StatusBadRequest, "does not match"},
		{"its own", update(mesos.TaskStatus_SOURCE_EXECUTOR.Enum(), "impostor"), http.StatusAccepted, ""},
	} {
		resp, err := call(tc.call)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		msg := new(bytes.Buffer)
		_, _ = msg.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want || !strings.Contains(msg.String(), tc.why) {
			t.Errorf("%s: %d %q, want %d naming %q", tc.name, resp.StatusCode, msg.String(), tc.want, tc.why)
		}
		if tc.want == http.StatusBadRequest {
			if st := n.taskStates(t)["held"]; st != "TASK_STAGING" {
				t.Errorf("%s: the refused update moved the task to %s", tc.name, st)
			}
		}
	}
	got := f.await(t, []string{"held"}, func(s *mesos.TaskStatus) bool { return s.GetState() == mesos.TaskState_TASK_RUNNING })
	if s := got["held"].last; s.GetSource() != mesos.TaskStatus_SOURCE_EXECUTOR {
		t.Errorf("held: RUNNING from %v, want SOURCE_EXECUTOR", s.GetSource())
	}
}

// TestExecutorGrowsWithItsTasks: tasks added to a custom executor right at
// its launch (while its container is being made) and after it all end up
// in its container's limits, with no failed resize along the way: the
// launch takes the tasks known then, later ones resize after it.
func TestExecutorGrowsWithItsTasks(t *testing.T) {
	prefix := rootTest(t)
	n := startNode(t, prefix, "linux", "--isolation", "cgroups/cpu,cgroups/mem")
	f := ckptFramework(t, n.master, "growing-executor", false, false)
	exec := &mesos.ExecutorInfo{
		ExecutorId: &mesos.ExecutorID{Value: proto.String("grows")},
		Type:       mesos.ExecutorInfo_CUSTOM.Enum(),
		Command:    &mesos.CommandInfo{Value: proto.String(testExecutorBin(t)), Shell: proto.Bool(false)},
		Resources:  mustResources(t, "cpus:0.1;mem:64"),
	}
	var ids []string
	for i := 0; i < 10; i++ {
		id := fmt.Sprintf("grow-%d", i)
		ids = append(ids, id)
		// One ACCEPT each, as fast as offers come: the first tasks reach
		// the agent while the executor's container is being launched.
		f.launch(&mesos.TaskInfo{
			Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)},
			Resources: mustResources(t, "cpus:0.1;mem:32"), Executor: exec, Data: []byte("exec sleep 1000"),
		})
	}
	f.await(t, ids, func(s *mesos.TaskStatus) bool { return s.GetState() == mesos.TaskState_TASK_RUNNING })

	_, _, cid := n.executorOf(t, "grows")
	if cid == "" {
		t.Fatal("the executor is not in the agent's /state")
	}
	procs := processesOf(cid)
	if len(procs) == 0 {
		t.Fatalf("container %s has no process", cid)
	}
	pid, _, _ := strings.Cut(procs[0], ":")
	cg, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	// The v1 memory controller's limit where there is one, else v2's.
	var limit string
	for _, line := range strings.Split(string(cg), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		file := ""
		switch {
		case parts[1] == "memory":
			file = "/sys/fs/cgroup/memory" + parts[2] + "/memory.limit_in_bytes"
		case parts[0] == "0" && limit == "":
			file = "/sys/fs/cgroup" + parts[2] + "/memory.max"
		default:
			continue
		}
		if b, err := os.ReadFile(file); err == nil {
			limit = strings.TrimSpace(string(b))
		}
	}
	if want := strconv.Itoa((64 + 10*32) << 20); limit != want {
		t.Errorf("executor container memory limit %s, want %s (the executor's 64 MB and ten tasks' 32 MB)", limit, want)
	}
	if log := n.agent.tail(); strings.Contains(log, "resizing executor container") {
		t.Errorf("the agent failed a resize:\n%s", log)
	}
}

// TestAgentMesosPaths: the agent's endpoints answer where Mesos serves
// them (slave(1)/..., with .json aliases), as tools written for Mesos (its
// CLI, Prometheus exporters) ask for them; /containers lists a running
// task's container, filtered as Mesos filters it.
func TestAgentMesosPaths(t *testing.T) {
	prefix := rootTest(t)
	n := startNode(t, prefix, "posix")
	f := ckptFramework(t, n.master, "mesos-paths", false, false)
	f.launch(commandTask(t, "listed", "exec sleep 1000"))
	f.await(t, []string{"listed"}, func(s *mesos.TaskStatus) bool { return s.GetState() == mesos.TaskState_TASK_RUNNING })
	st, fwID, cid := n.executorOf(t, "listed")
	if cid == "" {
		t.Fatal("the task's executor is not in /state")
	}
	for _, tc := range []struct {
		path  string
		query url.Values
		want  string // in the body
	}{
		{"/slave(1)/state", nil, `"id":"` + st.ID + `"`},
		{"/slave(1)/state.json", nil, `"id":"` + st.ID + `"`},
		{"/state.json", nil, `"id":"` + st.ID + `"`},
		{"/slave(1)/flags", nil, `"flags"`},
		{"/slave(1)/flags.json", nil, `"flags"`},
		{"/slave(1)/health", nil, ""},
		{"/slave(1)/monitor/statistics", nil, `"container_id":"` + cid + `"`},
		{"/monitor/statistics.json", nil, `"container_id":"` + cid + `"`},
		{"/containers", nil, `"status":{"container_id":{"value":"` + cid + `"}}`},
		{"/slave(1)/containers", url.Values{"container_id": {cid}}, `"container_id":"` + cid + `"`},
		{"/containers", url.Values{"container_id": {"no-such-container"}}, `[]`},
		{"/containers", url.Values{"executor_id": {"listed"}, "framework_id": {fwID}}, `"executor_id":"listed"`},
	} {
		code, body := n.get(t, tc.path, tc.query)
		if code != http.StatusOK || !strings.Contains(string(body), tc.want) {
			t.Errorf("GET %s?%s: %d %.300s; want 200 with %s", tc.path, tc.query.Encode(), code, body, tc.want)
		}
	}
}

// executorOf reads the agent's /state: it, and the framework and container
// of the executor exID ("" when the agent has no such executor).
func (n *node) executorOf(tb testing.TB, exID string) (st agentState, fwID, cid string) {
	tb.Helper()
	if err := n.agentJSON("/state", &st); err != nil {
		tb.Fatalf("agent /state: %v", err)
	}
	for _, fw := range st.Frameworks {
		for _, ex := range fw.Executors {
			if ex.ID == exID {
				return st, fw.ID, ex.Container
			}
		}
	}
	return st, "", ""
}
