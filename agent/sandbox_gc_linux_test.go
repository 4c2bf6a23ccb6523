package agent

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/driver/scheduler"
	"github.com/corral/corral/internal/testsupport"
	"github.com/corral/corral/master"
	"github.com/corral/corral/master/mastertest"

	// As the corral binary links them.
	_ "github.com/corral/corral/isolators/disk"
	_ "github.com/corral/corral/launcher/posix"
)

// A real master and agent (posix launcher) and a framework running task
// groups on one default executor: when a run ends, its sandbox, the
// executor's and the framework's directories are scheduled gc_delay later;
// a new run of the same executor takes the executor's and framework's
// directories back (the old run's sandbox stays scheduled, the live one is
// never scheduled); when that run ends everything is scheduled again, and
// a prune removes it all, which /metrics/snapshot counts.
func TestSandboxGCScheduleAndUnschedule(t *testing.T) {
	testsupport.RequireRoot(t)
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	workDir := filepath.Join(t.TempDir(), prefix+"work")
	a := runTestAgent(t, Config{
		WorkDir: workDir, Launcher: "posix", CgroupsRoot: testsupport.CgroupsRoot(t, prefix),
		GCDelay: time.Hour, DiskWatchInterval: time.Hour,
	})
	snap := getMetrics(t, a)
	for _, k := range wantMetricKeys {
		if _, ok := snap[k]; !ok {
			t.Errorf("/metrics/snapshot lacks %s before any task", k)
		}
	}
	if snap["slave/registered"] != 1 || snap["gc/path_removals_pending"] != 0 || snap["slave/executor_directory_max_allowed_age_secs"] != 3600 {
		t.Errorf("registered agent, nothing scheduled, max age gc_delay: %v", snap)
	}

	s := startGroupFramework(t, a.cfg.Master)
	s.launch(t, "ex", groupTask("g1", "echo one"))
	if st := s.await(t, "g1", mesos.TaskState.IsTerminal); st.GetState() != mesos.TaskState_TASK_FINISHED {
		t.Fatalf("g1 ended %v %q", st.GetState(), st.GetMessage())
	}
	fwID := s.frameworkID()
	exDir := a.executorDir(a.ID(), fwID, "ex")
	fwDir := a.frameworkDir(a.ID(), fwID)
	runs := runDirs(t, exDir)
	if len(runs) != 1 {
		t.Fatalf("runs of executor ex: %v, want one", runs)
	}
	run1 := runs[0]
	waitUntil(t, "the first run's directories to be scheduled", func() bool {
		return scheduled(a, run1) && scheduled(a, exDir) && scheduled(a, fwDir)
	})
	for _, p := range []string{run1, exDir, fwDir} {
		if at, _ := a.gc.Scheduled(p); time.Until(at) < 50*time.Minute {
			t.Errorf("%s is due at %v, want gc_delay (1h) from the run's end", p, at)
		}
	}
	// Touched at the end: a restarted agent takes the end from the mtime.
	if fi, err := os.Stat(run1); err != nil || time.Since(fi.ModTime()) > 10*time.Minute {
		t.Errorf("run directory mtime %v (%v), want the run's end", fi.ModTime(), err)
	}

	s.launch(t, "ex", groupTask("g2", "sleep 1000"))
	if st := s.await(t, "g2", func(s mesos.TaskState) bool { return s == mesos.TaskState_TASK_RUNNING || s.IsTerminal() }); st.GetState() != mesos.TaskState_TASK_RUNNING {
		t.Fatalf("g2 went %v %q, want TASK_RUNNING", st.GetState(), st.GetMessage())
	}
	runs = runDirs(t, exDir)
	if len(runs) != 2 {
		t.Fatalf("runs of executor ex: %v, want two", runs)
	}
	run2 := runs[0]
	if run2 == run1 {
		run2 = runs[1]
	}
	// The new run was made after its parents were unscheduled.
	if scheduled(a, exDir) || scheduled(a, fwDir) || scheduled(a, run2) {
		t.Errorf("with a live run: executor dir scheduled %v, framework dir %v, live run %v; want none",
			scheduled(a, exDir), scheduled(a, fwDir), scheduled(a, run2))
	}
	if !scheduled(a, run1) {
		t.Errorf("the ended run's sandbox %s was unscheduled by the new run", run1)
	}
	if m := getMetrics(t, a); m["slave/tasks_running"] != 1 || m["slave/executors_running"] != 1 || m["slave/frameworks_active"] != 1 ||
		m["slave/tasks_finished"] != 1 || m["gc/path_removals_pending"] != 1 || m["slave/cpus_used"] <= 0 {
		t.Errorf("metrics with g2 running: %v", m)
	}

	s.kill(t, "g2")
	if st := s.await(t, "g2", mesos.TaskState.IsTerminal); st.GetState() != mesos.TaskState_TASK_KILLED {
		t.Fatalf("g2 ended %v %q, want TASK_KILLED", st.GetState(), st.GetMessage())
	}
	waitUntil(t, "the second run's directories to be scheduled", func() bool {
		return scheduled(a, run2) && scheduled(a, exDir) && scheduled(a, fwDir)
	})

	// Everything scheduled goes in one prune (Mesos' prune at a full disk).
	if n := a.gc.Prune(0); n < 1 {
		t.Fatalf("Prune(0) removed %d paths", n)
	}
	for _, p := range []string{run1, run2, exDir, fwDir} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there after the prune (%v)", p, err)
		}
	}
	m := getMetrics(t, a)
	if m["gc/path_removals_succeeded"] < 4 || m["gc/path_removals_failed"] != 0 || m["gc/path_removals_pending"] != 0 ||
		m["gc/bytes_freed"] <= 0 || m["gc/last_prune_secs"] <= 0 {
		t.Errorf("gc metrics after the prune: succeeded %v failed %v pending %v bytes_freed %v last_prune %v",
			m["gc/path_removals_succeeded"], m["gc/path_removals_failed"], m["gc/path_removals_pending"], m["gc/bytes_freed"], m["gc/last_prune_secs"])
	}
	if m["slave/tasks_finished"] != 1 || m["slave/tasks_killed"] != 1 || m["slave/tasks_running"] != 0 || m["slave/executors_terminated"] != 2 {
		t.Errorf("task and executor counters: %v", m)
	}
}

