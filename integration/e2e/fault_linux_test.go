package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/testsupport"
)

// faultIterations is how many kill -9s each fault-injection run does: a
// handful by default, CORRAL_FAULT_ITERATIONS for the long suite (≥ 50).
func faultIterations(tb testing.TB, def int) int {
	if v := os.Getenv("CORRAL_FAULT_ITERATIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			tb.Fatalf("CORRAL_FAULT_ITERATIONS=%q is not a positive number", v)
		}
		return n
	}
	return def
}

// faultSeed is CORRAL_FAULT_SEED when set (to replay a failure), else new.
func faultSeed(tb testing.TB) uint64 {
	if v := os.Getenv("CORRAL_FAULT_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			tb.Fatalf("CORRAL_FAULT_SEED=%q: %v", v, err)
		}
		return s
	}
	return uint64(time.Now().UnixNano())
}

// faultTask is one task of the fault-injection run and how it must end.
type faultTask struct {
	id   string
	base string // the first launch's ID
	gen  int    // launches lost in flight before this one
	cmd  string
	// custom: run by integration/testexecutor (an executor of its own,
	// named after the task's first ID) instead of as a command task.
	custom bool
	// relaunched: lost in flight and launched again as another task.
	relaunched bool
	want       mesos.TaskState
	msg        string // in the terminal status' message
	long       bool   // runs until killed
	kill       bool   // the scheduler kills it
	iter       int
	since      time.Time
}

