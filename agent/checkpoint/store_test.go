package checkpoint

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/corral/corral/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	ts := newStore(t)
	k1 := baseKey
	k2 := Key{Agent: k1.Agent, Framework: "fw-2", Executor: "ex-2", Container: "c-2", Task: "t-2"}
	k3 := Key{Agent: k1.Agent, Framework: "fw-2", Executor: "ex-2", Container: "c-2", Task: "t-3"}
	putTree(t, ts.Store, k1, 3, 1)
	putTree(t, ts.Store, k2, 0, 0)
	putTree(t, ts.Store, k3, 2, 2)
	if err := ts.MarkRunCompleted(ctx, k2); err != nil {
		t.Fatal(err)
	}
	if err := ts.WriteBootID(ctx); err != nil {
		t.Fatal(err)
	}

	st := ts.recover(t, true)
	if st.AgentID != k1.Agent || !proto.Equal(st.Agent, agentInfo(k1.Agent)) {
		t.Errorf("agent = %q %v", st.AgentID, st.Agent)
	}
	if st.BootID != bootA || st.CurrentBootID != bootA || st.Rebooted {
		t.Errorf("boot = %q/%q rebooted=%v", st.BootID, st.CurrentBootID, st.Rebooted)
	}
	if len(st.Inconsistencies) != 0 || st.Truncated != 0 || st.Incomplete != 0 {
		t.Errorf("clean store reported problems: %+v", st)
	}
	if got, err := ts.ReadAgentInfo(); err != nil || !proto.Equal(got, agentInfo(k1.Agent)) {
		t.Errorf("ReadAgentInfo = %v, %v", got, err)
	}
	for _, k := range []Key{k1, k2, k3} {
		fw := st.Frameworks[k.Framework]
		if fw == nil || !proto.Equal(fw.Info, frameworkInfo(k.Framework)) {
			t.Fatalf("framework %s = %v", k.Framework, fw)
		}
		ex := fw.Executors[k.Executor]
		if ex == nil || !proto.Equal(ex.Info, executorInfo(k.Executor)) {
			t.Fatalf("executor %s = %v", k.Executor, ex)
		}
		run := ex.Runs[k.Container]
		if run == nil || !proto.Equal(run.Info, runInfo(k.Container)) || run.Completed != (k.Container == k2.Container) {
			t.Fatalf("run %s = %+v", k.Container, run)
		}
		task := run.Tasks[k.Task]
		if task == nil || !proto.Equal(task.Record, taskRecord(k.Task, k.Container)) {
			t.Fatalf("task %s = %v", k.Task, task)
		}
	}

	// The update streams, table-driven: what was written, what comes back.
	for _, tc := range []struct {
		k         Key
		updates   int
		acked     []bool
		pending   int
		latest    mesos.TaskState
		hasLatest bool
	}{
		{k1, 3, []bool{true, false, false}, 2, mesos.TaskState_TASK_FINISHED, true},
		{k2, 0, nil, 0, 0, false},
		{k3, 2, []bool{true, true}, 0, mesos.TaskState_TASK_RUNNING, true},
	} {
		task := taskOf(st, tc.k)
		if len(task.Updates) != tc.updates {
			t.Fatalf("%s: %d updates, want %d", tc.k.Task, len(task.Updates), tc.updates)
		}
		for i, u := range task.Updates {
			if !bytes.Equal(u.Update.GetStatus().GetUuid(), uuidOf(tc.k.Task, i)) || u.Acked != tc.acked[i] {
				t.Errorf("%s update %d: uuid %x acked %v, want acked %v", tc.k.Task, i, u.Update.GetStatus().GetUuid(), u.Acked, tc.acked[i])
			}
		}
		p := task.Pending()
		if len(p) != tc.pending {
			t.Errorf("%s: %d pending, want %d", tc.k.Task, len(p), tc.pending)
		}
		for i, u := range p { // oldest first
			if !bytes.Equal(u.GetStatus().GetUuid(), uuidOf(tc.k.Task, tc.updates-tc.pending+i)) {
				t.Errorf("%s: pending %d out of order", tc.k.Task, i)
			}
		}
		if s, ok := task.LatestState(); s != tc.latest || ok != tc.hasLatest {
			t.Errorf("%s: LatestState = %v %v", tc.k.Task, s, ok)
		}
	}

	// Rewrites replace; a duplicate ack changes nothing.
	rec := taskRecord(k1.Task, "c-1.nested")
	rec.Group = proto.Uint32(7)
	if err := ts.PutTask(ctx, k1, rec); err != nil {
		t.Fatal(err)
	}
	if err := ts.AppendAck(ctx, k1, uuidOf(k1.Task, 0)); err != nil {
		t.Fatal(err)
	}
	st = ts.recover(t, true)
	if task := taskOf(st, k1); !proto.Equal(task.Record, rec) || len(task.Pending()) != 2 {
		t.Errorf("after rewrite: record %v, %d pending", task.Record, len(task.Pending()))
	}
}

