package checkpoint

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

const (
	bootA = "0b1d3c4e-0000-4000-8000-00000000000a"
	bootB = "0b1d3c4e-0000-4000-8000-00000000000b"
)

// testStore is a store in a temp dir with a fake boot id file.
type testStore struct {
	*Store
	work string
	boot string
}

func newStore(tb testing.TB) *testStore {
	tb.Helper()
	root := tb.TempDir()
	ts := &testStore{work: filepath.Join(root, "work"), boot: filepath.Join(root, "boot_id")}
	ts.setBoot(tb, bootA)
	s, err := Open(ts.work, Options{BootIDPath: ts.boot, Log: slog.New(slog.NewTextHandler(tb.Output(), nil))})
	if err != nil {
		tb.Fatal(err)
	}
	closeAtEnd(tb, s)
	ts.Store = s
	return ts
}

// closeAtEnd closes s when the test ends (before its directories go), as
// an agent does on its way out; a test that reopens the work_dir without
// closing first is the kill -9 of the agent before.
func closeAtEnd(tb testing.TB, s *Store) {
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("closing the store: %v", err)
		}
	})
}

func (ts *testStore) setBoot(tb testing.TB, id string) {
	tb.Helper()
	if err := os.WriteFile(ts.boot, []byte(id+"\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
}

func (ts *testStore) recover(tb testing.TB, strict bool) *State {
	tb.Helper()
	st, err := ts.Recover(context.Background(), strict)
	if err != nil {
		tb.Fatalf("Recover(strict=%v): %v", strict, err)
	}
	return st
}

// file is the path of one checkpoint file of k.
func (ts *testStore) file(tb testing.TB, k Key, lvl level, name string) string {
	tb.Helper()
	dir, err := ts.path(k, lvl)
	if err != nil {
		tb.Fatal(err)
	}
	return filepath.Join(dir, name)
}

func agentInfo(id string) *mesos.AgentInfo {
	return &mesos.AgentInfo{Hostname: proto.String("node1"), Port: proto.Int32(5051), Id: &mesos.AgentID{Value: proto.String(id)}}
}

func frameworkInfo(id string) *mesos.FrameworkInfo {
	return &mesos.FrameworkInfo{User: proto.String("root"), Name: proto.String("fw " + id), Id: &mesos.FrameworkID{Value: proto.String(id)}, Checkpoint: proto.Bool(true)}
}

func executorInfo(id string) *mesos.ExecutorInfo {
	return &mesos.ExecutorInfo{
		Type:       mesos.ExecutorInfo_CUSTOM.Enum(),
		ExecutorId: &mesos.ExecutorID{Value: proto.String(id)},
		Command:    &mesos.CommandInfo{Value: proto.String("/bin/executor --flag")},
	}
}

func runInfo(cid string) *RunInfo {
	return &RunInfo{
		ContainerId: &mesos.ContainerID{Value: proto.String(cid)},
		Kind:        RunInfo_COMMAND.Enum(),
		Sandbox:     proto.String("/var/lib/corral/slaves/x/runs/" + cid),
		BootId:      proto.String(bootA),
		LaunchedAt:  proto.Float64(1.7e9),
		User:        proto.String("nobody"),
	}
}

func taskRecord(id, cid string) *TaskRecord {
	return &TaskRecord{
		Info: &mesos.TaskInfo{
			Name:    proto.String("task " + id),
			TaskId:  &mesos.TaskID{Value: proto.String(id)},
			AgentId: &mesos.AgentID{Value: proto.String("A-S1")},
			Command: &mesos.CommandInfo{Value: proto.String("sleep 1000")},
		},
		ContainerId: &mesos.ContainerID{Value: proto.String(cid)},
		Sandbox:     proto.String("/sandbox/" + id),
	}
}

// update makes a status update of task with a uuid derived from n.
func update(fw, task string, state mesos.TaskState, n int) *cluster.StatusUpdate {
	return &cluster.StatusUpdate{
		FrameworkId: &mesos.FrameworkID{Value: proto.String(fw)},
		Status: &mesos.TaskStatus{
			TaskId:    &mesos.TaskID{Value: proto.String(task)},
			State:     state.Enum(),
			Uuid:      uuidOf(task, n),
			Timestamp: proto.Float64(1.7e9 + float64(n)),
			Message:   proto.String(fmt.Sprintf("update %d", n)),
		},
		LatestState: state.Enum(),
	}
}

func uuidOf(task string, n int) []byte {
	u := fmt.Appendf(nil, "%-12.12s%04d", task, n)
	return u[:16]
}

var baseKey = Key{Agent: "A-S1", Framework: "fw-1", Executor: "ex-1", Container: "c-1", Task: "t-1"}

// putTree records agent, framework, executor, run and task of k, with
// nUpdates updates of which the first nAcks are acknowledged.
func putTree(tb testing.TB, s *Store, k Key, nUpdates, nAcks int) {
	tb.Helper()
	ctx := context.Background()
	must := func(err error) {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
	}
	must(s.WriteAgentInfo(ctx, agentInfo(k.Agent)))
	must(s.PutFramework(ctx, k, frameworkInfo(k.Framework)))
	must(s.PutExecutor(ctx, k, executorInfo(k.Executor)))
	must(s.PutRun(ctx, k, runInfo(k.Container)))
	must(s.PutTask(ctx, k, taskRecord(k.Task, k.Container)))
	states := []mesos.TaskState{mesos.TaskState_TASK_STARTING, mesos.TaskState_TASK_RUNNING, mesos.TaskState_TASK_FINISHED}
	for i := range nUpdates {
		must(s.AppendUpdate(ctx, k, update(k.Framework, k.Task, states[min(i, len(states)-1)], i)))
	}
	for i := range nAcks {
		must(s.AppendAck(ctx, k, uuidOf(k.Task, i)))
	}
}

// taskOf finds k's task in a recovered state, or nil.
func taskOf(st *State, k Key) *Task {
	fw := st.Frameworks[k.Framework]
	if fw == nil {
		return nil
	}
	ex := fw.Executors[k.Executor]
	if ex == nil {
		return nil
	}
	run := ex.Runs[k.Container]
	if run == nil {
		return nil
	}
	return run.Tasks[k.Task]
}
