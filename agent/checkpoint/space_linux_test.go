package checkpoint

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/testsupport"
)

// The store on a real, full file system: a small ext4 on a loop device,
// filled to its last block by a file as a task would fill its sandbox.

// fullStore is a store on a loop-mounted ext4 holding baseKey's tree (two
// updates, none acknowledged) and a recorded boot id; the boot id file is
// elsewhere.
func fullStore(t *testing.T, o Options) (*testStore, string) {
	t.Helper()
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	mnt := testsupport.LoopExt4(t, prefix, 32)
	root := t.TempDir()
	ts := &testStore{work: filepath.Join(mnt, "work"), boot: filepath.Join(root, "boot_id")}
	ts.setBoot(t, bootA)
	o.BootIDPath, o.Log = ts.boot, slog.New(slog.NewTextHandler(t.Output(), nil))
	s, err := Open(ts.work, o)
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, s)
	ts.Store = s
	putTree(t, s, baseKey, 2, 0)
	if err := s.WriteBootID(context.Background()); err != nil {
		t.Fatal(err)
	}
	return ts, mnt
}

// TestFullDiskWrites fills the work_dir's file system: what keeps running
// work correct is still written (status updates and acknowledgements, a
// kill's rewrite of a task record, a resize's of a run, the agent's info,
// a run's end, a new boot id, removals), from the reserve where it needs
// new blocks; new work (the first record of an executor, run or task) is
// refused with ErrNoSpace and leaves nothing behind; and strict recovery
// reads it all back.
func TestFullDiskWrites(t *testing.T) {
	ctx := context.Background()
	ts, mnt := fullStore(t, Options{})
	k2 := baseKey
	k2.Task = "t-2"
	if err := ts.PutTask(ctx, k2, taskRecord(k2.Task, k2.Container)); err != nil {
		t.Fatal(err)
	}
	testsupport.FillDisk(t, filepath.Join(mnt, "filler"))

	const n = 300 // updates of about 100 bytes: new blocks, not only the last one's room
	for i := 2; i < n; i++ {
		if err := ts.AppendUpdate(ctx, baseKey, update(baseKey.Framework, baseKey.Task, mesos.TaskState_TASK_RUNNING, i)); err != nil {
			t.Fatalf("update %d on a full disk: %v", i, err)
		}
	}
	for i := range n {
		if err := ts.AppendAck(ctx, baseKey, uuidOf(baseKey.Task, i)); err != nil {
			t.Fatalf("ack %d on a full disk: %v", i, err)
		}
	}
	killing := taskRecord(baseKey.Task, baseKey.Container)
	killing.Killing = proto.Bool(true)
	if err := ts.PutTask(ctx, baseKey, killing); err != nil {
		t.Errorf("kill record on a full disk: %v", err)
	}
	resized := runInfo(baseKey.Container)
	resized.User = proto.String("resized")
	if err := ts.PutRun(ctx, baseKey, resized); err != nil {
		t.Errorf("resize record on a full disk: %v", err)
	}
	moved := agentInfo(baseKey.Agent)
	moved.Port = proto.Int32(5052)
	if err := ts.WriteAgentInfo(ctx, moved); err != nil {
		t.Errorf("agent info on a full disk: %v", err)
	}
	ts.setBoot(t, bootB)
	if err := ts.WriteBootID(ctx); err != nil {
		t.Errorf("boot id after a reboot on a full disk: %v", err)
	}
	ts.setBoot(t, bootA)
	if err := ts.WriteBootID(ctx); err != nil {
		t.Errorf("boot id after a reboot on a full disk: %v", err)
	}

	// New work is refused, and leaves nothing behind.
	k3 := Key{Agent: baseKey.Agent, Framework: baseKey.Framework, Executor: "ex-new", Container: "c-new", Task: "t-new"}
	for what, err := range map[string]error{
		"new executor": ts.PutExecutor(ctx, k3, executorInfo(k3.Executor)),
		"new run":      ts.PutRun(ctx, k3, runInfo(k3.Container)),
		"new task":     ts.PutTask(ctx, Key{Agent: k3.Agent, Framework: k3.Framework, Executor: baseKey.Executor, Container: baseKey.Container, Task: "t-new"}, taskRecord("t-new", baseKey.Container)),
	} {
		if !errors.Is(err, ErrNoSpace) {
			t.Errorf("%s on a full disk: %v, want ErrNoSpace", what, err)
		}
	}

	if err := ts.MarkRunCompleted(ctx, baseKey); err != nil {
		t.Errorf("marking a run completed on a full disk: %v", err)
	}
	if err := ts.RemoveTask(ctx, k2); err != nil {
		t.Errorf("removing a task on a full disk: %v", err)
	}

	st := ts.recover(t, true)
	if len(st.Inconsistencies) != 0 || st.Truncated != 0 || st.Incomplete != 0 {
		t.Fatalf("recovery after writes on a full disk: inconsistencies %v, truncated %d, incomplete %d", st.Inconsistencies, st.Truncated, st.Incomplete)
	}
	task := taskOf(st, baseKey)
	if len(task.Updates) != n || len(task.Pending()) != 0 || !task.Record.GetKilling() {
		t.Errorf("task after a full disk: %d updates, %d pending, killing %v; want %d, 0, true", len(task.Updates), len(task.Pending()), task.Record.GetKilling(), n)
	}
	run := st.Frameworks[baseKey.Framework].Executors[baseKey.Executor].Runs[baseKey.Container]
	if !run.Completed || run.Info.GetUser() != "resized" || run.Tasks[k2.Task] != nil || run.Tasks["t-new"] != nil {
		t.Errorf("run after a full disk: completed %v, user %q, tasks %v", run.Completed, run.Info.GetUser(), run.Tasks)
	}
	if st.Agent.GetPort() != 5052 || st.BootID != bootA || st.Frameworks[baseKey.Framework].Executors[k3.Executor] != nil {
		t.Errorf("agent port %d, boot %q, new executor %v", st.Agent.GetPort(), st.BootID, st.Frameworks[baseKey.Framework].Executors[k3.Executor])
	}
}

