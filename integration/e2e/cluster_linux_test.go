package e2e

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/v1/mesos"
	sched "github.com/corral/corral/driver/scheduler"
	"github.com/corral/corral/internal/testsupport"
)

// Generous bounds: the tests run on small, busy machines. Nothing asserts
// on time; these only turn a hang into a failure.
const (
	startTimeout = 60 * time.Second
	taskTimeout  = 2 * time.Minute
	stopTimeout  = 60 * time.Second
)

// agentResources is what the test agent offers: more than the host has, so
// that a 100-task batch fits in one offer (posix isolation does not enforce
// it).
const agentResources = "cpus:64;mem:65536;disk:8192"

func TestMain(m *testing.M) {
	code := m.Run()
	if testExecutorDir != "" {
		_ = os.RemoveAll(testExecutorDir)
	}
	os.Exit(code)
}

// needsRoot skips an end-to-end test as non-root (testsupport.RequireRoot)
// and with -short (make test-unit), saying why.
func needsRoot(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("end-to-end test on real binaries; skipped with -short")
	}
	testsupport.RequireRoot(tb)
}

// rootTest starts an end-to-end test: skipped as needsRoot says, else
// the test's prefix, with the leak check for it registered.
func rootTest(tb testing.TB) string {
	tb.Helper()
	needsRoot(tb)
	prefix := testsupport.Prefix(tb)
	testsupport.CheckLeaks(tb, prefix)
	return prefix
}

// forEachLauncher runs f as a root subtest per launcher.
func forEachLauncher(t *testing.T, f func(t *testing.T, launcher, prefix string)) {
	for _, launcher := range launchers {
		t.Run(launcher, func(t *testing.T) { f(t, launcher, rootTest(t)) })
	}
}

// corralBin is the corral binary under test.
func corralBin(tb testing.TB) string {
	tb.Helper()
	p := filepath.Join(testsupport.BinDir(tb), "corral")
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("corral binary: %v", err)
	}
	return p
}

var (
	testExecutorOnce sync.Once
	testExecutorDir  string
	testExecutorPath string
	testExecutorErr  error
)

