package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/v1/mesos"
	sched "github.com/corral/corral/driver/scheduler"
	"github.com/corral/corral/internal/testsupport"
)

// node is a master and an agent as separate `corral` processes, so that the
// agent can be killed (-9) and restarted under a master that stays up, with
// its boot id read from a file the test can change (a simulated reboot).
type node struct {
	tb        testing.TB
	bin       string
	prefix    string
	dir       string
	master    string // 127.0.0.1:port
	masterCmd *proc
	agentPort int
	workDir   string
	bootID    string // the file --boot_id_path names
	cgRoot    string // --cgroups_root
	agentArgs []string
	agent     *proc
	starts    int
}

// proc is one process the node started.
type proc struct {
	cmd     *exec.Cmd
	log     string
	exited  chan struct{}
	waitErr error
}

func startProc(tb testing.TB, bin, logPath string, args ...string) *proc {
	tb.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	defer logf.Close()
	p := &proc{cmd: exec.Command(bin, args...), log: logPath, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("starting %s %v: %v", bin, args, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	return p
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// kill9 kills the process outright and waits until it is gone.
func (p *proc) kill9() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// term stops the process with SIGTERM; an error if it hangs or fails.
func (p *proc) term() error {
	if !p.running() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if p.waitErr != nil {
			return fmt.Errorf("exited with %v after SIGTERM", p.waitErr)
		}
		return nil
	case <-time.After(stopTimeout):
		p.kill9()
		return fmt.Errorf("ignored SIGTERM for %v; killed", stopTimeout)
	}
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 12000 {
		b = b[len(b)-12000:]
	}
	return string(b)
}

// startNode starts a master and an agent (launcher "linux" or "posix"); the
// agent's extra flags are appended to every start. Everything carries
// prefix: the work dir (and so every sandbox and task environment) and the
// cgroups root. In a cleanup the node's tasks are destroyed and both
// processes stopped; register testsupport.CheckLeaks before.
func startNode(tb testing.TB, prefix, launcher string, extra ...string) *node {
	tb.Helper()
	needsRoot(tb)
	n := &node{tb: tb, bin: corralBin(tb), prefix: prefix, dir: tb.TempDir()}
	n.workDir = filepath.Join(n.dir, prefix+"work")
	n.bootID = filepath.Join(n.dir, "boot_id")
	n.cgRoot = prefix + "root"
	n.setBootID(tb, "")
	port := testsupport.FreePort(tb)
	n.master = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	n.masterCmd = startProc(tb, n.bin, filepath.Join(n.dir, "master.log"), "master", "--port", strconv.Itoa(port),
		"--allocation_interval", "100ms", "--logging_level", "INFO")
	n.agentPort = stablePort(tb)
	n.agentArgs = append([]string{"agent", "--master", n.master, "--work_dir", n.workDir, "--port", strconv.Itoa(n.agentPort),
		"--resources", agentResources, "--launcher", launcher, "--cgroups_root", n.cgRoot,
		"--boot_id_path", n.bootID, "--registration_backoff_factor", "100ms", "--logging_level", "INFO"}, extra...)
	tb.Cleanup(n.cleanup)
	n.startAgent(tb)
	return n
}

// stablePort is a free port outside the kernel's ephemeral range: an agent
// restarted on it must find it free, and an ephemeral port can be taken
// meanwhile as the local end of any outgoing connection.
func stablePort(tb testing.TB) int {
	tb.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				low = v
			}
		}
	}
	for attempt := 0; attempt < 1000; attempt++ {
		port := 10000 + int(time.Now().UnixNano()%int64(max(low-10000, 1)))
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			ln.Close()
			return port
		}
	}
	tb.Fatal("no free port below the ephemeral range")
	return 0
}

