package agent

import (
	"path/filepath"

	"github.com/corral/corral/agent/checkpoint"
	"github.com/corral/corral/internal/ids"
)

// defaultRunner runs the task groups of Mesos' DEFAULT executor, each task
// in a container of its own with its sandbox under the run's
// (tasks/<task id>); a task that does not finish takes its group down.
type defaultRunner struct{ builtinRunner }

func (d *defaultRunner) traits() runnerTraits {
	return runnerTraits{kind: checkpoint.RunInfo_DEFAULT, typeName: "DEFAULT", endsWithTasks: true}
}

func (d *defaultRunner) placeTasksLocked(tasks []*task) {
	group := len(d.ex.tasks)
	for _, t := range tasks {
		t.group = group
		t.containerID = ids.String()
		t.sandbox = filepath.Join(d.ex.directory, "tasks", t.info.GetTaskId().GetValue())
	}
}