// disk/xfs asked for on a work_dir without project quotas fails the start
// with the cause; an unknown isolator after disk/du fails it too, and
// disk/du's helper cgroup (named by the cgroups root, so the leak check
// sees it) goes with the failed start.
func TestDiskIsolationStartupErrors(t *testing.T) {
	testsupport.RequireRoot(t)
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	root := testsupport.CgroupsRoot(t, prefix)
	workDir := filepath.Join(t.TempDir(), prefix+"work")
	cfg := Config{Master: "127.0.0.1:1", WorkDir: workDir, IP: "127.0.0.1", Launcher: "posix", CgroupsRoot: root,
		LauncherDir: testsupport.BinDir(t), Log: discardLog()}

	c := cfg
	c.Isolation = "disk/xfs"
	_, err := New(c)
	if err == nil {
		t.Skipf("%s has project quotas: nothing to refuse here", workDir)
	}
	if msg := err.Error(); !strings.Contains(msg, "disk/xfs") || !strings.Contains(msg, "project quota") {
		t.Errorf("disk/xfs on a work_dir without project quotas: %v; want the isolator and the cause named", err)
	}

	c = cfg
	c.Isolation = "disk/du,no/such"
	if _, err := New(c); err == nil || !strings.Contains(err.Error(), "no/such") {
		t.Errorf("unknown isolator after disk/du: %v", err)
	}
}

// wantMetricKeys are keys /metrics/snapshot has from the start.
var wantMetricKeys = []string{
	"slave/uptime_secs", "slave/registered", "slave/recovery_errors", "slave/frameworks_active",
	"slave/tasks_staging", "slave/tasks_starting", "slave/tasks_running", "slave/tasks_killing",
	"slave/tasks_finished", "slave/tasks_failed", "slave/tasks_killed", "slave/tasks_lost", "slave/tasks_gone",
	"slave/executors_registering", "slave/executors_running", "slave/executors_terminating", "slave/executors_terminated",
	"slave/container_launch_errors", "slave/executor_directory_max_allowed_age_secs",
	"slave/cpus_total", "slave/cpus_used", "slave/cpus_percent", "slave/mem_total", "slave/disk_total",
	"gc/path_removals_succeeded", "gc/path_removals_failed", "gc/path_removals_pending",
	"gc/bytes_freed", "gc/last_prune_secs",
}