// TestFullDiskRestart: an agent restarting on a full disk (nothing
// written since) opens its store, recovers strictly and records its boot
// id: unchanged within the boot, so nothing is written; after a reboot
// with even the reserve spent, the old boot id is rewritten in place.
func TestFullDiskRestart(t *testing.T) {
	ctx := context.Background()
	ts, mnt := fullStore(t, Options{})
	testsupport.FillDisk(t, filepath.Join(mnt, "filler"))

	s, err := Open(ts.work, Options{BootIDPath: ts.boot, Log: ts.log})
	if err != nil {
		t.Fatalf("Open on a full disk: %v", err)
	}
	closeAtEnd(t, s)
	st, err := s.Recover(ctx, true)
	if err != nil || taskOf(st, baseKey) == nil || st.Rebooted {
		t.Fatalf("Recover on a full disk: %v (rebooted %v)", err, st != nil && st.Rebooted)
	}
	if err := s.WriteBootID(ctx); err != nil {
		t.Fatalf("boot id of the same boot on a full disk: %v", err)
	}
	if err := s.WriteAgentInfo(ctx, agentInfo(baseKey.Agent)); err != nil {
		t.Fatalf("unchanged agent info on a full disk: %v", err)
	}

	// The reserve spent, and its room taken by the filler.
	for {
		if _, ok := s.reserve.release(); !ok {
			break
		}
	}
	testsupport.FillDisk(t, filepath.Join(mnt, "filler2"))
	ts.setBoot(t, bootB)
	s, err = Open(ts.work, Options{BootIDPath: ts.boot, Log: ts.log, SpaceWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open on a full disk without reserve: %v", err)
	}
	closeAtEnd(t, s)
	st, err = s.Recover(ctx, true)
	if err != nil || !st.Rebooted {
		t.Fatalf("Recover after a reboot on a full disk: %v (rebooted %v)", err, st != nil && st.Rebooted)
	}
	if err := s.WriteBootID(ctx); err != nil {
		t.Fatalf("boot id after a reboot on a full disk with no reserve: %v", err)
	}
	st, err = s.Recover(ctx, true)
	if err != nil || st.BootID != bootB || st.Rebooted || len(st.Inconsistencies) != 0 {
		t.Fatalf("after the in-place rewrite: %v, boot %q, rebooted %v, inconsistencies %v", err, st.BootID, st.Rebooted, st.Inconsistencies)
	}
	// With no reserve and no room, a write that needs a block waits for
	// space as long as SpaceWait, then fails with ErrNoSpace, leaving
	// nothing behind.
	start := time.Now()
	err = s.MarkRunCompleted(ctx, baseKey)
	for i := 0; err == nil && i < 1000; i++ {
		// An empty sentinel needs no block; appends fill the last one.
		err = s.AppendUpdate(ctx, baseKey, update(baseKey.Framework, baseKey.Task, mesos.TaskState_TASK_RUNNING, 10+i))
	}
	if !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("append with no room at all: %v after %v, want ErrNoSpace (ENOSPC) after SpaceWait", err, time.Since(start))
	}
	if st, err := s.Recover(ctx, true); err != nil || st.Truncated != 0 || len(st.Inconsistencies) != 0 {
		t.Fatalf("recovery after a failed append: %v (truncated %d, inconsistencies %v)", err, st.Truncated, st.Inconsistencies)
	}
}

// TestReserveRefill: once the reserve was used, new work is admitted only
// when the file system has room for the whole reserve again; the first
// admission after space returns restores it.
func TestReserveRefill(t *testing.T) {
	ctx := context.Background()
	ts, mnt := fullStore(t, Options{})
	filler := filepath.Join(mnt, "filler")
	testsupport.FillDisk(t, filler)
	moved := agentInfo(baseKey.Agent)
	moved.Port = proto.Int32(5052)
	if err := ts.WriteAgentInfo(ctx, moved); err != nil { // a new block: from the reserve
		t.Fatal(err)
	}
	if ts.ReserveHeld() >= DefaultReserve {
		t.Fatalf("reserve %d bytes, want some used", ts.ReserveHeld())
	}
	k := baseKey
	k.Task = "t-new"
	if err := ts.PutTask(ctx, k, taskRecord(k.Task, k.Container)); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("new task while the reserve is in use: %v, want ErrNoSpace", err)
	}
	if _, err := os.Stat(ts.file(t, k, levelTask, taskInfoFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("refused task left a record: %v", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := ts.PutTask(ctx, k, taskRecord(k.Task, k.Container)); err != nil {
		t.Fatalf("new task once space returned: %v", err)
	}
	if held := ts.ReserveHeld(); held != DefaultReserve {
		t.Fatalf("reserve %d bytes after space returned, want %d", held, DefaultReserve)
	}
	if fi, err := os.Stat(filepath.Join(ts.Dir(), reserveFile)); err != nil || allocated(fi) < DefaultReserve {
		t.Fatalf("reserve file: %v, %v", fi, err)
	}
}