// setBootID writes the boot id the agent reads: the kernel's, or id.
func (n *node) setBootID(tb testing.TB, id string) {
	tb.Helper()
	if id == "" {
		b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
		if err != nil {
			tb.Fatal(err)
		}
		id = strings.TrimSpace(string(b))
	}
	if err := os.WriteFile(n.bootID, []byte(id+"\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// startAgent starts the agent (again) and waits until it has recovered
// and registered with the master.
func (n *node) startAgent(tb testing.TB, extra ...string) {
	tb.Helper()
	n.starts++
	args := append(append([]string(nil), n.agentArgs...), extra...)
	n.agent = startProc(tb, n.bin, filepath.Join(n.dir, fmt.Sprintf("agent-%d.log", n.starts)), args...)
	deadline := time.Now().Add(startTimeout)
	for {
		var st agentState
		err := n.agentJSON("/state", &st)
		if err == nil && st.Recovery.Done && st.MasterHostname != "" && st.ID != "" {
			return
		}
		if !n.agent.running() {
			diag := ""
			if strings.Contains(n.agent.tail(), "address already in use") {
				out, _ := exec.Command("ss", "-tanpe", "sport", "= :"+strconv.Itoa(n.agentPort)).CombinedOutput()
				diag = "\nsockets on the port:\n" + string(out)
			}
			tb.Fatalf("agent exited: %v\n%s%s", n.agent.waitErr, n.agent.tail(), diag)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("agent not registered after %v (last: %v)\n%s", startTimeout, err, n.agent.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// restartAgent kills the agent with SIGKILL and starts it again.
func (n *node) restartAgent(tb testing.TB, extra ...string) {
	tb.Helper()
	n.agent.kill9()
	n.startAgent(tb, extra...)
}

type agentState struct {
	ID             string `json:"id"`
	MasterHostname string `json:"master_hostname"`
	Recovery       struct {
		Done       bool    `json:"done"`
		Duration   float64 `json:"duration_secs"`
		Discarded  string  `json:"discarded"`
		Running    int     `json:"containers_running"`
		Ended      int     `json:"containers_ended"`
		Relaunched int     `json:"containers_relaunched"`
		Gone       int     `json:"tasks_gone"`
		Pending    int     `json:"pending_updates"`
	} `json:"recovery"`
	StatusUpdates struct {
		Pending int      `json:"pending"`
		Tasks   []string `json:"tasks"`
	} `json:"status_updates"`
	Frameworks []struct {
		ID        string `json:"id"`
		Executors []struct {
			ID        string `json:"id"`
			Container string `json:"container"`
			Tasks     []struct {
				ID    string `json:"id"`
				State string `json:"state"`
			} `json:"tasks"`
		} `json:"executors"`
	} `json:"frameworks"`
}

func (n *node) agentJSON(path string, v any) error {
	return testsupport.GetJSON("http://127.0.0.1:"+strconv.Itoa(n.agentPort)+path, v)
}

func (n *node) masterJSON(path string, v any) error {
	return testsupport.GetJSON("http://"+n.master+path, v)
}

// agentID is the ID the agent runs under now.
func (n *node) agentID(tb testing.TB) string {
	tb.Helper()
	var st agentState
	if err := n.agentJSON("/state", &st); err != nil {
		tb.Fatalf("agent /state: %v", err)
	}
	return st.ID
}

// taskStates lists the tasks the agent runs, by ID, with their states.
func (n *node) taskStates(tb testing.TB) map[string]string {
	tb.Helper()
	var st agentState
	if err := n.agentJSON("/state", &st); err != nil {
		tb.Fatalf("agent /state: %v", err)
	}
	out := map[string]string{}
	for _, fw := range st.Frameworks {
		for _, ex := range fw.Executors {
			for _, t := range ex.Tasks {
				out[t.ID] = t.State
			}
		}
	}
	return out
}

func (n *node) recovery(tb testing.TB) agentState {
	tb.Helper()
	var st agentState
	if err := n.agentJSON("/state", &st); err != nil {
		tb.Fatalf("agent /state: %v", err)
	}
	return st
}

// runtimeDir is the agent's --runtime_dir (its default).
func (n *node) runtimeDir() string { return filepath.Join(n.workDir, "run") }

// cleanup destroys what the node still runs and stops it: a stopping
// agent leaves checkpointed containers running, so it is restarted with
// --recover=cleanup (which destroys them) and stopped again.
func (n *node) cleanup() {
	tb := n.tb
	if tb.Failed() {
		if keep := os.Getenv("CORRAL_KEEP_LOGS"); keep != "" {
			dst := filepath.Join(keep, n.prefix+"logs")
			if err := os.MkdirAll(dst, 0o755); err == nil {
				logs, _ := filepath.Glob(filepath.Join(n.dir, "*.log"))
				for _, l := range logs {
					if b, err := os.ReadFile(l); err == nil {
						_ = os.WriteFile(filepath.Join(dst, filepath.Base(l)), b, 0o644)
					}
				}
				tb.Logf("logs kept in %s", dst)
			}
		}
		tb.Logf("master log:\n%s", n.masterCmd.tail())
		if n.agent != nil {
			tb.Logf("agent log (start %d):\n%s", n.starts, n.agent.tail())
		}
		logSandboxStderr(tb, n.workDir)
	}
	if n.agent != nil && n.agent.running() {
		if err := n.agent.term(); err != nil {
			tb.Errorf("stopping the agent: %v", err)
		}
	}
	if len(testsupport.Leaks(n.prefix)) > 0 || n.agent == nil || !n.agent.running() {
		n.starts++
		p := startProc(tb, n.bin, filepath.Join(n.dir, fmt.Sprintf("agent-%d-cleanup.log", n.starts)),
			append(append([]string(nil), n.agentArgs...), "--recover=cleanup")...)
		deadline := time.Now().Add(startTimeout)
		for p.running() && time.Now().Before(deadline) {
			var st agentState
			if err := n.agentJSON("/state", &st); err == nil && st.Recovery.Done {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := p.term(); err != nil {
			tb.Errorf("stopping the clean-up agent: %v\n%s", err, p.tail())
		}
	}
	if err := n.masterCmd.term(); err != nil {
		tb.Errorf("stopping the master: %v", err)
	}
	testsupport.RemoveCgroupsRoot(tb, n.cgRoot)
}

// ckptFramework is a framework that checkpoints (its tasks survive agent
// restarts), built on the e2e framework helper; with explicit acks the test
// acknowledges updates itself.
func ckptFramework(tb testing.TB, master, name string, explicitAcks, partitionAware bool) *framework {
	tb.Helper()
	info := &mesos.FrameworkInfo{
		User: proto.String("root"), Name: proto.String(name), FailoverTimeout: proto.Float64(0),
		Checkpoint: proto.Bool(true),
	}
	if partitionAware {
		info.Capabilities = append(info.Capabilities, &mesos.FrameworkInfo_Capability{Type: mesos.FrameworkInfo_Capability_PARTITION_AWARE.Enum()})
	}
	return subscribeFramework(tb, sched.Config{Master: master, Framework: info, ExplicitAcks: explicitAcks})
}

// plainFramework is a framework that does not checkpoint.
func plainFramework(tb testing.TB, master, name string) *framework {
	return newFramework(tb, &cluster{master: master}, name, nil)
}

// next returns the next status update (hang protection only).
func (f *framework) next(tb testing.TB) *mesos.TaskStatus {
	tb.Helper()
	select {
	case s := <-f.nextUpdate():
		return s
	case err := <-f.runErr:
		f.runErr <- err
		tb.Fatalf("scheduler driver ended: %v", err)
	case <-time.After(taskTimeout):
		tb.Fatalf("no status update within %v", taskTimeout)
	}
	return nil
}

// ack acknowledges a status (explicit-ack frameworks).
func (f *framework) ack(tb testing.TB, s *mesos.TaskStatus) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.d.AcknowledgeStatusUpdate(ctx, s); err != nil {
		tb.Fatalf("acknowledging %v of %s: %v", s.GetState(), s.GetTaskId().GetValue(), err)
	}
}

// running waits until the task is TASK_RUNNING and returns its container.
func (f *framework) running(tb testing.TB, id string) string {
	tb.Helper()
	h := f.await(tb, []string{id}, func(s *mesos.TaskStatus) bool {
		return s.GetState() == mesos.TaskState_TASK_RUNNING || s.GetState().IsTerminal()
	})[id]
	if h.last.GetState() != mesos.TaskState_TASK_RUNNING {
		tb.Fatalf("task %s went %v (%v %q), want TASK_RUNNING", id, h, h.last.GetReason(), h.last.GetMessage())
	}
	return h.last.GetContainerStatus().GetContainerId().GetValue()
}

// tracker follows many tasks' updates at once (dedup by uuid).
type tracker struct {
	mu      sync.Mutex
	tasks   map[string]*history
	changed chan struct{}
}

func newTracker() *tracker {
	return &tracker{tasks: map[string]*history{}, changed: make(chan struct{}, 1)}
}

// feed records updates from f until ctx ends.
func (tr *tracker) feed(ctx context.Context, f *framework) {
	for _, s := range f.backlog {
		tr.record(s)
	}
	f.backlog = nil
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-f.updates:
			tr.record(s)
		}
	}
}

func (tr *tracker) record(s *mesos.TaskStatus) {
	if s.GetReason() == mesos.TaskStatus_REASON_RECONCILIATION && len(s.GetUuid()) == 0 {
		// The master's answer to a kill sent again (or a reconciliation):
		// it restates where the task is, it is not a transition.
		return
	}
	tr.mu.Lock()
	id := s.GetTaskId().GetValue()
	h := tr.tasks[id]
	if h == nil {
		h = &history{}
		tr.tasks[id] = h
	}
	u := string(s.GetUuid())
	dup := false
	for _, v := range h.uuids {
		dup = dup || (u != "" && v == u)
	}
	if !dup {
		if u != "" {
			h.uuids = append(h.uuids, u)
		}
		h.states = append(h.states, s.GetState())
		h.last = s
	}
	tr.mu.Unlock()
	select {
	case tr.changed <- struct{}{}:
	default:
	}
}

// snapshot copies the tracked histories.
func (tr *tracker) snapshot() map[string]history {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := make(map[string]history, len(tr.tasks))
	for id, h := range tr.tasks {
		out[id] = history{states: append([]mesos.TaskState(nil), h.states...), last: h.last, uuids: append([]string(nil), h.uuids...)}
	}
	return out
}

// waitUntil waits until cond holds on the tracked histories.
func (tr *tracker) waitUntil(tb testing.TB, what string, cond func(map[string]history) bool) {
	tb.Helper()
	deadline := time.NewTimer(taskTimeout)
	defer deadline.Stop()
	for !cond(tr.snapshot()) {
		select {
		case <-tr.changed:
		case <-time.After(100 * time.Millisecond):
		case <-deadline.C:
			tb.Fatalf("after %v still waiting for %s", taskTimeout, what)
		}
	}
}

// logSandboxStderr logs the tail of every sandbox's stderr under workDir:
// a container init's own failure is told there.
func logSandboxStderr(tb testing.TB, workDir string) {
	files, _ := filepath.Glob(filepath.Join(workDir, "slaves", "*", "frameworks", "*", "executors", "*", "runs", "*", "stderr"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		if len(b) > 2000 {
			b = b[len(b)-2000:]
		}
		tb.Logf("%s:\n%s", f, b)
	}
}
