package agent

import (
	"fmt"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/testsupport"
)

// BenchmarkAgentLaunch is the agent's own cost per command task, on the
// fake containerizer (the task exits as it is launched): 1000 tasks sent
// by 10 goroutines sending 100 each (as the master's RUN_TASK calls come in), timed until every task's end has been
// forwarded. It reports how long goroutines waited on mutexes per task
// (all of the agent's locks, runtime/metrics): the cost of the agent's
// locking under its most concurrent load, with no container work to hide
// it.
func BenchmarkAgentLaunch(b *testing.B) {
	for _, ckpt := range []bool{false, true} {
		b.Run(fmt.Sprintf("checkpoint=%v", ckpt), func(b *testing.B) {
			const launches, perLaunch = 10, 100
			cz := newFakeContainers()
			cz.exitAtOnce = true
			ta := newTestAgentIn(b, b.TempDir(), cz, false)
			fwInfo := fakeFramework(ckpt)
			sample := []metrics.Sample{{Name: "/sync/mutex/wait/total:seconds"}}
			var wait float64
			syncs0 := ta.store.Syncs()
			var took []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				metrics.Read(sample)
				wait0 := sample[0].Value.Float64()
				start := time.Now()
				var wg sync.WaitGroup
				for l := range launches {
					wg.Go(func() {
						for k := range perLaunch {
							ta.runTasks(fwInfo, nil, []*mesos.TaskInfo{fakeTask(fmt.Sprintf("b%d-%d-%d", i, l, k), "true", 1)}, false)
						}
					})
				}
				for ended := 0; ended < launches*perLaunch; {
					u := ta.next(b)
					if u.GetStatus().GetState().IsTerminal() {
						if u.GetStatus().GetState() != mesos.TaskState_TASK_FINISHED {
							b.Fatalf("%s: %s %q", u.GetStatus().GetTaskId().GetValue(), u.GetStatus().GetState(), u.GetStatus().GetMessage())
						}
						ended++
					}
				}
				wg.Wait()
				took = append(took, time.Since(start))
				// The acknowledged ends' records go off the clock, before
				// the next round and the temporary work_dir's removal.
				b.StopTimer()
				testsupport.Eventually(b, "the framework to be forgotten", time.Minute, func() bool { return ta.frameworkGone("fw-1") })
				b.StartTimer()
				metrics.Read(sample)
				wait += sample[0].Value.Float64() - wait0
			}
			b.StopTimer()
			n := float64(b.N * launches * perLaunch)
			var total time.Duration
			for _, d := range took {
				total += d
			}
			b.ReportMetric(float64(total.Microseconds())/n, "µs/task")
			b.ReportMetric(wait*1e6/n, "mutex-wait-µs/task")
			b.ReportMetric(n/total.Seconds(), "tasks/s")
			b.ReportMetric(float64(ta.store.Syncs()-syncs0)/n, "fsyncs/task")
		})
	}
}