// testExecutorBin is integration/testexecutor: taken from the binary
// directory when it is there (the VM tier ships it), else built once.
func testExecutorBin(tb testing.TB) string {
	tb.Helper()
	if p := filepath.Join(testsupport.BinDir(tb), "testexecutor"); fileExists(p) {
		return p
	}
	testExecutorOnce.Do(func() {
		testExecutorDir, testExecutorErr = os.MkdirTemp("", "corral-e2e-testexecutor-")
		if testExecutorErr != nil {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		out := filepath.Join(testExecutorDir, "testexecutor")
		cmd := exec.Command("go", "build", "-o", out, "./integration/testexecutor")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			testExecutorErr = fmt.Errorf("go build ./integration/testexecutor: %v\n%s", err, b)
			return
		}
		testExecutorPath = out
	})
	if testExecutorErr != nil {
		tb.Fatalf("building the test executor: %v", testExecutorErr)
	}
	return testExecutorPath
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// cluster is one `corral local` process: master and agent on loopback.
type cluster struct {
	master  string // 127.0.0.1:port
	scheme  string // http, or https with --tls_* flags
	http    *http.Client
	workDir string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

// startCluster runs `corral local` with its work dir named by prefix (so
// every sandbox path, and with it every task's environment, carries it) and
// waits until its agent has registered. It stops the cluster in a cleanup;
// call testsupport.CheckLeaks(tb, prefix) before, so that the leak check
// runs after the stop.
func startCluster(tb testing.TB, prefix string, extra ...string) *cluster {
	tb.Helper()
	return launchCluster(tb, prefix, "http", http.DefaultClient, extra)
}

// startTLSCluster is startCluster serving https with a certificate ca
// signs, which the agent also presents to the master; the cluster's client
// trusts ca and presents a certificate of its own.
func startTLSCluster(tb testing.TB, prefix string, ca *testsupport.CA, extra ...string) *cluster {
	tb.Helper()
	cert, key := ca.Issue(tb, "node")
	clientCert, clientKey := ca.Issue(tb, "operator")
	return launchCluster(tb, prefix, "https", ca.HTTPClient(tb, clientCert, clientKey), append(ca.Flags(cert, key), extra...))
}

// launchCluster is startCluster reached with hc over scheme.
func launchCluster(tb testing.TB, prefix, scheme string, hc *http.Client, extra []string) *cluster {
	tb.Helper()
	needsRoot(tb)
	bin := corralBin(tb)
	dir := tb.TempDir()
	workDir := filepath.Join(dir, prefix+"work")
	cgRoot := testsupport.CgroupsRoot(tb, prefix)
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port := testsupport.FreePort(tb)
		c := &cluster{
			master: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			scheme: scheme, http: hc,
			workDir: workDir,
			logPath: filepath.Join(dir, fmt.Sprintf("corral-local-%d.log", attempt)),
			exited:  make(chan struct{}),
		}
		logf, err := os.Create(c.logPath)
		if err != nil {
			tb.Fatal(err)
		}
		args := append([]string{"local", "--port", strconv.Itoa(port), "--work_dir", workDir,
			"--cgroups_root", cgRoot, "--resources", agentResources, "--logging_level", "INFO"}, extra...)
		c.cmd = exec.Command(bin, args...)
		c.cmd.Stdout, c.cmd.Stderr = logf, logf
		if err := c.cmd.Start(); err != nil {
			logf.Close()
			tb.Fatalf("starting corral local: %v", err)
		}
		logf.Close()
		go func() {
			c.waitErr = c.cmd.Wait()
			close(c.exited)
		}()
		if err := c.waitReady(); err != nil {
			c.stop()
			lastErr = err
			if strings.Contains(c.logTail(), "address already in use") {
				continue // the free port was taken meanwhile
			}
			tb.Fatalf("corral local did not come up: %v\n%s", err, c.logTail())
		}
		tb.Cleanup(func() {
			if err := c.stop(); err != nil {
				tb.Errorf("stopping corral local: %v", err)
			}
			if tb.Failed() {
				tb.Logf("corral local log (%s):\n%s", c.logPath, c.logTail())
				logSandboxStderr(tb, c.workDir)
			}
		})
		return c
	}
	tb.Fatalf("corral local did not come up: %v", lastErr)
	return nil
}

// waitReady waits until the master lists an active agent.
func (c *cluster) waitReady() error {
	deadline := time.Now().Add(startTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-c.exited:
			return fmt.Errorf("corral local exited: %v", c.waitErr)
		default:
		}
		var st struct {
			Slaves []struct {
				Active bool `json:"active"`
			} `json:"slaves"`
		}
		if last = c.getJSON("/state", &st); last == nil {
			for _, s := range st.Slaves {
				if s.Active {
					return nil
				}
			}
			last = fmt.Errorf("no active agent yet")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %v: %v", startTimeout, last)
}

func (c *cluster) getJSON(path string, v any) error {
	hc := c.http
	if hc == nil {
		hc = http.DefaultClient
	}
	return testsupport.GetJSONWith(hc, c.url(path), v)
}

// agentAddr is host:port of the cluster's one agent, from the master's
// /state (slaves[].pid, "slave(1)@host:port").
func (c *cluster) agentAddr(tb testing.TB) string {
	tb.Helper()
	var st struct {
		Slaves []struct {
			PID string `json:"pid"`
		} `json:"slaves"`
	}
	if err := c.getJSON("/state", &st); err != nil || len(st.Slaves) != 1 {
		tb.Fatalf("master /state: %v %+v", err, st)
	}
	_, addr, _ := strings.Cut(st.Slaves[0].PID, "@")
	return addr
}

// url is path on the master.
func (c *cluster) url(path string) string {
	if c.scheme == "" {
		return "http://" + c.master + path
	}
	return c.scheme + "://" + c.master + path
}

// stop sends SIGTERM (the agent destroys its containers on the way out)
// and waits; SIGKILL only if it hangs, which is an error.
func (c *cluster) stop() error {
	select {
	case <-c.exited:
		return nil // already stopped, or died: waitReady or the test says why
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
		if c.waitErr != nil {
			return fmt.Errorf("corral local exited with %v after SIGTERM", c.waitErr)
		}
		return nil
	case <-time.After(stopTimeout):
		_ = c.cmd.Process.Kill()
		<-c.exited
		return fmt.Errorf("corral local ignored SIGTERM for %v; killed", stopTimeout)
	}
}

func (c *cluster) logTail() string {
	b, _ := os.ReadFile(c.logPath)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// sandbox is the latest run directory of an executor (for a command task,
// the executor ID is the task ID).
func (c *cluster) sandbox(tb testing.TB, executorID string) string {
	tb.Helper()
	matches, _ := filepath.Glob(filepath.Join(c.workDir, "slaves", "*", "frameworks", "*", "executors", executorID, "runs", "latest"))
	if len(matches) != 1 {
		tb.Fatalf("sandbox of executor %s: found %v", executorID, matches)
	}
	dir, err := filepath.EvalSymlinks(matches[0])
	if err != nil {
		tb.Fatalf("sandbox of executor %s: %v", executorID, err)
	}
	return dir
}

func readFile(tb testing.TB, path string) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("reading %s: %v", path, err)
	}
	return string(b)
}

// framework is a scheduler on driver/scheduler: it keeps the offers it
// gets, launches queued tasks on them as soon as they fit, and records
// every status update (acknowledged implicitly by the driver).
type framework struct {
	tb         testing.TB
	d          *sched.HTTPDriver
	runErr     chan error
	registered chan struct{}
	regOnce    sync.Once
	stopOnce   sync.Once
	updates    chan *mesos.TaskStatus
	// backlog holds updates a wait read but did not consume (another
	// task's, or one that came after its task's wait was over), oldest
	// first; the next waits read it before the channel. Only the test's
	// goroutine touches it.
	backlog []*mesos.TaskStatus

	mu      sync.Mutex
	offers  map[string]*mesos.Offer // held, not yet used
	pending []*mesos.TaskInfo
	// groups are pending task groups, each launched whole (LAUNCH_GROUP)
	// on its tasks' executor.
	groups    [][]*mesos.TaskInfo
	executors map[string]bool // executors already launched
	// accepted is when each task went out in an ACCEPT.
	accepted map[string]time.Time
	// failures are the FAILURE events of executors, in arrival order.
	failures chan executorFailure
}

// executorFailure is a FAILURE event for an executor.
type executorFailure struct {
	executorID, agentID string
	status              int
}

var codecs = []struct {
	name  string
	codec codec.Codec
}{
	{"json", codec.JSON},
	{"protobuf", codec.Protobuf},
}

// newFramework subscribes a framework and waits for SUBSCRIBED; it is
// torn down in a cleanup (which kills whatever it still runs).
func newFramework(tb testing.TB, c *cluster, name string, cdc codec.Codec) *framework {
	tb.Helper()
	return subscribeFramework(tb, sched.Config{
		Master: c.url(""), HTTPClient: c.http, Codec: cdc,
		Framework: &mesos.FrameworkInfo{
			User: proto.String("root"), Name: proto.String(name), FailoverTimeout: proto.Float64(0),
		},
	})
}

// subscribeFramework runs a driver with cfg (its log goes to the test's)
// and waits for SUBSCRIBED; the framework is torn down in a cleanup.
func subscribeFramework(tb testing.TB, cfg sched.Config) *framework {
	tb.Helper()
	f := &framework{
		tb: tb, runErr: make(chan error, 1), registered: make(chan struct{}),
		updates: make(chan *mesos.TaskStatus, 100000),
		offers:  map[string]*mesos.Offer{}, executors: map[string]bool{}, accepted: map[string]time.Time{},
		failures: make(chan executorFailure, 10000),
	}
	cfg.Log = slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d, err := sched.New(cfg, f)
	if err != nil {
		tb.Fatalf("scheduler driver: %v", err)
	}
	f.d = d
	go func() { f.runErr <- d.Run(context.Background()) }()
	tb.Cleanup(f.stop)
	select {
	case <-f.registered:
	case err := <-f.runErr:
		tb.Fatalf("scheduler driver ended before SUBSCRIBED: %v", err)
	case <-time.After(startTimeout):
		tb.Fatalf("no SUBSCRIBED within %v", startTimeout)
	}
	return f
}

// stop tears the framework down (the master kills its tasks and shuts its
// executors down) and waits for the driver to end. It may be called more
// than once.
func (f *framework) stop() {
	f.stopOnce.Do(func() {
		if err := f.d.Stop(false); err != nil {
			f.tb.Errorf("scheduler driver Stop: %v", err)
		}
		select {
		case err := <-f.runErr:
			if err != nil {
				f.tb.Errorf("scheduler driver Run: %v", err)
			}
		case <-time.After(stopTimeout):
			f.tb.Errorf("scheduler driver did not stop within %v", stopTimeout)
		}
	})
}

// testWriter sends the driver's logs to the test log.
type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

func (f *framework) Registered(sched.Driver, *mesos.FrameworkID, *mesos.MasterInfo) {
	f.regOnce.Do(func() { close(f.registered) })
}

func (f *framework) Reregistered(sched.Driver, *mesos.MasterInfo) {}

func (f *framework) Disconnected(sched.Driver) {
	f.mu.Lock()
	f.offers = map[string]*mesos.Offer{}
	f.mu.Unlock()
}

func (f *framework) ResourceOffers(_ sched.Driver, offers []*mesos.Offer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, o := range offers {
		f.offers[o.GetId().GetValue()] = o
	}
	f.launchLocked()
}

func (f *framework) OfferRescinded(_ sched.Driver, id *mesos.OfferID) {
	f.mu.Lock()
	delete(f.offers, id.GetValue())
	f.mu.Unlock()
}

func (f *framework) StatusUpdate(_ sched.Driver, s *mesos.TaskStatus) {
	f.updates <- s
}

func (f *framework) FrameworkMessage(sched.Driver, *mesos.ExecutorID, *mesos.AgentID, []byte) {}
func (f *framework) AgentLost(sched.Driver, *mesos.AgentID)                                   {}
func (f *framework) ExecutorLost(_ sched.Driver, ex *mesos.ExecutorID, agent *mesos.AgentID, status int) {
	select {
	case f.failures <- executorFailure{ex.GetValue(), agent.GetValue(), status}:
	default:
		f.tb.Errorf("FAILURE of executor %s dropped: the test reads none", ex.GetValue())
	}
}
func (f *framework) Error(_ sched.Driver, msg string) {
	f.tb.Logf("master refused the framework: %s", msg)
}

// launch queues tasks; they go out on the offers held now or on the next
// ones that fit.
func (f *framework) launch(tasks ...*mesos.TaskInfo) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending = append(f.pending, tasks...)
	f.launchLocked()
}