func TestEmptyStore(t *testing.T) {
	ts := newStore(t)
	st := ts.recover(t, true)
	if st.AgentID != "" || st.Agent != nil || len(st.Frameworks) != 0 || st.BootID != "" || st.Rebooted {
		t.Errorf("fresh store recovered %+v", st)
	}
	if _, err := ts.ReadAgentInfo(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadAgentInfo on a fresh store: %v, want ErrNotExist", err)
	}
}

func TestBootIDChange(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name         string
		write        bool
		now          string
		wantRecorded string
		wantReboot   bool
	}{
		{"never recorded", false, bootA, "", false},
		{"same boot", true, bootA, bootA, false},
		{"rebooted", true, bootB, bootA, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newStore(t)
			putTree(t, ts.Store, baseKey, 1, 0)
			if tc.write {
				if err := ts.WriteBootID(ctx); err != nil {
					t.Fatal(err)
				}
			}
			ts.setBoot(t, tc.now)
			st := ts.recover(t, true)
			if st.BootID != tc.wantRecorded || st.CurrentBootID != tc.now || st.Rebooted != tc.wantReboot {
				t.Errorf("BootID %q Current %q Rebooted %v; want %q %q %v", st.BootID, st.CurrentBootID, st.Rebooted, tc.wantRecorded, tc.now, tc.wantReboot)
			}
			// After a reboot the runs are still reported: the agent decides
			// what a dead run's tasks become.
			if taskOf(st, baseKey) == nil {
				t.Error("task not recovered")
			}
		})
	}
}

// wholeFiles are the whole-file checkpoints of putTree(baseKey) plus a
// completed sentinel and boot id, and what non-strict recovery must lose
// with each one.
var wholeFiles = []struct {
	name  string
	lvl   level
	file  string
	check func(*State) bool // true when the damaged entity was dropped and the rest kept
}{
	{"boot_id", -1, bootIDFile, func(st *State) bool { return st.BootID == "" && taskOf(st, baseKey) != nil }},
	{"slave.info", levelAgent, agentInfoFile, func(st *State) bool { return st.Agent == nil && len(st.Frameworks) == 0 }},
	{"framework.info", levelFramework, frameworkInfoFile, func(st *State) bool {
		return st.Frameworks[baseKey.Framework] == nil && st.Frameworks["fw-other"] != nil
	}},
	{"executor.info", levelExecutor, executorInfoFile, func(st *State) bool {
		return st.Frameworks[baseKey.Framework] != nil && st.Frameworks[baseKey.Framework].Executors[baseKey.Executor] == nil
	}},
	{"run.info", levelRun, runInfoFile, func(st *State) bool {
		ex := st.Frameworks[baseKey.Framework].Executors[baseKey.Executor]
		return ex != nil && ex.Runs[baseKey.Container] == nil
	}},
	{"completed", levelRun, runCompletedFile, func(st *State) bool {
		run := st.Frameworks[baseKey.Framework].Executors[baseKey.Executor].Runs[baseKey.Container]
		return run != nil && run.Completed && taskOf(st, baseKey) != nil
	}},
	{"task.info", levelTask, taskInfoFile, func(st *State) bool {
		run := st.Frameworks[baseKey.Framework].Executors[baseKey.Executor].Runs[baseKey.Container]
		return run != nil && taskOf(st, baseKey) == nil
	}},
}

