package checkpoint

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/corral/corral/api/v1/mesos"
)

// build1000 records what an agent running n containers has on disk: one
// framework, n executors with one run and one task each, and a task stream
// of STARTING and RUNNING (acknowledged) plus an unacknowledged update.
func build1000(tb testing.TB, n int) *testStore {
	tb.Helper()
	ts := newStore(tb)
	ts.noSync = true // set-up only: the layout matters here, not durability
	defer func() { ts.noSync = false }()
	ctx := context.Background()
	k := Key{Agent: "A-S1", Framework: "fw-1"}
	if err := ts.WriteAgentInfo(ctx, agentInfo(k.Agent)); err != nil {
		tb.Fatal(err)
	}
	if err := ts.PutFramework(ctx, k, frameworkInfo(k.Framework)); err != nil {
		tb.Fatal(err)
	}
	if err := ts.WriteBootID(ctx); err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		k.Executor = fmt.Sprintf("executor-%04d", i)
		k.Container = fmt.Sprintf("3f1c6a0e-0000-4000-8000-%012d", i)
		k.Task = fmt.Sprintf("task-%04d", i)
		if err := ts.PutExecutor(ctx, k, executorInfo(k.Executor)); err != nil {
			tb.Fatal(err)
		}
		if err := ts.PutRun(ctx, k, runInfo(k.Container)); err != nil {
			tb.Fatal(err)
		}
		if err := ts.PutTask(ctx, k, taskRecord(k.Task, k.Container)); err != nil {
			tb.Fatal(err)
		}
		for j, s := range []mesos.TaskState{mesos.TaskState_TASK_STARTING, mesos.TaskState_TASK_RUNNING, mesos.TaskState_TASK_RUNNING} {
			if err := ts.AppendUpdate(ctx, k, update(k.Framework, k.Task, s, j)); err != nil {
				tb.Fatal(err)
			}
			if j < 2 {
				if err := ts.AppendAck(ctx, k, uuidOf(k.Task, j)); err != nil {
					tb.Fatal(err)
				}
			}
		}
	}
	return ts
}

// TestRecover1000 recovers 1000 runs whole; how fast is BenchmarkRecover1000's
// to say (the budget is 1 s for all of an agent's recovery).
func TestRecover1000(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 1000 runs")
	}
	ts := build1000(t, 1000)
	st := ts.recover(t, true)
	if n := len(st.Frameworks["fw-1"].Executors); n != 1000 {
		t.Fatalf("%d executors recovered", n)
	}
	for _, ex := range st.Frameworks["fw-1"].Executors {
		for _, run := range ex.Runs {
			for _, task := range run.Tasks {
				if len(task.Pending()) != 1 {
					t.Fatalf("%s: %d pending", task.ID, len(task.Pending()))
				}
			}
		}
	}
}

func BenchmarkRecover1000(b *testing.B) {
	ts := build1000(b, 1000)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		if _, err := ts.Recover(ctx, true); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/recover")
}

// BenchmarkAppendUpdate is the cost of one durable update: one write and
// one fdatasync, which dominates.
func BenchmarkAppendUpdate(b *testing.B) {
	ts := newStore(b)
	putTree(b, ts.Store, baseKey, 0, 0)
	ctx := context.Background()
	u := update(baseKey.Framework, baseKey.Task, mesos.TaskState_TASK_RUNNING, 1)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		if err := ts.AppendUpdate(ctx, baseKey, u); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "µs/update")
}

// BenchmarkPutTask is the cost of one whole-file checkpoint (temp, fsync,
// rename, fsync of the directory) of a new task, directory creation included.
func BenchmarkPutTask(b *testing.B) {
	ts := newStore(b)
	putTree(b, ts.Store, baseKey, 0, 0)
	ctx := context.Background()
	k := baseKey
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		i++
		k.Task = fmt.Sprintf("t-%d", i)
		if err := ts.PutTask(ctx, k, taskRecord(k.Task, k.Container)); err != nil {
			b.Fatal(err)
		}
	}
}