// launchGroup queues a task group: its tasks share their executor
// (tasks[0].Executor) and go out together in one LAUNCH_GROUP.
func (f *framework) launchGroup(tasks ...*mesos.TaskInfo) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.groups = append(f.groups, tasks)
	f.launchLocked()
}

// launchLocked packs pending tasks and groups into the held offers, one
// ACCEPT per agent with all of its offers. Leftovers come back at once (no
// filter).
func (f *framework) launchLocked() {
	if len(f.pending) == 0 && len(f.groups) == 0 {
		return
	}
	byAgent := map[string][]*mesos.Offer{}
	for _, o := range f.offers {
		byAgent[o.GetAgentId().GetValue()] = append(byAgent[o.GetAgentId().GetValue()], o)
	}
	for agentID, offers := range byAgent {
		var pool resources.Resources
		var ids []*mesos.OfferID
		for _, o := range offers {
			r, err := resources.New(o.GetResources())
			if err != nil {
				f.tb.Errorf("offer %s has invalid resources: %v", o.GetId().GetValue(), err)
				continue
			}
			pool = pool.Plus(r)
			ids = append(ids, o.GetId())
		}
		var take, keep []*mesos.TaskInfo
		newExecutors := map[string]bool{}
		for _, ti := range f.pending {
			need, _ := resources.New(ti.GetResources())
			exID := ti.GetExecutor().GetExecutorId().GetValue()
			// An executor launched before may have exited since (the
			// master then wants its resources again): counted unless it
			// is started by this ACCEPT.
			if ti.Executor != nil && !newExecutors[exID] {
				exRes, _ := resources.New(ti.GetExecutor().GetResources())
				need = need.Plus(exRes)
			}
			if !pool.Contains(need) {
				keep = append(keep, ti)
				continue
			}
			pool = pool.Minus(need)
			if ti.Executor != nil {
				newExecutors[exID] = true
			}
			t := proto.Clone(ti).(*mesos.TaskInfo)
			t.AgentId = &mesos.AgentID{Value: proto.String(agentID)}
			take = append(take, t)
		}
		var ops []*mesos.Offer_Operation
		if len(take) > 0 {
			ops = append(ops, &mesos.Offer_Operation{Type: mesos.Offer_Operation_LAUNCH.Enum(), Launch: &mesos.Offer_Operation_Launch{TaskInfos: take}})
		}
		var keepGroups [][]*mesos.TaskInfo
		for _, g := range f.groups {
			ei := g[0].GetExecutor()
			var need resources.Resources
			for _, ti := range g {
				r, _ := resources.New(ti.GetResources())
				need = need.Plus(r)
			}
			if exID := ei.GetExecutorId().GetValue(); !f.executors[exID] && !newExecutors[exID] {
				exRes, _ := resources.New(ei.GetResources())
				need = need.Plus(exRes)
			}
			if !pool.Contains(need) {
				keepGroups = append(keepGroups, g)
				continue
			}
			pool = pool.Minus(need)
			newExecutors[ei.GetExecutorId().GetValue()] = true
			group := &mesos.TaskGroupInfo{}
			for _, ti := range g {
				t := proto.Clone(ti).(*mesos.TaskInfo)
				t.AgentId = &mesos.AgentID{Value: proto.String(agentID)}
				t.Executor = nil // the group's executor says it
				group.Tasks = append(group.Tasks, t)
			}
			ops = append(ops, &mesos.Offer_Operation{Type: mesos.Offer_Operation_LAUNCH_GROUP.Enum(),
				LaunchGroup: &mesos.Offer_Operation_LaunchGroup{Executor: ei, TaskGroup: group}})
		}
		if len(ops) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := f.d.AcceptOffers(ctx, ids, ops, &mesos.Filters{RefuseSeconds: proto.Float64(0)})
		cancel()
		if err != nil {
			f.tb.Logf("ACCEPT: %v; retrying on the next offers", err)
			continue
		}
		f.groups = keepGroups
		now := time.Now()
		for _, t := range take {
			f.accepted[t.GetTaskId().GetValue()] = now
		}
		for _, id := range ids {
			delete(f.offers, id.GetValue())
		}
		for id := range newExecutors {
			f.executors[id] = true
		}
		f.pending = keep
	}
}