func scheduled(a *Agent, path string) bool {
	_, ok := a.gc.Scheduled(path)
	return ok
}

// runDirs lists an executor's run directories (not runs/latest).
func runDirs(t *testing.T, exDir string) []string {
	t.Helper()
	return subdirs(filepath.Join(exDir, "runs"))
}

// waitUntil polls cond; the deadline only turns a hang into a failure.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testsupport.Eventually(t, what, 60*time.Second, cond)
}

func getMetrics(t *testing.T, a *Agent) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + a.Endpoint() + "/metrics/snapshot")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]float64
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("/metrics/snapshot is not a flat object of numbers: %v", err)
	}
	return m
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// runTestAgent starts a master in-process and an agent on cfg (master,
// address, resources and binaries filled in), waits for its registration
// and stops both in cleanups.
func runTestAgent(t *testing.T, cfg Config) *Agent {
	t.Helper()
	cfg.Master = startTestMaster(t)
	cfg.IP = "127.0.0.1"
	if cfg.Resources == "" {
		cfg.Resources = "cpus:2;mem:1024;disk:1024"
	}
	cfg.LauncherDir = testsupport.BinDir(t)
	cfg.Log = discardLog()
	cfg.RegistrationBackoffFactor = 50 * time.Millisecond
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent.Run: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Errorf("agent did not stop")
		}
	})
	waitUntil(t, "the agent to register", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.connected
	})
	return a
}

func startTestMaster(t *testing.T) string {
	t.Helper()
	addr, _ := mastertest.Start(t, master.Config{HeartbeatInterval: time.Second, AllocationInterval: 50 * time.Millisecond, Log: discardLog()})
	return addr
}

func groupTask(id, command string) *mesos.TaskInfo {
	res, _ := resources.Parse("cpus:0.1;mem:32")
	return &mesos.TaskInfo{
		Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)}, Resources: res,
		Command: &mesos.CommandInfo{Value: proto.String(command), Shell: proto.Bool(true)},
	}
}

// testFramework launches what is queued (task groups on the default
// executor, command tasks) on the next offers that fit, and passes every
// status update on.
type testFramework struct {
	scheduler.BaseScheduler
	d       *scheduler.HTTPDriver
	updates chan *mesos.TaskStatus
	mu      sync.Mutex
	queue   []*mesos.Offer_Operation
	backlog []*mesos.TaskStatus
}

func startGroupFramework(t *testing.T, masterAddr string) *testFramework {
	return startTestFramework(t, masterAddr, &mesos.FrameworkInfo{User: proto.String("root"), Name: proto.String("sandbox-gc-test")})
}

func startTestFramework(t *testing.T, masterAddr string, info *mesos.FrameworkInfo) *testFramework {
	t.Helper()
	f := &testFramework{updates: make(chan *mesos.TaskStatus, 1000)}
	d, err := scheduler.New(scheduler.Config{Master: masterAddr, Log: discardLog(), Framework: info}, f)
	if err != nil {
		t.Fatal(err)
	}
	f.d = d
	runDriver(t, d)
	waitUntil(t, "the framework to subscribe", func() bool { return d.FrameworkID() != nil })
	return f
}

func (f *testFramework) frameworkID() string { return f.d.FrameworkID().GetValue() }

// launch queues a group of one task on the default executor exID.
func (f *testFramework) launch(t *testing.T, exID string, ti *mesos.TaskInfo) {
	t.Helper()
	exRes, _ := resources.Parse("cpus:0.1;mem:32")
	op := &mesos.Offer_Operation{
		Type: mesos.Offer_Operation_LAUNCH_GROUP.Enum(),
		LaunchGroup: &mesos.Offer_Operation_LaunchGroup{
			Executor: &mesos.ExecutorInfo{
				Type: mesos.ExecutorInfo_DEFAULT.Enum(), ExecutorId: &mesos.ExecutorID{Value: proto.String(exID)},
				FrameworkId: f.d.FrameworkID(), Resources: exRes,
			},
			TaskGroup: &mesos.TaskGroupInfo{Tasks: []*mesos.TaskInfo{ti}},
		},
	}
	f.enqueue(op)
}

