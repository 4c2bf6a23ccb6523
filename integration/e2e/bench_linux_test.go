package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/testsupport"
)

// BenchmarkRunToFinished times `corral run` from process start to the
// TASK_FINISHED line it prints, 20 runs per iteration against a cluster
// already up, and reports their median and p99.
func BenchmarkRunToFinished(b *testing.B) {
	prefix := rootTest(b)
	c := startCluster(b, prefix)
	bin := corralBin(b)

	timeRun(b, c, bin, "warmup") // page cache, first framework
	const runs = 20
	var finished, exited []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range runs {
			f, e := timeRun(b, c, bin, fmt.Sprintf("bench-%d-%d", i, j))
			finished = append(finished, f)
			exited = append(exited, e)
		}
	}
	b.StopTimer()
	med, p99 := percentile(finished, 50), percentile(finished, 99)
	b.ReportMetric(ms(med), "median-ms")
	b.ReportMetric(ms(p99), "p99-ms")
	b.ReportMetric(ms(percentile(exited, 50)), "exit-median-ms")
	b.Logf("corral run start → TASK_FINISHED over %d runs: median %.1f ms, p99 %.1f ms, min %.1f ms, max %.1f ms; start → exit median %.1f ms",
		len(finished), ms(med), ms(p99), ms(slices.Min(finished)), ms(slices.Max(finished)), ms(percentile(exited, 50)))
}

// timeRun runs `corral run ... 'echo hello'` and returns the time from its
// start to the TASK_FINISHED line and to its exit.
func timeRun(b *testing.B, c *cluster, bin, name string) (finished, exited time.Duration) {
	b.Helper()
	cmd := exec.Command(bin, "run", "--master", c.master, "--name", name, "--command", "echo hello", "--resources", "cpus:0.1;mem:32")
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	var errOut strings.Builder
	cmd.Stderr = &errOut
	timer := time.AfterFunc(taskTimeout, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if strings.HasPrefix(sc.Text(), "TASK_FINISHED") && finished == 0 {
			finished = time.Since(start)
		}
	}
	err = cmd.Wait()
	exited = time.Since(start)
	if err != nil || finished == 0 {
		b.Fatalf("corral run %s: %v (TASK_FINISHED seen: %v)\nstdout:\n%s\nstderr:\n%s", name, err, finished != 0, strings.Join(lines, "\n"), errOut.String())
	}
	return finished, exited
}

// BenchmarkBatch100 submits 100 command tasks at once (one ACCEPT) and
// times them to all TASK_FINISHED.
func BenchmarkBatch100(b *testing.B) {
	prefix := rootTest(b)
	c := startCluster(b, prefix)
	f := newFramework(b, c, "e2e-bench-batch", nil)

	const n = 100
	resent := 0
	batch := func(tag string) time.Duration {
		ids, tasks := commandTasks(b, tag, n, "true")
		need := resources.Resources{}
		for _, t := range tasks {
			r, _ := resources.New(t.GetResources())
			need = need.Plus(r)
		}
		// Start the clock with the whole batch on offer, as a scheduler
		// holding offers would.
		f.waitOffered(b, need)
		start := time.Now()
		f.launch(tasks...)
		got := f.awaitTerminal(b, ids...)
		took := time.Since(start)
		for _, id := range ids {
			if h := got[id]; h.last.GetState() != mesos.TaskState_TASK_FINISHED {
				b.Fatalf("%s went %v %v %q, want TASK_FINISHED", id, h, h.last.GetReason(), h.last.GetMessage())
			}
			resent += got[id].resent
		}
		return took
	}
	batch("warmup")
	resent = 0
	var took []time.Duration
	pid := c.cmd.Process.Pid
	self0, children0 := cpuTimes(pid)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		took = append(took, batch(fmt.Sprintf("b%d", i)))
	}
	b.StopTimer()
	self1, children1 := cpuTimes(pid)
	tasks := float64(n * b.N)
	med := percentile(took, 50)
	b.ReportMetric(ms(med), "batch-ms")
	b.ReportMetric(float64(n)/med.Seconds(), "tasks/s")
	b.ReportMetric(ms(self1-self0)/tasks, "local-cpu-ms/task")
	b.ReportMetric(ms(children1-children0)/tasks, "container-cpu-ms/task")
	// Delivered again though nothing was lost (floor: 0).
	b.ReportMetric(float64(resent), "resent-updates")
	b.Logf("%d tasks submitted at once → all TASK_FINISHED: median %.0f ms over %d batches (%.0f tasks/s); CPU per task: corral local %.1f ms, container (corral-init + task) %.1f ms; %d updates delivered twice (floor 0)",
		n, ms(med), len(took), float64(n)/med.Seconds(), ms(self1-self0)/tasks, ms(children1-children0)/tasks, resent)
}