func (f *framework) kill(tb testing.TB, taskID string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.d.KillTask(ctx, &mesos.TaskID{Value: proto.String(taskID)}, nil); err != nil {
		tb.Fatalf("KillTask %s: %v", taskID, err)
	}
}

// history is what a task went through.
type history struct {
	states []mesos.TaskState
	last   *mesos.TaskStatus
	uuids  []string
	// resent counts deliveries of an update already delivered.
	resent int
	// firstAt is when each state was first delivered.
	firstAt map[mesos.TaskState]time.Time
}

func (h *history) String() string {
	var s []string
	for _, st := range h.states {
		s = append(s, st.String())
	}
	return strings.Join(s, " → ")
}

// await reads updates until every listed task satisfies done, and returns
// each task's history (every task seen in the meantime is recorded).
func (f *framework) await(tb testing.TB, ids []string, done func(*mesos.TaskStatus) bool) map[string]*history {
	tb.Helper()
	out := map[string]*history{}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	left := len(want)
	timeout := time.NewTimer(taskTimeout)
	defer timeout.Stop()
	var kept []*mesos.TaskStatus
	defer func() { f.backlog = append(kept, f.backlog...) }()
	for left > 0 {
		select {
		case s := <-f.nextUpdate():
			id := s.GetTaskId().GetValue()
			if !want[id] {
				// Another task's (or a later) update: seen here, but
				// left for the wait that asks for it.
				kept = append(kept, s)
			}
			h := out[id]
			if h == nil {
				h = &history{}
				out[id] = h
			}
			// Delivery is at least once: a resent update (same uuid) is
			// not a new state.
			if u := string(s.GetUuid()); u != "" && slices.Contains(h.uuids, u) {
				h.resent++
				continue
			} else if u != "" {
				h.uuids = append(h.uuids, u)
			}
			h.states = append(h.states, s.GetState())
			if h.firstAt == nil {
				h.firstAt = map[mesos.TaskState]time.Time{}
			}
			if _, ok := h.firstAt[s.GetState()]; !ok {
				h.firstAt[s.GetState()] = time.Now()
			}
			h.last = s
			if want[id] && done(s) {
				delete(want, id)
				left--
			}
		case err := <-f.runErr:
			f.runErr <- err
			tb.Fatalf("scheduler driver ended: %v", err)
		case <-timeout.C:
			var missing []string
			for id := range want {
				missing = append(missing, id+" ("+historyOf(out, id)+")")
			}
			tb.Fatalf("after %v, %d tasks still not there: %s", taskTimeout, left, strings.Join(missing, ", "))
		}
	}
	return out
}

