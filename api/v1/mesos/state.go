package mesos

// IsTerminal reports whether a task in state s is over: it will not change
// again and its resources are free (Mesos' protobuf::isTerminalState).
// TASK_UNREACHABLE and TASK_UNKNOWN are not: the task may come back.
func (s TaskState) IsTerminal() bool {
	switch s {
	case TaskState_TASK_FINISHED, TaskState_TASK_FAILED, TaskState_TASK_KILLED,
		TaskState_TASK_ERROR, TaskState_TASK_LOST, TaskState_TASK_DROPPED,
		TaskState_TASK_GONE, TaskState_TASK_GONE_BY_OPERATOR:
		return true
	}
	return false
}
