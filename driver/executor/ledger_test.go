package executor

import (
	"slices"
	"testing"

	executorapi "github.com/corral/corral/api/v1/executor"
	"github.com/corral/corral/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

func status(task string, state mesos.TaskState, uuid byte) *mesos.TaskStatus {
	return &mesos.TaskStatus{
		TaskId: &mesos.TaskID{Value: proto.String(task)}, State: state.Enum(),
		Uuid: []byte{uuid, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
	}
}

func taskInfo(id string) *mesos.TaskInfo {
	return &mesos.TaskInfo{TaskId: &mesos.TaskID{Value: proto.String(id)}, Name: proto.String(id)}
}

func ids(sub *executorapi.Call_Subscribe) (updates []string, tasks []string) {
	for _, u := range sub.GetUnacknowledgedUpdates() {
		updates = append(updates, u.GetStatus().GetTaskId().GetValue()+"/"+u.GetStatus().GetState().String())
	}
	for _, t := range sub.GetUnacknowledgedTasks() {
		tasks = append(tasks, t.GetTaskId().GetValue())
	}
	return updates, tasks
}

func TestLedger(t *testing.T) {
	var l ledger
	l.addTask(taskInfo("a"))
	l.addTask(taskInfo("b"))
	l.addTask(taskInfo("a")) // relaunch replaces, keeps its place
	l.addUpdate(status("a", mesos.TaskState_TASK_RUNNING, 1))
	l.addUpdate(status("b", mesos.TaskState_TASK_RUNNING, 2))
	l.addUpdate(status("a", mesos.TaskState_TASK_FINISHED, 3))

	us, ts := ids(l.subscribe())
	if want := []string{"a/TASK_RUNNING", "b/TASK_RUNNING", "a/TASK_FINISHED"}; !slices.Equal(us, want) {
		t.Fatalf("updates %v, want %v", us, want)
	}
	if want := []string{"a", "b"}; !slices.Equal(ts, want) {
		t.Fatalf("tasks %v, want %v", ts, want)
	}

	// An acknowledgement removes exactly its update, and the task it is for.
	if !l.acknowledge("a", status("a", 0, 1).Uuid) {
		t.Fatal("pending update not found")
	}
	us, ts = ids(l.subscribe())
	if want := []string{"b/TASK_RUNNING", "a/TASK_FINISHED"}; !slices.Equal(us, want) {
		t.Fatalf("after ack: updates %v, want %v", us, want)
	}
	if want := []string{"b"}; !slices.Equal(ts, want) {
		t.Fatalf("after ack: tasks %v, want %v", ts, want)
	}

	// A second acknowledgement of the same uuid, or an unknown one, changes
	// nothing but is reported.
	if l.acknowledge("a", status("a", 0, 1).Uuid) || l.acknowledge("zzz", status("z", 0, 9).Uuid) {
		t.Fatal("stale acknowledgement reported as pending")
	}
	if l.pendingUpdates() != 2 {
		t.Fatalf("pending = %d, want 2", l.pendingUpdates())
	}

	// Updates sent while a SUBSCRIBE was under way are the ones it lacks.
	sub := l.subscribe()
	l.addUpdate(status("b", mesos.TaskState_TASK_FINISHED, 4))
	late := l.updatesNotIn(sub)
	if len(late) != 1 || late[0].GetUuid()[0] != 4 {
		t.Fatalf("late updates %v", late)
	}

	if !l.dropUpdate(status("b", 0, 2).Uuid) || l.dropUpdate(status("b", 0, 2).Uuid) {
		t.Fatal("dropUpdate")
	}
	l.acknowledge("a", status("a", 0, 3).Uuid)
	l.acknowledge("b", status("b", 0, 4).Uuid)
	if sub := l.subscribe(); l.pendingUpdates() != 0 || len(sub.GetUnacknowledgedTasks()) != 0 {
		t.Fatalf("ledger not empty: %v", sub)
	}
}