// nextUpdate is a channel that yields the oldest backlogged update if
// there is one, else the live update channel.
func (f *framework) nextUpdate() <-chan *mesos.TaskStatus {
	if len(f.backlog) == 0 {
		return f.updates
	}
	ch := make(chan *mesos.TaskStatus, 1)
	ch <- f.backlog[0]
	f.backlog = f.backlog[1:]
	return ch
}

func historyOf(m map[string]*history, id string) string {
	if h := m[id]; h != nil {
		return h.String()
	}
	return "no update"
}

// awaitTerminal waits for every listed task's terminal state.
func (f *framework) awaitTerminal(tb testing.TB, ids ...string) map[string]*history {
	tb.Helper()
	return f.await(tb, ids, func(s *mesos.TaskStatus) bool { return s.GetState().IsTerminal() })
}

func mustResources(tb testing.TB, s string) resources.Resources {
	tb.Helper()
	r, err := resources.Parse(s)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// commandTask is a shell command task.
func commandTask(tb testing.TB, id, command string) *mesos.TaskInfo {
	return &mesos.TaskInfo{
		Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)},
		Resources: mustResources(tb, "cpus:0.1;mem:32"),
		Command:   &mesos.CommandInfo{Value: proto.String(command), Shell: proto.Bool(true)},
	}
}

