package mesos

import "testing"

// Every state, as Mesos' isTerminalState sorts them: a new state added to
// the proto fails here until it is placed.
func TestIsTerminal(t *testing.T) {
	terminal := map[TaskState]bool{
		TaskState_TASK_FINISHED: true, TaskState_TASK_FAILED: true, TaskState_TASK_KILLED: true,
		TaskState_TASK_ERROR: true, TaskState_TASK_LOST: true, TaskState_TASK_DROPPED: true,
		TaskState_TASK_GONE: true, TaskState_TASK_GONE_BY_OPERATOR: true,
		TaskState_TASK_STAGING: false, TaskState_TASK_STARTING: false, TaskState_TASK_RUNNING: false,
		TaskState_TASK_KILLING: false, TaskState_TASK_UNREACHABLE: false, TaskState_TASK_UNKNOWN: false,
	}
	for v, name := range TaskState_name {
		s := TaskState(v)
		want, placed := terminal[s]
		if !placed {
			t.Errorf("%s is not placed terminal or not", name)
			continue
		}
		if s.IsTerminal() != want {
			t.Errorf("%s.IsTerminal() = %v, want %v", name, s.IsTerminal(), want)
		}
	}
}
