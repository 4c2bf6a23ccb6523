package agent_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/agent"
	"github.com/corral/corral/agent/agenttest"
	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/container"
	"github.com/corral/corral/driver/scheduler"
	"github.com/corral/corral/internal/testsupport"
	"github.com/corral/corral/master"
	"github.com/corral/corral/master/mastertest"

	// As cmd/corral links them.
	"github.com/corral/corral/isolators/cgroups"
	_ "github.com/corral/corral/isolators/namespaces"
	_ "github.com/corral/corral/launcher/linux"
)

// A real master, a real agent with --launcher=linux
// --isolation=cgroups/cpu,cgroups/mem,namespaces/pid and a framework on the
// scheduler driver: a task over its memory ends TASK_FAILED with
// REASON_CONTAINER_LIMITATION_MEMORY, and a running task's usage, limits
// included, is at /monitor/statistics and in /state.
func TestLinuxLauncherAgent(t *testing.T) {
	testsupport.RequireRoot(t)
	if err := container.LauncherUsable("linux", container.Options{}); err != nil {
		t.Skipf("linux launcher unusable here: %v", err)
	}
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	root := prefix + "root"
	// The work dir carries the prefix, and so do the sandbox paths in
	// every task's environment: the leak check finds stray processes.
	workDir := filepath.Join(t.TempDir(), prefix+"work")

	m := startMaster(t)
	// Registered before the agent's stop, so it runs after it: the agent
	// destroys its containers on the way out, then the roots go.
	t.Cleanup(func() { testsupport.RemoveCgroupsRoot(t, root) })
	cfs := cgroups.DefaultSettings()
	cfs.EnableCFS = true
	a := agenttest.Start(t, agent.Config{
		Master: m, WorkDir: workDir, IP: "127.0.0.1", Resources: "cpus:2;mem:1024;disk:1024",
		Launcher: "linux", Isolation: "cgroups/cpu,cgroups/mem,namespaces/pid", CgroupsRoot: root,
		Settings: container.NewSettings().With(cfs), LauncherDir: testsupport.BinDir(t), Log: testLogger(t),
		RegistrationBackoffFactor: 50 * time.Millisecond,
	})

	res, _ := resources.Parse("cpus:0.2;mem:64")
	tasks := []*mesos.TaskInfo{
		// tail keeps the whole of a newline-free input in memory.
		{Name: proto.String("hog"), TaskId: &mesos.TaskID{Value: proto.String("hog")}, Resources: res,
			Command: &mesos.CommandInfo{Value: proto.String("head -c 1024M /dev/zero | tail; sleep 1000"), Shell: proto.Bool(true)}},
		{Name: proto.String("sleeper"), TaskId: &mesos.TaskID{Value: proto.String("sleeper")}, Resources: res,
			Command: &mesos.CommandInfo{Value: proto.String("sleep 1000"), Shell: proto.Bool(true)}},
	}
	s := &launcher{tasks: tasks, updates: make(chan *mesos.TaskStatus, 100)}
	d, err := scheduler.New(scheduler.Config{
		Master: m, Log: testLogger(t),
		Framework: &mesos.FrameworkInfo{User: proto.String("root"), Name: proto.String("linux-launcher-test")},
	}, s)
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(context.Background()) }()
	t.Cleanup(func() {
		_ = d.Stop(false)
		select {
		case <-runErr:
		case <-time.After(30 * time.Second):
			t.Errorf("scheduler driver did not stop")
		}
	})

	final := map[string]*mesos.TaskStatus{}
	running := map[string]bool{}
	next := func(what string) *mesos.TaskStatus {
		t.Helper()
		select {
		case st := <-s.updates:
			return st
		case <-time.After(60 * time.Second):
			t.Fatalf("no status update while waiting for %s (final so far: %v)", what, final)
		}
		return nil
	}
	for final["hog"] == nil || !running["sleeper"] {
		st := next("the hog's end and the sleeper running")
		id := st.GetTaskId().GetValue()
		switch st.GetState() {
		case mesos.TaskState_TASK_RUNNING:
			running[id] = true
		case mesos.TaskState_TASK_STARTING, mesos.TaskState_TASK_STAGING:
		default:
			final[id] = st
		}
		if id == "sleeper" && final["sleeper"] != nil {
			t.Fatalf("sleeper ended: %v %v %q", final["sleeper"].GetState(), final["sleeper"].GetReason(), final["sleeper"].GetMessage())
		}
	}
	hog := final["hog"]
	if hog.GetState() != mesos.TaskState_TASK_FAILED || hog.GetReason() != mesos.TaskStatus_REASON_CONTAINER_LIMITATION_MEMORY {
		t.Errorf("hog ended %v %v %q, want TASK_FAILED with REASON_CONTAINER_LIMITATION_MEMORY", hog.GetState(), hog.GetReason(), hog.GetMessage())
	}
	if msg := hog.GetMessage(); !strings.Contains(msg, "Memory limit exceeded") || !strings.Contains(msg, "64MB") {
		t.Errorf("hog's message %q, want one naming the limit and the usage", msg)
	}

	// /monitor/statistics: the sleeper's container, with its limits.
	base := "http://" + a.Endpoint()
	var stats []struct {
		ContainerID string         `json:"container_id"`
		Statistics  map[string]any `json:"statistics"`
	}
	getJSON(t, base+"/monitor/statistics", &stats)
	if len(stats) != 1 {
		t.Fatalf("/monitor/statistics has %d entries, want the sleeper's alone: %+v", len(stats), stats)
	}
	st := stats[0].Statistics
	if v, _ := st["mem_limit_bytes"].(float64); v != 64<<20 {
		t.Errorf("mem_limit_bytes %v, want %d: %v", st["mem_limit_bytes"], 64<<20, st)
	}
	if v, _ := st["cpus_limit"].(float64); v != 0.2 {
		t.Errorf("cpus_limit %v, want 0.2: %v", st["cpus_limit"], st)
	}
	for _, f := range []string{"cpus_user_time_secs", "cpus_system_time_secs", "cpus_nr_periods", "mem_rss_bytes", "mem_total_bytes", "processes", "threads", "timestamp"} {
		if _, ok := st[f]; !ok {
			t.Errorf("/monitor/statistics lacks %s: %v", f, st)
		}
	}

	// /state: the same usage on the sleeper's executor entry.
	var state struct {
		Frameworks []struct {
			Executors []struct {
				ID         string         `json:"id"`
				Container  string         `json:"container"`
				Statistics map[string]any `json:"statistics"`
			} `json:"executors"`
		} `json:"frameworks"`
	}
	getJSON(t, base+"/state", &state)
	found := false
	for _, fw := range state.Frameworks {
		for _, ex := range fw.Executors {
			if ex.Container != stats[0].ContainerID {
				continue
			}
			found = true
			if v, _ := ex.Statistics["mem_limit_bytes"].(float64); v != 64<<20 {
				t.Errorf("/state executor %s statistics %v, want mem_limit_bytes %d", ex.ID, ex.Statistics, 64<<20)
			}
		}
	}
	if !found {
		t.Errorf("/state has no executor for container %s: %+v", stats[0].ContainerID, state)
	}

	// Killing the sleeper leaves nothing running.
	if err := d.KillTask(context.Background(), &mesos.TaskID{Value: proto.String("sleeper")}, nil); err != nil {
		t.Fatal(err)
	}
	for final["sleeper"] == nil {
		st := next("the sleeper killed")
		if st.GetState().IsTerminal() {
			final[st.GetTaskId().GetValue()] = st
		}
	}
	if st := final["sleeper"].GetState(); st != mesos.TaskState_TASK_KILLED {
		t.Errorf("sleeper ended %v, want TASK_KILLED", st)
	}
}

// launcher is a framework that launches its tasks on the first offer.
type launcher struct {
	scheduler.BaseScheduler
	tasks    []*mesos.TaskInfo
	launched bool
	updates  chan *mesos.TaskStatus
}

func (l *launcher) ResourceOffers(d scheduler.Driver, offers []*mesos.Offer) {
	for _, o := range offers {
		if l.launched {
			_ = d.DeclineOffer(context.Background(), o.GetId(), nil)
			continue
		}
		l.launched = true
		for _, ti := range l.tasks {
			ti.AgentId = o.GetAgentId()
		}
		_ = d.LaunchTasks(context.Background(), []*mesos.OfferID{o.GetId()}, l.tasks, nil)
	}
}

func (l *launcher) StatusUpdate(_ scheduler.Driver, s *mesos.TaskStatus) { l.updates <- s }

func startMaster(t *testing.T) string {
	t.Helper()
	addr, _ := mastertest.Start(t, master.Config{HeartbeatInterval: time.Second, AllocationInterval: 50 * time.Millisecond, Log: testLogger(t)})
	return addr
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, b)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
