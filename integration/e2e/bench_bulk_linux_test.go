package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corral/corral/api/v1/mesos"
)

// BenchmarkBulk1000 submits 1000 `true` command tasks at once through the
// master to `corral local`'s agent (its default launcher) and times them to
// all TASK_FINISHED; the agent runs as many at a time as its resources
// hold. Beside it, interleaved in each iteration, the machine's floor for
// the same tasks (testdata/spawnfloor.c: clone into new pid, mount, ipc
// and uts namespaces, `sh -c true`, wait, one worker per core). It reports
// throughput against the floor, ACCEPT→TASK_RUNNING latency in the bulk,
// CPU per task, and whether every task's updates came exactly once each
// (STARTING, RUNNING, FINISHED). The scheduler (this test's process) is
// not in the CPU figures; corral local (master and agent) and everything
// its containers run are.
func BenchmarkBulk1000(b *testing.B) {
	prefix := rootTest(b)
	floor := buildFloor(b)
	c := startCluster(b, prefix)
	f := newFramework(b, c, "e2e-bench-bulk", nil)

	const n = 1000
	bulk := func(tag string, count int) (time.Duration, map[string]*history) {
		ids, tasks := commandTasks(b, tag, count, "true")
		start := time.Now()
		f.launch(tasks...)
		got := f.awaitTerminal(b, ids...)
		return time.Since(start), got
	}
	bulk("warmup", 100)
	pid := c.cmd.Process.Pid
	var took, floorTook, toRunning []time.Duration
	var selfCPU, childCPU, floorCPU time.Duration
	wrong, extra := 0, 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fw, fc := runFloor(b, floor, n)
		floorTook, floorCPU = append(floorTook, fw), floorCPU+fc
		self0, children0 := cpuTimes(pid)
		d, got := bulk(fmt.Sprintf("b%d", i), n)
		self1, children1 := cpuTimes(pid)
		selfCPU += self1 - self0
		childCPU += children1 - children0
		took = append(took, d)
		fw, fc = runFloor(b, floor, n)
		floorTook, floorCPU = append(floorTook, fw), floorCPU+fc
		f.mu.Lock()
		for id, h := range got {
			extra += h.resent
			want := []mesos.TaskState{mesos.TaskState_TASK_STARTING, mesos.TaskState_TASK_RUNNING, mesos.TaskState_TASK_FINISHED}
			if h.String() != (&history{states: want}).String() {
				wrong++
				if wrong <= 5 {
					b.Errorf("%s went %v, want %v once each", id, h, want)
				}
			}
			if acc, ok := f.accepted[id]; ok && !h.firstAt[mesos.TaskState_TASK_RUNNING].IsZero() {
				toRunning = append(toRunning, h.firstAt[mesos.TaskState_TASK_RUNNING].Sub(acc))
			}
		}
		f.mu.Unlock()
	}
	b.StopTimer()
	tasks := float64(n * b.N)
	med, floorMed := percentile(took, 50), percentile(floorTook, 50)
	rate, floorRate := float64(n)/med.Seconds(), float64(n)/floorMed.Seconds()
	b.ReportMetric(rate, "tasks/s")
	b.ReportMetric(floorRate, "floor-tasks/s")
	b.ReportMetric(rate/floorRate, "of-floor")
	b.ReportMetric(ms(percentile(toRunning, 50)), "accept-running-p50-ms")
	b.ReportMetric(ms(percentile(toRunning, 99)), "accept-running-p99-ms")
	b.ReportMetric(ms(selfCPU+childCPU)/tasks, "cpu-ms/task")
	b.ReportMetric(ms(floorCPU)/(2*tasks), "floor-cpu-ms/task")
	b.ReportMetric(float64(extra), "duplicate-updates")
	b.Logf("%d tasks at once → all TASK_FINISHED: median %.2f s (%.0f tasks/s) against the floor's %.2f s (%.0f tasks/s): %.2f× the floor; "+
		"ACCEPT→RUNNING p50 %.0f ms, p99 %.0f ms; CPU per task %.1f ms (corral local %.1f, containers %.1f; the floor's %.1f); %d updates delivered twice, %d tasks not STARTING→RUNNING→FINISHED",
		n, med.Seconds(), rate, floorMed.Seconds(), floorRate, rate/floorRate, ms(percentile(toRunning, 50)), ms(percentile(toRunning, 99)),
		ms(selfCPU+childCPU)/tasks, ms(selfCPU)/tasks, ms(childCPU)/tasks, ms(floorCPU)/(2*tasks), extra, wrong)
}

// buildFloor compiles testdata/spawnfloor.c (the benchmark is skipped
// without a C compiler).
func buildFloor(tb testing.TB) string {
	tb.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		tb.Skip("no C compiler for the floor program")
	}
	out := filepath.Join(tb.TempDir(), "spawnfloor")
	if msg, err := exec.Command(cc, "-O2", "-pthread", "-o", out, "testdata/spawnfloor.c").CombinedOutput(); err != nil {
		tb.Fatalf("building the floor: %v\n%s", err, msg)
	}
	return out
}

// runFloor runs the floor for n tasks, one worker per core, and returns
// its wall time and the CPU time of it and its tasks.
func runFloor(tb testing.TB, floor string, n int) (wall, cpu time.Duration) {
	tb.Helper()
	cmd := exec.Command(floor, strconv.Itoa(n), strconv.Itoa(runtime.NumCPU()))
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("floor: %v", err)
	}
	secs, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		tb.Fatalf("floor printed %q: %v", out, err)
	}
	// wait4's usage of the floor includes the tasks it waited for.
	return time.Duration(secs * float64(time.Second)), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}