// TestRecoverFaultInjection kills the agent with SIGKILL at random moments
// while tasks launch, run, finish, fail and are killed, restarts it each
// time, and checks that every task reaches the framework in the state a
// run without faults gives (each terminal update once: one uuid) and that
// no process outlives its task. A task whose launch was still on its way
// from the master when the agent died never reached it, and the master
// reports it TASK_LOST with REASON_AGENT_RESTARTED (or, for an ACCEPT of an
// offer rescinded when the agent left, REASON_INVALID_OFFERS) — Mesos'
// behaviour for a launch lost in flight; such a task must have no other
// update, and the
// test launches it again under a new ID, as a scheduler would. The seed
// is logged; CORRAL_FAULT_SEED replays a run and CORRAL_FAULT_ITERATIONS
// sets its length.
func TestRecoverFaultInjection(t *testing.T) {
	for _, tc := range []struct {
		launcher string
		iters    int
	}{{"linux", 6}, {"posix", 3}} {
		t.Run(tc.launcher, func(t *testing.T) {
			prefix := rootTest(t)
			seed := faultSeed(t)
			iters := faultIterations(t, tc.iters)
			t.Logf("fault injection: launcher %s, seed %d (CORRAL_FAULT_SEED), %d iterations", tc.launcher, seed, iters)
			rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
			// Executors get all the time they need to re-subscribe: the
			// timeout itself is another test's.
			n := startNode(t, prefix, tc.launcher, "--executor_reregistration_timeout", "1m",
				"--status_update_retry_interval_min", "500ms", "--status_update_retry_interval_max", "2s")
			f := ckptFramework(t, n.master, "fault-injection", false, false)
			tr := newTracker()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go tr.feed(ctx, f)

			var all []*faultTask
			lostInFlight := 0
			for it := range iters {
				var batch []*faultTask
				for j := range 2 + rng.IntN(5) {
					ft := &faultTask{id: fmt.Sprintf("i%03d-t%d", it, j), iter: it}
					ft.base = ft.id
					var cmd string
					switch rng.IntN(5) {
					case 0:
						cmd, ft.want = "exit 0", mesos.TaskState_TASK_FINISHED
					case 1:
						cmd, ft.want = fmt.Sprintf("sleep 0.%d", rng.IntN(5)), mesos.TaskState_TASK_FINISHED
					case 2:
						cmd, ft.want, ft.msg = fmt.Sprintf("sleep 0.%d; exit 3", rng.IntN(5)), mesos.TaskState_TASK_FAILED, "status 3"
					default:
						cmd, ft.want, ft.long = "sleep 1000", mesos.TaskState_TASK_KILLED, true
						ft.kill = rng.IntN(2) == 0
					}
					ft.cmd = cmd
					// A third of the tasks go through a custom executor.
					ft.custom = rng.IntN(3) == 0
					batch = append(batch, ft)
					f.launch(ft.taskInfo(t))
				}
				all = append(all, batch...)
				// Kills at random moments, some before the crash, some
				// perhaps racing it.
				for _, ft := range batch {
					if ft.kill {
						ft.since = time.Now().Add(time.Duration(rng.IntN(400)) * time.Millisecond)
					}
				}
				crashAfter := time.Duration(rng.IntN(600)) * time.Millisecond
				crashAt := time.Now().Add(crashAfter)
				for time.Now().Before(crashAt) {
					killDue(t, f, tr, all)
					time.Sleep(10 * time.Millisecond)
				}
				n.restartAgent(t)
				all = settle(t, f, tr, all, prefix)
				t.Logf("iteration %d: %d tasks, kill -9 %v after their launch", it, len(batch), crashAfter)
			}
			// The end: every task still running is killed.
			for _, ft := range all {
				if ft.long && !ft.kill {
					ft.kill, ft.since = true, time.Now()
				}
			}
			all = settle(t, f, tr, all, prefix)
			// Every update the agent sent was acknowledged (the driver acks
			// each): none is left to resend.
			deadline := time.Now().Add(taskTimeout)
			for {
				st := n.recovery(t)
				if st.StatusUpdates.Pending == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the agent still holds %d unacknowledged updates, of %v", st.StatusUpdates.Pending, st.StatusUpdates.Tasks)
				}
				time.Sleep(50 * time.Millisecond)
			}

			hs := tr.snapshot()
			for _, ft := range all {
				h := hs[ft.id]
				var terminals []mesos.TaskState
				for _, s := range h.states {
					if s.IsTerminal() {
						terminals = append(terminals, s)
					}
				}
				if len(terminals) != 1 || !(h.states[len(h.states)-1]).IsTerminal() {
					t.Errorf("%s went %v: want exactly one terminal update, last", ft.id, &h)
					continue
				}
				s := h.last
				if isLostInFlight(&h) {
					// Launched again under another ID, checked on its own.
					lostInFlight++
					continue
				}
				if s.GetState() != ft.want || !strings.Contains(s.GetMessage(), ft.msg) {
					t.Errorf("%s went %v, ended %v %v %q; want %v %q", ft.id, &h, s.GetState(), s.GetReason(), s.GetMessage(), ft.want, ft.msg)
				}
			}
			t.Logf("fault injection: %d kill -9s, %d tasks, %d launches lost in flight (TASK_LOST from the master), seed %d",
				iters, len(all), lostInFlight, seed)
		})
	}
}

// taskInfo is the task to launch: a command task, or a task of a custom
// executor of its own.
func (ft *faultTask) taskInfo(tb testing.TB) *mesos.TaskInfo {
	if !ft.custom {
		return commandTask(tb, ft.id, ft.cmd)
	}
	return executorTask(tb, ft.id, ft.cmd, testExecutorInfo(tb, "ex-"+ft.id))
}

// isLostInFlight: the master's TASK_LOST for a launch the agent never got —
// sent on the link to an agent that died, or on an offer rescinded when the
// agent went away (REASON_INVALID_OFFERS) — and nothing from the agent.
func isLostInFlight(h *history) bool {
	r := h.last.GetReason()
	return len(h.states) == 1 && h.last.GetState() == mesos.TaskState_TASK_LOST && h.last.GetSource() == mesos.TaskStatus_SOURCE_MASTER &&
		(r == mesos.TaskStatus_REASON_AGENT_RESTARTED || r == mesos.TaskStatus_REASON_INVALID_OFFERS)
}

// killDue kills the tasks whose kill is due and that are running; a kill
// lost with the agent is simply sent again later, as schedulers do.
func killDue(t *testing.T, f *framework, tr *tracker, all []*faultTask) {
	hs := tr.snapshot()
	for _, ft := range all {
		if !ft.kill || time.Now().Before(ft.since) {
			continue
		}
		h, ok := hs[ft.id]
		if !ok || h.last.GetState().IsTerminal() || !slices.Contains(h.states, mesos.TaskState_TASK_RUNNING) {
			continue
		}
		f.kill(t, ft.id)
		ft.since = time.Now().Add(time.Second) // again if it is still running then
	}
}