// commandTasks are n command tasks running command, named tag-0000 on.
func commandTasks(tb testing.TB, tag string, n int, command string) ([]string, []*mesos.TaskInfo) {
	var ids []string
	var tasks []*mesos.TaskInfo
	for i := range n {
		id := fmt.Sprintf("%s-%04d", tag, i)
		ids = append(ids, id)
		tasks = append(tasks, commandTask(tb, id, command))
	}
	return ids, tasks
}

// runCorral runs `corral run` to its end and returns its stdout, stderr and
// exit code.
func runCorral(tb testing.TB, args ...string) (stdout, stderr string, code int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), taskTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, corralBin(tb), append([]string{"run"}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		tb.Fatalf("corral run %v did not end within %v\nstdout:\n%s\nstderr:\n%s", args, taskTimeout, out.String(), errOut.String())
	}
	code = 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			tb.Fatalf("corral run: %v", err)
		}
		code = ee.ExitCode()
	}
	return out.String(), errOut.String(), code
}

// sandboxLine is the "Sandbox: <path>" corral run prints.
func sandboxLine(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if p, ok := strings.CutPrefix(line, "Sandbox: "); ok {
			return strings.TrimSpace(p)
		}
	}
	return ""
}

// processesOf lists the live processes whose command line or environment
// holds s, e.g. a container ID or a sandbox path, as "PID: command line".
func processesOf(s string) []string {
	var out []string
	for _, p := range testsupport.ProcessesWith(s) {
		out = append(out, p.PID+": "+p.Cmdline)
	}
	return out
}