// launchTasks queues command tasks.
func (f *testFramework) launchTasks(tasks ...*mesos.TaskInfo) {
	f.enqueue(&mesos.Offer_Operation{Type: mesos.Offer_Operation_LAUNCH.Enum(), Launch: &mesos.Offer_Operation_Launch{TaskInfos: tasks}})
}

func (f *testFramework) enqueue(op *mesos.Offer_Operation) {
	f.mu.Lock()
	f.queue = append(f.queue, op)
	f.mu.Unlock()
	// Offers held back since the last launch come again at once.
	_ = f.d.ReviveOffers(context.Background())
}

// opTasks lists the tasks an operation launches.
func opTasks(op *mesos.Offer_Operation) []*mesos.TaskInfo {
	return append(op.GetLaunch().GetTaskInfos(), op.GetLaunchGroup().GetTaskGroup().GetTasks()...)
}

func (f *testFramework) ResourceOffers(d scheduler.Driver, offers []*mesos.Offer) {
	f.mu.Lock()
	ops := f.queue
	f.queue = nil
	f.mu.Unlock()
	if len(ops) == 0 {
		for _, o := range offers {
			_ = d.DeclineOffer(context.Background(), o.GetId(), &mesos.Filters{RefuseSeconds: proto.Float64(0.1)})
		}
		return
	}
	// All offers go in one ACCEPT (there is one agent): resources freed by
	// an ended executor may come as an offer of their own, too small alone.
	// Offers that still do not fit the queue are declined for a moment;
	// the master offers everything again together.
	var pool, need resources.Resources
	for _, o := range offers {
		r, _ := resources.New(o.GetResources())
		pool = pool.Plus(r)
	}
	for _, op := range ops {
		r, _ := resources.New(op.GetLaunchGroup().GetExecutor().GetResources())
		need = need.Plus(r)
		for _, ti := range opTasks(op) {
			r, _ := resources.New(ti.GetResources())
			need = need.Plus(r)
		}
	}
	if !pool.Contains(need) {
		for _, o := range offers {
			_ = d.DeclineOffer(context.Background(), o.GetId(), &mesos.Filters{RefuseSeconds: proto.Float64(0.1)})
		}
		f.mu.Lock()
		f.queue = append(ops, f.queue...)
		f.mu.Unlock()
		return
	}
	var ids []*mesos.OfferID
	for _, o := range offers {
		ids = append(ids, o.GetId())
		for _, op := range ops {
			for _, ti := range opTasks(op) {
				ti.AgentId = o.GetAgentId()
			}
		}
	}
	if err := d.AcceptOffers(context.Background(), ids, ops, &mesos.Filters{RefuseSeconds: proto.Float64(0.1)}); err != nil {
		f.mu.Lock()
		f.queue = append(ops, f.queue...)
		f.mu.Unlock()
	}
}

func (f *testFramework) StatusUpdate(_ scheduler.Driver, s *mesos.TaskStatus) { f.updates <- s }

func (f *testFramework) kill(t *testing.T, id string) {
	t.Helper()
	if err := f.d.KillTask(context.Background(), &mesos.TaskID{Value: proto.String(id)}, nil); err != nil {
		t.Fatal(err)
	}
}

// await returns the first update of task id whose state satisfies done;
// other tasks' updates are kept for later waits.
func (f *testFramework) await(t *testing.T, id string, done func(mesos.TaskState) bool) *mesos.TaskStatus {
	t.Helper()
	for i, s := range f.backlog {
		if s.GetTaskId().GetValue() == id && done(s.GetState()) {
			f.backlog = append(f.backlog[:i], f.backlog[i+1:]...)
			return s
		}
	}
	deadline := time.After(60 * time.Second)
	for {
		select {
		case s := <-f.updates:
			if s.GetTaskId().GetValue() == id && done(s.GetState()) {
				return s
			}
			if s.GetTaskId().GetValue() != id {
				f.backlog = append(f.backlog, s)
			}
		case <-deadline:
			t.Fatalf("no update of task %s in the state waited for", id)
			return nil
		}
	}
}

// runDriver runs a scheduler driver until the test's end, when it is
// stopped (without failover) and waited for.
func runDriver(t *testing.T, d *scheduler.HTTPDriver) {
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
}
