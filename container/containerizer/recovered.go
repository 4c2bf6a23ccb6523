package containerizer

import (
	"strconv"

	"github.com/corral/corral/container"
)

// RecoveredState is what recovery found of a container the agent's
// checkpoints name.
type RecoveredState int

const (
	// Running: the container's init is alive and re-attached (held by a
	// pidfd, its cgroups, limits and watches taken back); Wait learns its
	// end as for a container launched by this process.
	Running RecoveredState = iota
	// Ended: the container's init exited while the agent was down;
	// Termination says how, from the init's own record of the task's exit
	// status when it made one.
	Ended
	// NotStarted: the container's task never ran — no runtime record of
	// its init, a torn one, or an init that ended without the go-ahead;
	// whatever the launch had made is destroyed. It may be launched again.
	// (An init still alive without its go-ahead recorded is re-attached:
	// its end says whether it started the task, Termination.NotStarted.)
	NotStarted
)

func (s RecoveredState) String() string {
	switch s {
	case Running:
		return "running"
	case Ended:
		return "ended"
	case NotStarted:
		return "not started"
	}
	return "RecoveredState(" + strconv.Itoa(int(s)) + ")"
}

// Recovered is one known container after Recover.
type Recovered struct {
	State RecoveredState
	// Termination is set when State is Ended.
	Termination *container.Termination
}