// cpuTimes is the user+system CPU time of a process and of its reaped
// children (for `corral local`: every container's init and, through it, the
// task), from /proc/PID/stat.
func cpuTimes(pid int) (self, children time.Duration) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return 0, 0
	}
	tick := func(k int) time.Duration {
		v, _ := strconv.ParseInt(f[k], 10, 64)
		return time.Duration(v) * time.Second / 100 // USER_HZ
	}
	// After ")": state is field 3 of stat, so utime (14) is f[11].
	return tick(11) + tick(12), tick(13) + tick(14)
}

// waitOffered waits until the held offers hold need.
func (f *framework) waitOffered(tb testing.TB, need resources.Resources) {
	tb.Helper()
	deadline := time.Now().Add(taskTimeout)
	for {
		f.mu.Lock()
		var pool resources.Resources
		for _, o := range f.offers {
			r, _ := resources.New(o.GetResources())
			pool = pool.Plus(r)
		}
		f.mu.Unlock()
		if pool.Contains(need) {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("offers hold %v after %v, want %v", pool, taskTimeout, need)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkContainerFootprint measures what one running command task
// costs: processes per container and their memory (corral-init and the
// task), and the agent's own growth per container.
func BenchmarkContainerFootprint(b *testing.B) {
	prefix := rootTest(b)
	c := startCluster(b, prefix)
	f := newFramework(b, c, "e2e-bench-footprint", nil)
	agentPID := strconv.Itoa(c.cmd.Process.Pid)

	const n = 20
	var procs, initRSS, initPSS, taskRSS, agentDelta float64
	for i := 0; i < b.N; i++ {
		agentBefore := memKB(agentPID, "status", "VmRSS:")
		ids, tasks := commandTasks(b, fmt.Sprintf("fp-%d", i), n, "exec sleep 600")
		f.launch(tasks...)
		running := f.await(b, ids, func(s *mesos.TaskStatus) bool {
			return s.GetState() == mesos.TaskState_TASK_RUNNING || s.GetState().IsTerminal()
		})
		var cids []string
		for _, id := range ids {
			s := running[id].last
			if s.GetState() != mesos.TaskState_TASK_RUNNING {
				b.Fatalf("%s went %v, want TASK_RUNNING", id, running[id])
			}
			cids = append(cids, s.GetContainerStatus().GetContainerId().GetValue())
		}
		for _, cid := range cids {
			var ps []string
			deadline := time.Now().Add(taskTimeout)
			for { // the task's exec of sleep may lag RUNNING a little
				ps = processesOf(cid)
				if slices.ContainsFunc(ps, func(p string) bool { return strings.Contains(p, ": sleep 600") }) {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("container %s: no sleep process: %v", cid, ps)
				}
				time.Sleep(10 * time.Millisecond)
			}
			procs += float64(len(ps))
			for _, p := range ps {
				pid, cmd, _ := strings.Cut(p, ": ")
				if strings.HasPrefix(cmd, "corral-init") {
					initRSS += memKB(pid, "status", "VmRSS:")
					initPSS += memKB(pid, "smaps_rollup", "Pss:")
				} else {
					taskRSS += memKB(pid, "status", "VmRSS:")
				}
			}
		}
		agentDelta += memKB(agentPID, "status", "VmRSS:") - agentBefore
		for _, id := range ids {
			f.kill(b, id)
		}
		for id, h := range f.awaitTerminal(b, ids...) {
			if h.last.GetState() != mesos.TaskState_TASK_KILLED {
				b.Errorf("%s went %v, want TASK_KILLED", id, h)
			}
		}
	}
	per := float64(b.N * n)
	b.ReportMetric(procs/per, "procs/container")
	b.ReportMetric(initRSS/per, "init-RSS-KB")
	b.ReportMetric(initPSS/per, "init-PSS-KB")
	b.ReportMetric(agentDelta/per, "agent-KB/container")
	b.Logf("per running command task: %.1f processes (corral-init + the task); corral-init RSS %.0f KB (PSS %.0f KB), the task itself (sleep) RSS %.0f KB; agent RSS grew %.0f KB per container",
		procs/per, initRSS/per, initPSS/per, taskRSS/per, agentDelta/per)
}

// memKB reads a "Key: N kB" line of /proc/PID/<file>.
// memKB is a /proc figure in kB, 0 when the process is gone.
func memKB(pid, file, key string) float64 {
	kb, _ := testsupport.ProcKB(pid, file, key)
	return kb
}

func percentile(ds []time.Duration, p float64) time.Duration { return testsupport.Percentile(ds, p) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