// settle waits until every task has reached where it must be — terminal,
// or running if it runs until killed and no kill is due — re-sending due
// kills and launching again, as a scheduler does, what was lost in flight;
// then it checks that no process of an ended task is left. It returns the
// tasks with the relaunches added.
func settle(t *testing.T, f *framework, tr *tracker, all []*faultTask, prefix string) []*faultTask {
	t.Helper()
	deadline := time.Now().Add(taskTimeout)
	for {
		killDue(t, f, tr, all)
		hs := tr.snapshot()
		var waiting []string
		for _, ft := range all {
			h, ok := hs[ft.id]
			if ok && isLostInFlight(&h) && !ft.relaunched {
				ft.relaunched = true
				again := *ft
				again.relaunched = false
				again.gen++
				again.id = fmt.Sprintf("%s-r%d", ft.base, again.gen)
				if again.kill {
					again.since = time.Now()
				}
				all = append(all, &again)
				f.launch(again.taskInfo(t))
				continue
			}
			switch {
			case ok && h.last.GetState().IsTerminal():
			case ok && ft.long && !ft.kill && h.last.GetState() == mesos.TaskState_TASK_RUNNING:
			default:
				desc := "no update"
				if ok {
					desc = h.String()
				}
				waiting = append(waiting, ft.id+" ("+desc+")")
			}
		}
		if len(waiting) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v still waiting for %s", taskTimeout, strings.Join(waiting, ", "))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// No process of a task that ended may be left; the running ones are
	// the long tasks not yet killed.
	live := map[string]bool{}
	hs := tr.snapshot()
	for id, h := range hs {
		if !h.last.GetState().IsTerminal() {
			live[id] = true
		}
	}
	var stray []string
	deadline = time.Now().Add(taskTimeout)
	for {
		stray = stray[:0]
		for _, p := range taskProcesses(prefix) {
			if !live[p.task] {
				desc := p.String()
				if h, ok := hs[p.task]; ok {
					desc += fmt.Sprintf(" (task went %v, last %v %v from %v: %q)", h.String(), h.last.GetState(), h.last.GetReason(), h.last.GetSource(), h.last.GetMessage())
				}
				stray = append(stray, desc)
			}
		}
		if len(stray) == 0 {
			return all
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, processes of ended tasks are still there: %s", taskTimeout, strings.Join(stray, "; "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type taskProcess struct {
	pid, task, cmdline, container string
}

func (p taskProcess) String() string {
	return fmt.Sprintf("pid %s task %s container %s: %s", p.pid, p.task, p.container, p.cmdline)
}

// taskProcesses lists every live process whose environment carries prefix
// (task processes and their container inits) with its MESOS_TASK_ID.
func taskProcesses(prefix string) []taskProcess {
	var out []taskProcess
	for _, proc := range testsupport.ProcessesWith(prefix) {
		pid, env := proc.PID, proc.Environ
		if !bytes.Contains(env, []byte(prefix)) {
			continue // the agent's own processes name it on their command line
		}
		p := taskProcess{pid: pid, task: "?"}
		executor := ""
		for _, kv := range bytes.Split(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, []byte("MESOS_TASK_ID=")); ok {
				p.task = string(v)
			}
			if v, ok := bytes.CutPrefix(kv, []byte("MESOS_CONTAINER_ID=")); ok {
				p.container = string(v)
			}
			if v, ok := bytes.CutPrefix(kv, []byte("MESOS_EXECUTOR_ID=")); ok {
				executor = string(v)
			}
		}
		if p.task == "?" && strings.HasPrefix(executor, "ex-") {
			// A custom executor (or its init): it outlives its task until
			// the framework's teardown; the final leak check covers it.
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		p.cmdline = strings.TrimSpace(string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
		out = append(out, p)
	}
	return out
}
