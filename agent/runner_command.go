package agent

import "github.com/corral/corral/agent/checkpoint"

// commandRunner runs a command task (TaskInfo.command) directly in the
// run's one container: the executor is the agent's own, named after the
// task, invisible to the framework.
type commandRunner struct{ builtinRunner }

func (c *commandRunner) traits() runnerTraits {
	return runnerTraits{kind: checkpoint.RunInfo_COMMAND, typeName: "COMMAND", hidden: true, endsWithTasks: true}
}

// placeTasksLocked: the task runs in the run's container and sandbox.
func (c *commandRunner) placeTasksLocked(tasks []*task) {
	group := len(c.ex.tasks)
	for _, t := range tasks {
		t.group = group
		t.containerID, t.sandbox = c.ex.containerID, c.ex.directory
	}
}
