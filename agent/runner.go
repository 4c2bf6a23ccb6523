package agent

import (
	"net/http"
	"strings"

	"github.com/corral/corral/agent/checkpoint"
	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/codec"
	executorapi "github.com/corral/corral/api/v1/executor"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/container"
	"github.com/corral/corral/container/containerizer"
)

// executorRunner is one executor's life: what runs its tasks, chosen once
// when the executor is made (newRunner) and never asked what kind it is.
// The agent routes the master's and the executor API's calls to it; the
// runner owns the executor's containers, takes its tasks' states from them
// (or from its executor process) and says how the executor ends.
//
// Three runners: commandRunner (a command task, TaskInfo.command, in one
// container the agent supervises: no executor process), defaultRunner (a
// task group of Mesos' DEFAULT executor, each task in its own container,
// also without an executor process) and httpRunner (a custom executor
// speaking the v1 executor API).
//
// Unless said otherwise its methods are called without a.mu; those named
// ...Locked are called with it held.
type executorRunner interface {
	// traits says what the agent tells others of this executor.
	traits() runnerTraits

	// placeTasksLocked gives tasks being added to the executor their
	// launch group, container and sandbox.
	placeTasksLocked(tasks []*task)
	// closingLocked: the executor takes no more tasks (it is being shut
	// down); they are dropped.
	closingLocked() bool
	// launch starts tasks once they are recorded and the run's sandbox
	// exists; fresh says the executor was made for them.
	launch(tasks []*task, group, fresh bool)
	// kill kills one live task of the executor.
	kill(t *task, policy *mesos.KillPolicy)
	// shutdown stops the executor and its tasks.
	shutdown()

	// recoveryConfigsLocked are the run's containers as the isolators must
	// take them back after a restart.
	recoveryConfigsLocked() []*container.Config
	// resumeLocked decides, from what container recovery found, how the
	// recovered run goes on; the actions run once recovery is complete.
	resumeLocked(found map[string]*containerizer.Recovered, stats *recoveryStats) []func()
	// startReregistrationLocked bounds the wait for a recovered executor
	// to come back, where it has one.
	startReregistrationLocked()

	// acknowledgedLocked is told of an acknowledged update of a task.
	acknowledgedLocked(u *cluster.StatusUpdate)
	// serve answers a call of the v1 executor API for this executor.
	serve(w http.ResponseWriter, r *http.Request, call *executorapi.Call, respCodec codec.Codec)
	// messageLocked delivers a framework message; false if it cannot.
	messageLocked(data []byte) bool
	// ended releases what the runner holds once its executor ended.
	ended()

	// containerIDsLocked are the run's containers that may be running.
	containerIDsLocked() []string
	// phaseLocked is where the executor is, for /state and metrics:
	// being shut down, not (or no longer) subscribed.
	phaseLocked() (terminating, registering bool)
}

// runnerTraits is what does not change over an executor's life.
type runnerTraits struct {
	// kind is what the run's checkpoint records (recovery makes the same
	// runner again from it).
	kind checkpoint.RunInfo_Kind
	// typeName is /state's executor "type".
	typeName string
	// hidden: the executor is the agent's, not the framework's (the
	// command executor): its tasks and their updates carry no executor
	// ID, the master is not told when it exits.
	hidden bool
	// reported: the executor is reported to the master when the agent
	// (re-)registers.
	reported bool
	// endsWithTasks: the run is its tasks; with none left it is over. An
	// executor process may live with no task.
	endsWithTasks bool
}

// runnerKind is the runner an ExecutorInfo of a launch asks for (nil: a
// command task).
func runnerKind(exInfo *mesos.ExecutorInfo) checkpoint.RunInfo_Kind {
	switch {
	case exInfo == nil:
		return checkpoint.RunInfo_COMMAND
	case exInfo.GetType() == mesos.ExecutorInfo_DEFAULT:
		return checkpoint.RunInfo_DEFAULT
	}
	return checkpoint.RunInfo_HTTP
}

// newRunner makes the runner of an executor: the one place that tells the
// kinds apart.
func newRunner(a *Agent, ex *executor, kind checkpoint.RunInfo_Kind) executorRunner {
	switch kind {
	case checkpoint.RunInfo_COMMAND:
		return &commandRunner{builtinRunner{a: a, ex: ex}}
	case checkpoint.RunInfo_DEFAULT:
		return &defaultRunner{builtinRunner{a: a, ex: ex, groupFails: true}}
	}
	return &httpRunner{a: a, ex: ex}
}

// damagedKind is the best guess at what ran a damaged executor's run: its
// run.info says, else its executor.info (the command executor's is named
// after its task, and its only task has the executor's ID).
func damagedKind(re *checkpoint.Executor, run *checkpoint.Run) checkpoint.RunInfo_Kind {
	switch {
	case run.Info != nil:
		return run.Info.GetKind()
	case re.Info.GetType() == mesos.ExecutorInfo_DEFAULT:
		return checkpoint.RunInfo_DEFAULT
	case strings.HasPrefix(re.Info.GetName(), "Command Executor"):
		return checkpoint.RunInfo_COMMAND
	case re.Info == nil && len(run.Tasks) == 1 && run.Tasks[re.ID] != nil:
		return checkpoint.RunInfo_COMMAND
	}
	return checkpoint.RunInfo_HTTP
}