func damagedTree(t *testing.T) (*testStore, func(name string, lvl level, file string) string) {
	ctx := context.Background()
	ts := newStore(t)
	putTree(t, ts.Store, baseKey, 2, 1)
	putTree(t, ts.Store, Key{Agent: baseKey.Agent, Framework: "fw-other", Executor: "e", Container: "c", Task: "t"}, 1, 0)
	if err := ts.MarkRunCompleted(ctx, baseKey); err != nil {
		t.Fatal(err)
	}
	// The sentinel as earlier versions wrote it (one empty record), which
	// is still read, so that there are bytes to damage.
	if err := os.WriteFile(ts.file(t, baseKey, levelRun, runCompletedFile), frame(kindValue, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ts.WriteBootID(ctx); err != nil {
		t.Fatal(err)
	}
	return ts, func(name string, lvl level, file string) string {
		if lvl < 0 {
			return filepath.Join(ts.Dir(), file)
		}
		return ts.file(t, baseKey, lvl, file)
	}
}

// expectDamage checks both modes against the damage at path, a file of
// baseKey's at lvl (-1: the boot id). Strict recovery fails naming path
// when the damage is at node level (agent, framework); inside an executor
// it succeeds, with baseKey's executor marked damaged by path alone, its
// task still named, and the other framework's executor recovered whole; a
// damaged boot id is listed and survived. Non-strict recovery drops what
// check expects.
func expectDamage(t *testing.T, ts *testStore, path string, lvl level, check func(*State) bool, what string) {
	t.Helper()
	st, err := ts.Recover(context.Background(), true)
	switch {
	case lvl == levelAgent || lvl == levelFramework:
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
			t.Fatalf("%s: strict Recover = %v; want ErrCorrupt naming %s", what, err, path)
		}
	case err != nil:
		t.Fatalf("%s: strict Recover = %v; want the damage at %s survived", what, err, path)
	case len(st.Inconsistencies) != 1 || st.Inconsistencies[0].Path != path || !errors.Is(st.Inconsistencies[0].Err, ErrCorrupt):
		t.Fatalf("%s: strict inconsistencies = %v, want %s alone", what, st.Inconsistencies, path)
	case lvl < 0:
		if st.BootID != "" || st.Rebooted || taskOf(st, baseKey) == nil || damagedExecutors(st) != 0 {
			t.Fatalf("%s: strict recovery with a damaged boot id: boot %q rebooted %v, %d damaged executors", what, st.BootID, st.Rebooted, damagedExecutors(st))
		}
	default:
		ex := st.Frameworks[baseKey.Framework].Executors[baseKey.Executor]
		if ex == nil || len(ex.Damaged) != 1 || ex.Damaged[0].Path != path {
			t.Fatalf("%s: strict recovery: executor %+v, want it damaged by %s", what, ex, path)
		}
		if damagedExecutors(st) != 1 || st.Frameworks["fw-other"].Executors["e"].Runs["c"].Tasks["t"] == nil {
			t.Fatalf("%s: strict recovery: %d damaged executors, or the other framework's task lost", what, damagedExecutors(st))
		}
		if task := taskOf(st, baseKey); task == nil || (lvl == levelTask) != (task.Record == nil) {
			t.Fatalf("%s: strict recovery: damaged executor's task %+v, want it named (without its record only if that is the damage)", what, task)
		}
	}
	st = ts.recover(t, false)
	if len(st.Inconsistencies) != 1 || st.Inconsistencies[0].Path != path || !errors.Is(st.Inconsistencies[0].Err, ErrCorrupt) {
		t.Fatalf("%s: non-strict inconsistencies = %v", what, st.Inconsistencies)
	}
	if damagedExecutors(st) != 0 {
		t.Fatalf("%s: non-strict recovery marked executors damaged", what)
	}
	if !check(st) {
		t.Fatalf("%s: non-strict recovery did not drop exactly the damaged entity", what)
	}
}

func damagedExecutors(st *State) int {
	n := 0
	for _, fw := range st.Frameworks {
		for _, ex := range fw.Executors {
			if len(ex.Damaged) > 0 {
				n++
			}
		}
	}
	return n
}

// TestTornWholeFile cuts every whole-file checkpoint at every byte offset:
// each cut must be detected, never parsed.
func TestTornWholeFile(t *testing.T) {
	for _, tc := range wholeFiles {
		t.Run(tc.name, func(t *testing.T) {
			ts, pathOf := damagedTree(t)
			path := pathOf(tc.name, tc.lvl, tc.file)
			orig, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for cut := range len(orig) {
				if cut == 0 && tc.file == runCompletedFile {
					continue // an empty sentinel is how it is written now
				}
				if err := os.WriteFile(path, orig[:cut], 0o600); err != nil {
					t.Fatal(err)
				}
				expectDamage(t, ts, path, tc.lvl, tc.check, fmt.Sprintf("cut at %d of %d", cut, len(orig)))
				var ce *CorruptError
				st, err := ts.Recover(context.Background(), true)
				if err == nil {
					err = st.Inconsistencies[0].Err
				}
				if !errors.As(err, &ce) || !ce.Torn {
					t.Fatalf("cut at %d: %v is not reported as torn", cut, err)
				}
			}
			// One byte too many is as wrong as one too few.
			if err := os.WriteFile(path, append(bytes.Clone(orig), 0), 0o600); err != nil {
				t.Fatal(err)
			}
			expectDamage(t, ts, path, tc.lvl, tc.check, "trailing byte")
			if err := os.WriteFile(path, orig, 0o600); err != nil {
				t.Fatal(err)
			}
			ts.recover(t, true)
		})
	}
}

// TestCorruptWholeFile flips every byte of every whole-file checkpoint:
// header, CRC or payload, the CRC32C catches it.
func TestCorruptWholeFile(t *testing.T) {
	for _, tc := range wholeFiles {
		t.Run(tc.name, func(t *testing.T) {
			ts, pathOf := damagedTree(t)
			path := pathOf(tc.name, tc.lvl, tc.file)
			orig, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for i := range orig {
				bad := bytes.Clone(orig)
				bad[i] ^= 0x5a
				if err := os.WriteFile(path, bad, 0o600); err != nil {
					t.Fatal(err)
				}
				expectDamage(t, ts, path, tc.lvl, tc.check, fmt.Sprintf("byte %d flipped", i))
			}
		})
	}
}

// stream writes baseKey's stream as n updates then acks of the first
// nAcks, and returns its path, bytes and record boundaries.
func stream(t *testing.T, n, nAcks int) (*testStore, string, []byte, []int) {
	ts := newStore(t)
	putTree(t, ts.Store, baseKey, n, nAcks)
	path := ts.file(t, baseKey, levelTask, taskUpdatesFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bounds := []int{0}
	for off := 0; off < len(b); {
		_, _, size, fe := parseFrame(b[off:])
		if fe != nil {
			t.Fatalf("fresh stream unreadable at %d: %s", off, fe.reason)
		}
		off += size
		bounds = append(bounds, off)
	}
	return ts, path, b, bounds
}

// TestUpdatesTornTail cuts the stream at every offset: at a record boundary
// it is a shorter valid stream; inside a record it is what kill -9 in the
// middle of an append leaves, and recovery, strict or not, cuts the stream
// back to the boundary with a warning, counts it, reports no inconsistency,
// and appends work after.
func TestUpdatesTornTail(t *testing.T) {
	ts, path, orig, bounds := stream(t, 3, 2)
	ts.noSync = true          // hundreds of cuts; durability is not what is tested
	boundary := map[int]int{} // offset -> records before it
	for i, b := range bounds {
		boundary[b] = i
	}
	for _, strict := range []bool{true, false} {
		for cut := range len(orig) {
			if err := os.WriteFile(path, orig[:cut], 0o600); err != nil {
				t.Fatal(err)
			}
			if n, ok := boundary[cut]; ok {
				st := ts.recover(t, strict)
				task := taskOf(st, baseKey)
				if got := len(task.Updates); got != min(n, 3) {
					t.Fatalf("cut at boundary %d: %d updates, want %d", cut, got, min(n, 3))
				}
				if st.Truncated != 0 {
					t.Fatalf("cut at boundary %d: truncated %d", cut, st.Truncated)
				}
				continue
			}
			last := 0
			for _, b := range bounds {
				if b < cut {
					last = b
				}
			}
			st := ts.recover(t, strict)
			if st.Truncated != 1 || len(st.Inconsistencies) != 0 {
				t.Fatalf("strict=%v cut at %d: truncated %d, inconsistencies %v", strict, cut, st.Truncated, st.Inconsistencies)
			}
			if fi, err := os.Stat(path); err != nil || fi.Size() != int64(last) {
				t.Fatalf("strict=%v cut at %d: stream not cut back to %d: %v %v", strict, cut, last, fi.Size(), err)
			}
			if got := len(taskOf(st, baseKey).Updates); got != min(boundary[last], 3) {
				t.Fatalf("strict=%v cut at %d: %d updates kept, want %d", strict, cut, got, min(boundary[last], 3))
			}
			// The cut stream is clean again: strict recovery and appends work.
			if err := ts.AppendUpdate(context.Background(), baseKey, update(baseKey.Framework, baseKey.Task, mesos.TaskState_TASK_FAILED, 99)); err != nil {
				t.Fatal(err)
			}
			st = ts.recover(t, true)
			u := taskOf(st, baseKey).Updates
			if s, _ := taskOf(st, baseKey).LatestState(); s != mesos.TaskState_TASK_FAILED || u[len(u)-1].Acked || st.Truncated != 0 {
				t.Fatalf("strict=%v cut at %d: appended update not recovered", strict, cut)
			}
		}
	}
}

// TestUpdatesTornMiddle: a record that seems to run past the end of the
// stream but has whole records behind it (its length field was damaged) is
// corruption, not a torn tail: strict recovery refuses it.
func TestUpdatesTornMiddle(t *testing.T) {
	ts, path, orig, bounds := stream(t, 3, 1)
	bad := bytes.Clone(orig)
	// The second record's length now reaches past the end of the file.
	binary.LittleEndian.PutUint32(bad[bounds[1]+2:], uint32(len(orig)))
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	// Strict: the executor is unrecoverable, the stream left as it is.
	st := ts.recover(t, true)
	ex := st.Frameworks[baseKey.Framework].Executors[baseKey.Executor]
	var ce *CorruptError
	if len(ex.Damaged) != 1 || !errors.As(ex.Damaged[0].Err, &ce) || ce.Path != path || ce.Offset != int64(bounds[1]) {
		t.Fatalf("strict Recover: damage %v; want corruption at %d of %s", ex.Damaged, bounds[1], path)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, bad) || st.Truncated != 0 || len(taskOf(st, baseKey).Updates) != 1 {
		t.Fatalf("strict: stream changed or prefix not kept (truncated %d, updates %d)", st.Truncated, len(taskOf(st, baseKey).Updates))
	}
	st = ts.recover(t, false)
	if len(st.Inconsistencies) != 1 || st.Truncated != 1 || len(taskOf(st, baseKey).Updates) != 1 {
		t.Fatalf("non-strict: inconsistencies %v, truncated %d, updates %d", st.Inconsistencies, st.Truncated, len(taskOf(st, baseKey).Updates))
	}
}

// TestUpdatesCorrupt damages records in ways other than a cut.
func TestUpdatesCorrupt(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, ts *testStore, b []byte, bounds []int) []byte
		// Non-strict outcome: updates kept, whether the file was cut.
		keep      int
		truncated bool
	}{
		{"CRC of middle update", func(t *testing.T, _ *testStore, b []byte, bounds []int) []byte {
			b[bounds[1]+headerSize+3] ^= 1
			return b
		}, 1, true},
		{"CRC field itself", func(t *testing.T, _ *testStore, b []byte, bounds []int) []byte {
			b[bounds[2]+7] ^= 0x80
			return b
		}, 2, true},
		{"length of first record", func(t *testing.T, _ *testStore, b []byte, _ []int) []byte {
			b[3] ^= 0x01
			return b
		}, 0, true},
		{"zero-filled tail (power cut)", func(t *testing.T, _ *testStore, b []byte, _ []int) []byte {
			return append(b, make([]byte, 4096)...)
		}, 3, true},
		{"garbage tail", func(t *testing.T, _ *testStore, b []byte, _ []int) []byte {
			return append(b, "not a record at all"...)
		}, 3, true},
		{"whole-file record in a stream", func(t *testing.T, _ *testStore, b []byte, _ []int) []byte {
			return append(b, frame(kindValue, []byte("x"))...)
		}, 3, false},
		{"ack of an unknown update", func(t *testing.T, _ *testStore, b []byte, _ []int) []byte {
			rec, _ := marshalFrame(kindAck, &mesos.UUID{Value: uuidOf("nobody", 1)})
			return append(b, rec...)
		}, 3, false},
		{"update of another task", func(t *testing.T, _ *testStore, b []byte, _ []int) []byte {
			rec, _ := marshalFrame(kindUpdate, update(baseKey.Framework, "other", mesos.TaskState_TASK_LOST, 1))
			return append(b, rec...)
		}, 3, false},
		{"unparsable update with a good CRC", func(t *testing.T, _ *testStore, b []byte, _ []int) []byte {
			return append(b, frame(kindUpdate, []byte{0xff, 0xff, 0xff})...)
		}, 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, path, orig, bounds := stream(t, 3, 1)
			bad := tc.damage(t, ts, bytes.Clone(orig), bounds)
			if err := os.WriteFile(path, bad, 0o600); err != nil {
				t.Fatal(err)
			}
			// Strict: the executor is unrecoverable; what the stream holds
			// before the damage (and whole records after a bad one) is
			// read, and the file is left as it is.
			st, err := ts.Recover(ctx, true)
			if err != nil {
				t.Fatalf("strict Recover = %v; want the executor marked damaged", err)
			}
			ex := st.Frameworks[baseKey.Framework].Executors[baseKey.Executor]
			if len(ex.Damaged) != 1 || ex.Damaged[0].Path != path || !errors.Is(ex.Damaged[0].Err, ErrCorrupt) ||
				len(st.Inconsistencies) != 1 || st.Inconsistencies[0].Path != path {
				t.Fatalf("strict: damage %v, inconsistencies %v; want %s", ex.Damaged, st.Inconsistencies, path)
			}
			if got := len(taskOf(st, baseKey).Updates); got != tc.keep {
				t.Errorf("strict: %d updates read, want %d", got, tc.keep)
			}
			if b, _ := os.ReadFile(path); !bytes.Equal(b, bad) || st.Truncated != 0 {
				t.Errorf("strict recovery changed the damaged stream (truncated %d)", st.Truncated)
			}
			st = ts.recover(t, false)
			if len(st.Inconsistencies) != 1 || st.Inconsistencies[0].Path != path {
				t.Fatalf("inconsistencies = %v", st.Inconsistencies)
			}
			if got := len(taskOf(st, baseKey).Updates); got != tc.keep {
				t.Errorf("%d updates kept, want %d", got, tc.keep)
			}
			if (st.Truncated == 1) != tc.truncated {
				t.Errorf("truncated = %d, want %v", st.Truncated, tc.truncated)
			}
		})
	}
}

