package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/corral/corral/api/v1/mesos"
)

// TestStrictDamageStaysInExecutor: with three executors in two frameworks,
// a torn task record in one makes strict recovery mark that executor alone
// unrecoverable; the task is named by its directory, its stream is read,
// the others are recovered whole, and the agent can still report the
// task's end through its stream.
func TestStrictDamageStaysInExecutor(t *testing.T) {
	ctx := context.Background()
	ts := newStore(t)
	sibling := Key{Agent: baseKey.Agent, Framework: baseKey.Framework, Executor: "ex-2", Container: "c-2", Task: "t-2"}
	other := Key{Agent: baseKey.Agent, Framework: "fw-2", Executor: "ex-3", Container: "c-3", Task: "t-3"}
	putTree(t, ts.Store, baseKey, 2, 1)
	putTree(t, ts.Store, sibling, 2, 0)
	putTree(t, ts.Store, other, 1, 0)
	path := ts.file(t, baseKey, levelTask, taskInfoFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}

	st := ts.recover(t, true)
	ex := st.Frameworks[baseKey.Framework].Executors[baseKey.Executor]
	var ce *CorruptError
	if ex == nil || len(ex.Damaged) != 1 || !errors.As(ex.Damaged[0].Err, &ce) || ce.Path != path || !ce.Torn {
		t.Fatalf("damaged executor %+v, want it marked with the torn %s", ex, path)
	}
	task := taskOf(st, baseKey)
	if task == nil || task.ID != baseKey.Task || task.Record != nil || len(task.Updates) != 2 || len(task.Pending()) != 1 {
		t.Fatalf("damaged executor's task %+v, want it named by its directory, without record, with its 2 updates", task)
	}
	if ex.Info == nil || ex.Runs[baseKey.Container].Info == nil {
		t.Error("the damaged executor's readable records were not kept")
	}
	for _, k := range []Key{sibling, other} {
		if tk := taskOf(st, k); tk == nil || tk.Record == nil || len(st.Frameworks[k.Framework].Executors[k.Executor].Damaged) != 0 {
			t.Errorf("%s: not recovered whole", k.Executor)
		}
	}
	if len(st.Inconsistencies) != 1 || st.Inconsistencies[0].Path != path {
		t.Errorf("inconsistencies %v, want %s alone", st.Inconsistencies, path)
	}
	// Left as it was for whoever looks into it.
	if got, _ := os.ReadFile(path); !bytes.Equal(got, b[:len(b)/2]) {
		t.Error("strict recovery changed the damaged record")
	}

	// The end the agent reports for it is appended to its stream; its
	// records go once that is acknowledged.
	gone := update(baseKey.Framework, baseKey.Task, mesos.TaskState_TASK_GONE, 9)
	if err := ts.AppendUpdate(ctx, baseKey, gone); err != nil {
		t.Fatalf("reporting the damaged executor's task: %v", err)
	}
	if err := ts.AppendAck(ctx, baseKey, gone.GetStatus().GetUuid()); err != nil {
		t.Fatal(err)
	}
	if err := ts.RemoveRun(ctx, baseKey); err != nil {
		t.Fatal(err)
	}
	st = ts.recover(t, true)
	if len(st.Inconsistencies) != 0 || len(st.Frameworks[baseKey.Framework].Executors[baseKey.Executor].Runs) != 0 {
		t.Fatalf("after the damaged run's removal: inconsistencies %v", st.Inconsistencies)
	}

	// A task directory whose task.info is missing is damage too, and the
	// agent can still report the task through its stream.
	k := sibling
	if err := os.Remove(ts.file(t, k, levelTask, taskInfoFile)); err != nil {
		t.Fatal(err)
	}
	st = ts.recover(t, true)
	if ex := st.Frameworks[k.Framework].Executors[k.Executor]; len(ex.Damaged) != 1 || taskOf(st, k) == nil || taskOf(st, k).Record != nil {
		t.Fatalf("task without task.info: executor %+v", ex)
	}
	if err := ts.AppendUpdate(ctx, k, update(k.Framework, k.Task, mesos.TaskState_TASK_GONE, 9)); err != nil {
		t.Fatalf("reporting a task without task.info: %v", err)
	}
}

// TestDamagedBootID: a damaged boot id is survived in strict mode too, and
// the runs say whether the node rebooted: an unfinished run recorded in
// another boot cannot have survived.
func TestDamagedBootID(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		now      string
		complete bool
		rebooted bool
	}{
		{"same boot", bootA, false, false},
		{"rebooted", bootB, false, true},
		{"rebooted, every run ended", bootB, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newStore(t)
			putTree(t, ts.Store, baseKey, 1, 0) // its run records bootA
			if tc.complete {
				if err := ts.MarkRunCompleted(ctx, baseKey); err != nil {
					t.Fatal(err)
				}
			}
			if err := ts.WriteBootID(ctx); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(ts.Dir(), bootIDFile)
			b, _ := os.ReadFile(path)
			b[len(b)-1] ^= 0xff
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			ts.setBoot(t, tc.now)
			for _, strict := range []bool{true, false} {
				st := ts.recover(t, strict)
				if st.Rebooted != tc.rebooted || len(st.Inconsistencies) != 1 || st.Inconsistencies[0].Path != path || taskOf(st, baseKey) == nil {
					t.Errorf("strict=%v: rebooted %v, inconsistencies %v; want rebooted %v and %s listed", strict, st.Rebooted, st.Inconsistencies, tc.rebooted, path)
				}
			}
			if err := ts.WriteBootID(ctx); err != nil {
				t.Fatal(err)
			}
			if st := ts.recover(t, true); st.BootID != tc.now || st.Rebooted || len(st.Inconsistencies) != 0 {
				t.Errorf("after rewriting the boot id: %q, rebooted %v, %v", st.BootID, st.Rebooted, st.Inconsistencies)
			}
		})
	}
}

// TestCompletedSentinel: a run's end is an empty file; the one empty
// record earlier versions wrote reads the same; anything else there is
// damage (of the executor, in strict mode), still taken as the run's end.
func TestCompletedSentinel(t *testing.T) {
	ctx := context.Background()
	ts := newStore(t)
	putTree(t, ts.Store, baseKey, 1, 0)
	if err := ts.MarkRunCompleted(ctx, baseKey); err != nil {
		t.Fatal(err)
	}
	path := ts.file(t, baseKey, levelRun, runCompletedFile)
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Fatalf("sentinel %v %v, want an empty file", fi, err)
	}
	run := func(st *State) *Run {
		return st.Frameworks[baseKey.Framework].Executors[baseKey.Executor].Runs[baseKey.Container]
	}
	if st := ts.recover(t, true); !run(st).Completed || len(st.Inconsistencies) != 0 {
		t.Fatalf("empty sentinel: completed %v, %v", run(st).Completed, st.Inconsistencies)
	}
	if err := os.WriteFile(path, frame(kindValue, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	if st := ts.recover(t, true); !run(st).Completed || len(st.Inconsistencies) != 0 {
		t.Fatalf("sentinel of earlier versions: completed %v, %v", run(st).Completed, st.Inconsistencies)
	}
	if err := os.WriteFile(path, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	st := ts.recover(t, true)
	if ex := st.Frameworks[baseKey.Framework].Executors[baseKey.Executor]; !run(st).Completed || len(ex.Damaged) != 1 || ex.Damaged[0].Path != path {
		t.Fatalf("junk sentinel: completed %v, damage %v", run(st).Completed, ex.Damaged)
	}
}