// TestConcurrentAppends writes many tasks' streams in parallel, and one
// stream from several goroutines: every record lands whole, each task's
// order is its writer's.
func TestConcurrentAppends(t *testing.T) {
	ctx := context.Background()
	ts := newStore(t)
	putTree(t, ts.Store, baseKey, 0, 0)
	const tasks, perTask = 16, 8
	var wg sync.WaitGroup
	errc := make(chan error, tasks+4)
	for i := range tasks {
		k := baseKey
		k.Task = fmt.Sprintf("task-%02d", i)
		wg.Go(func() {
			// PutTask races with other tasks' appends and directory creation.
			if err := ts.PutTask(ctx, k, taskRecord(k.Task, k.Container)); err != nil {
				errc <- err
				return
			}
			for n := range perTask {
				if err := ts.AppendUpdate(ctx, k, update(k.Framework, k.Task, mesos.TaskState_TASK_RUNNING, n)); err != nil {
					errc <- err
					return
				}
				if n%2 == 0 {
					if err := ts.AppendAck(ctx, k, uuidOf(k.Task, n)); err != nil {
						errc <- err
						return
					}
				}
			}
		})
	}
	for g := range 4 {
		wg.Go(func() {
			for n := range perTask {
				if err := ts.AppendUpdate(ctx, baseKey, update(baseKey.Framework, baseKey.Task, mesos.TaskState_TASK_RUNNING, g*100+n)); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	st := ts.recover(t, true)
	run := st.Frameworks[baseKey.Framework].Executors[baseKey.Executor].Runs[baseKey.Container]
	if len(run.Tasks) != tasks+1 {
		t.Fatalf("%d tasks recovered, want %d", len(run.Tasks), tasks+1)
	}
	for i := range tasks {
		task := run.Tasks[fmt.Sprintf("task-%02d", i)]
		if len(task.Updates) != perTask {
			t.Fatalf("%s: %d updates", task.ID, len(task.Updates))
		}
		for n, u := range task.Updates {
			if !bytes.Equal(u.Update.GetStatus().GetUuid(), uuidOf(task.ID, n)) || u.Acked != (n%2 == 0) {
				t.Fatalf("%s update %d: wrong order or ack", task.ID, n)
			}
		}
	}
	if n := len(run.Tasks[baseKey.Task].Updates); n != 4*perTask {
		t.Fatalf("shared stream: %d updates, want %d", n, 4*perTask)
	}
}

func TestRemove(t *testing.T) {
	ctx := context.Background()
	other := Key{Agent: baseKey.Agent, Framework: baseKey.Framework, Executor: baseKey.Executor, Container: baseKey.Container, Task: "t-2"}
	for _, tc := range []struct {
		name   string
		remove func(*Store, Key) error
		gone   func(*State) bool
	}{
		{"task", func(s *Store, k Key) error { return s.RemoveTask(ctx, k) }, func(st *State) bool {
			return taskOf(st, baseKey) == nil && taskOf(st, other) != nil
		}},
		{"run", func(s *Store, k Key) error { return s.RemoveRun(ctx, k) }, func(st *State) bool {
			ex := st.Frameworks[baseKey.Framework].Executors[baseKey.Executor]
			return ex != nil && len(ex.Runs) == 0
		}},
		{"executor", func(s *Store, k Key) error { return s.RemoveExecutor(ctx, k) }, func(st *State) bool {
			fw := st.Frameworks[baseKey.Framework]
			return fw != nil && len(fw.Executors) == 0
		}},
		{"framework", func(s *Store, k Key) error { return s.RemoveFramework(ctx, k) }, func(st *State) bool {
			return len(st.Frameworks) == 0 && st.Agent != nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newStore(t)
			putTree(t, ts.Store, baseKey, 2, 1)
			putTree(t, ts.Store, other, 1, 0)
			if err := tc.remove(ts.Store, baseKey); err != nil {
				t.Fatal(err)
			}
			st := ts.recover(t, true)
			if !tc.gone(st) {
				t.Fatal("removed entity still recovered, or a sibling went with it")
			}
			// Again, and something never recorded: not errors.
			if err := tc.remove(ts.Store, baseKey); err != nil {
				t.Fatal(err)
			}
			nobody := Key{Agent: "A-S9", Framework: "f", Executor: "e", Container: "c", Task: "t"}
			if err := tc.remove(ts.Store, nobody); err != nil {
				t.Fatal(err)
			}
			if names, _ := readNames(filepath.Join(ts.Dir(), trashDir)); len(names) != 0 {
				t.Errorf("trash not emptied: %v", names)
			}
		})
	}

	// A removal interrupted after its rename leaves trash; Recover empties it.
	ts := newStore(t)
	putTree(t, ts.Store, baseKey, 1, 0)
	left := filepath.Join(ts.Dir(), trashDir, "rm-123", "x")
	if err := os.MkdirAll(filepath.Join(left, "frameworks"), 0o755); err != nil {
		t.Fatal(err)
	}
	ts.recover(t, true)
	if names, _ := readNames(filepath.Join(ts.Dir(), trashDir)); len(names) != 0 {
		t.Errorf("Recover left trash: %v", names)
	}
}

func TestInvalidIDs(t *testing.T) {
	ctx := context.Background()
	for _, bad := range []string{"", ".", "..", "a/b", "../../etc", "nul\x00", strings.Repeat("x", 256)} {
		ts := newStore(t)
		putTree(t, ts.Store, baseKey, 0, 0)
		for _, tc := range []struct {
			what string
			call func(k Key) error
			k    Key
		}{
			{"agent", func(k Key) error { return ts.WriteAgentInfo(ctx, agentInfo(k.Agent)) }, Key{Agent: bad}},
			{"framework", func(k Key) error { return ts.PutFramework(ctx, k, frameworkInfo(k.Framework)) }, Key{Agent: "A", Framework: bad}},
			{"executor", func(k Key) error { return ts.PutExecutor(ctx, k, executorInfo(k.Executor)) }, Key{Agent: "A", Framework: "f", Executor: bad}},
			{"run", func(k Key) error { return ts.PutRun(ctx, k, runInfo(k.Container)) }, Key{Agent: "A", Framework: "f", Executor: "e", Container: bad}},
			{"task", func(k Key) error { return ts.PutTask(ctx, k, taskRecord(k.Task, "c")) }, Key{Agent: "A", Framework: "f", Executor: "e", Container: "c", Task: bad}},
			{"remove", func(k Key) error { return ts.RemoveFramework(ctx, k) }, Key{Agent: "A", Framework: bad}},
		} {
			if err := tc.call(tc.k); err == nil {
				t.Errorf("%s id %q accepted", tc.what, bad)
			}
		}
		// Nothing was written next to the store.
		names, _ := readNames(filepath.Dir(ts.work))
		if len(names) != 2 { // work/ and boot_id
			t.Errorf("id %q: files appeared outside the store: %v", bad, names)
		}
	}
	ts := newStore(t)
	for _, reserved := range []string{"latest", ".hidden"} {
		if err := ts.WriteAgentInfo(ctx, agentInfo(reserved)); err == nil {
			t.Errorf("agent id %q accepted", reserved)
		}
	}
}

func TestMismatchedIDs(t *testing.T) {
	ctx := context.Background()
	ts := newStore(t)
	k := baseKey
	if err := ts.PutFramework(ctx, k, frameworkInfo("other")); err == nil {
		t.Error("PutFramework with another framework's info accepted")
	}
	if err := ts.PutExecutor(ctx, k, executorInfo("other")); err == nil {
		t.Error("PutExecutor with another executor's info accepted")
	}
	if err := ts.PutRun(ctx, k, runInfo("other")); err == nil {
		t.Error("PutRun with another container's info accepted")
	}
	if err := ts.PutTask(ctx, k, taskRecord("other", "c")); err == nil {
		t.Error("PutTask with another task's record accepted")
	}
	if err := ts.AppendUpdate(ctx, k, update(k.Framework, "other", mesos.TaskState_TASK_RUNNING, 1)); err == nil {
		t.Error("AppendUpdate of another task's update accepted")
	}
	noUUID := update(k.Framework, k.Task, mesos.TaskState_TASK_RUNNING, 1)
	noUUID.Status.Uuid = nil
	if err := ts.AppendUpdate(ctx, k, noUUID); err == nil {
		t.Error("AppendUpdate without uuid accepted")
	}

	// Appends need the task recorded first (checkpoint before act).
	putTree(t, ts.Store, k, 0, 0)
	k2 := k
	k2.Task = "never-put"
	err := ts.AppendUpdate(ctx, k2, update(k.Framework, k2.Task, mesos.TaskState_TASK_RUNNING, 1))
	if err == nil || !strings.Contains(err.Error(), filepath.Join(k2.Task, taskUpdatesFile)) {
		t.Errorf("append to an unrecorded task: %v", err)
	}
	if err := ts.MarkRunCompleted(ctx, Key{Agent: k.Agent, Framework: k.Framework, Executor: k.Executor, Container: "nope"}); err == nil {
		t.Error("MarkRunCompleted of an unrecorded run accepted")
	}

	// A directory renamed by hand (its info names another framework).
	src, _ := ts.path(k, levelFramework)
	if err := os.Rename(src, filepath.Join(filepath.Dir(src), "fw-moved")); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Recover(ctx, true); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "fw-moved") {
		t.Errorf("moved framework dir: strict Recover = %v", err)
	}
}

// TestInterruptedWrites covers what a crash between the steps of a write
// leaves: temp files, and directories without their first file.
func TestInterruptedWrites(t *testing.T) {
	ctx := context.Background()
	ts := newStore(t)
	putTree(t, ts.Store, baseKey, 1, 0)
	taskDir, _ := ts.path(baseKey, levelTask)
	// A temp file with garbage: never read; the next write of the file
	// reuses it.
	tmp := filepath.Join(taskDir, taskInfoFile+tmpSuffix)
	if err := os.WriteFile(tmp, []byte("half a rec"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A framework directory made, its framework.info never renamed in.
	k2 := Key{Agent: baseKey.Agent, Framework: "fw-new"}
	fwDir, _ := ts.path(k2, levelFramework)
	if err := os.MkdirAll(fwDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fwDir, frameworkInfoFile+tmpSuffix), []byte{frameMagic}, 0o600); err != nil {
		t.Fatal(err)
	}
	st := ts.recover(t, true)
	if st.Incomplete != 1 || st.Frameworks["fw-new"] != nil || taskOf(st, baseKey) == nil || len(st.Inconsistencies) != 0 {
		t.Fatalf("incomplete %d, frameworks %v, inconsistencies %v", st.Incomplete, st.Frameworks, st.Inconsistencies)
	}
	if _, err := os.Stat(fwDir); !errors.Is(err, fs.ErrNotExist) {
		t.Error("incomplete framework dir left")
	}
	rec := taskRecord(baseKey.Task, "c-9")
	if err := ts.PutTask(ctx, baseKey, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, fs.ErrNotExist) {
		t.Error("temp file left after the next write")
	}
	if st := ts.recover(t, true); !proto.Equal(taskOf(st, baseKey).Record, rec) {
		t.Error("rewrite over a leftover temp file lost")
	}

	// An executor directory holding runs but no executor.info is damage.
	k3 := baseKey
	k3.Executor = "ex-noinfo"
	if err := ts.PutRun(ctx, k3, runInfo(k3.Container)); err != nil {
		t.Fatal(err)
	}
	exDir, _ := ts.path(k3, levelExecutor)
	path := filepath.Join(exDir, executorInfoFile)
	st = ts.recover(t, true)
	if ex := st.Frameworks[baseKey.Framework].Executors[k3.Executor]; ex == nil || len(ex.Damaged) != 1 || ex.Damaged[0].Path != path ||
		ex.Info != nil || ex.Runs[k3.Container] == nil || taskOf(st, baseKey) == nil {
		t.Fatalf("executor without info: strict recovery has %+v, want it damaged by %s with its run, and its sibling", ex, path)
	}
	st = ts.recover(t, false)
	if len(st.Inconsistencies) != 1 || st.Inconsistencies[0].Path != path || st.Frameworks[baseKey.Framework].Executors[k3.Executor] != nil {
		t.Fatalf("non-strict: %v", st.Inconsistencies)
	}
	if taskOf(st, baseKey) == nil {
		t.Fatal("sibling executor lost")
	}
}

func TestContextCancelled(t *testing.T) {
	ts := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ts.PutFramework(ctx, baseKey, frameworkInfo(baseKey.Framework)); !errors.Is(err, context.Canceled) {
		t.Errorf("PutFramework = %v", err)
	}
	if err := ts.AppendAck(ctx, baseKey, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("AppendAck = %v", err)
	}
	putTree(t, ts.Store, baseKey, 1, 0)
	if _, err := ts.Recover(ctx, true); !errors.Is(err, context.Canceled) {
		t.Errorf("Recover = %v", err)
	}
}
