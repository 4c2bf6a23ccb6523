// Package executor is a library for writing Mesos executors over the v1
// executor HTTP API (POST /api/v1/executor), in the classic callback shape:
// an Executor receives events from a Driver and answers through it.
//
// The driver subscribes to the agent named by MESOS_AGENT_ENDPOINT, delivers
// events in order on one goroutine, and keeps every status update until the
// agent acknowledges it. With checkpointing (MESOS_CHECKPOINT=1) it survives
// an agent restart by re-subscribing and handing the agent what may have been
// lost; without it a lost agent means shutting down, as in Mesos.
package executor

import (
	"context"
	"errors"

	"github.com/corral/corral/api/v1/mesos"
)

// Executor receives the agent's events. The driver calls one method at a
// time, in event order, from the goroutine running Driver.Run; a method that
// blocks holds up every later event (acknowledgements included), so long
// work belongs on its own goroutine.
type Executor interface {
	// Registered is called on the first SUBSCRIBED event.
	Registered(d Driver, ei *mesos.ExecutorInfo, fi *mesos.FrameworkInfo, ai *mesos.AgentInfo)
	// Reregistered is called when a re-subscription after an agent restart
	// (or a broken stream) succeeds.
	Reregistered(d Driver, ai *mesos.AgentInfo)
	// Disconnected is called when the event stream breaks. A checkpointing
	// executor is re-subscribing; otherwise Shutdown follows.
	Disconnected(d Driver)
	LaunchTask(d Driver, t *mesos.TaskInfo)
	LaunchTaskGroup(d Driver, g *mesos.TaskGroupInfo)
	KillTask(d Driver, id *mesos.TaskID)
	FrameworkMessage(d Driver, data []byte)
	// Shutdown asks the executor to kill its tasks, report them and call
	// Stop, within the agent's shutdown grace period. The driver also calls
	// it when it gives up on the agent.
	Shutdown(d Driver)
	Error(d Driver, msg string)
}

// BaseExecutor implements every Executor method as a no-op, so an executor
// can embed it and write only what it needs.
type BaseExecutor struct{}

func (BaseExecutor) Registered(Driver, *mesos.ExecutorInfo, *mesos.FrameworkInfo, *mesos.AgentInfo) {
}
func (BaseExecutor) Reregistered(Driver, *mesos.AgentInfo)        {}
func (BaseExecutor) Disconnected(Driver)                          {}
func (BaseExecutor) LaunchTask(Driver, *mesos.TaskInfo)           {}
func (BaseExecutor) LaunchTaskGroup(Driver, *mesos.TaskGroupInfo) {}
func (BaseExecutor) KillTask(Driver, *mesos.TaskID)               {}
func (BaseExecutor) FrameworkMessage(Driver, []byte)              {}
func (BaseExecutor) Shutdown(Driver)                              {}
func (BaseExecutor) Error(Driver, string)                         {}

// Driver is what an Executor uses to talk back to its agent. Its methods are
// safe to call from any goroutine.
type Driver interface {
	// SendStatusUpdate stamps the status (uuid, timestamp, executor_id,
	// source) and sends it. nil means the agent has the update or, while
	// the driver is (re)subscribing, will get it: the driver keeps it until
	// it is acknowledged. An error means it will not be delivered.
	SendStatusUpdate(ctx context.Context, status *mesos.TaskStatus) error
	// SendFrameworkMessage sends data to the scheduler; like Mesos'
	// framework messages it is best effort.
	SendFrameworkMessage(ctx context.Context, data []byte) error
	// WaitAcknowledged returns once every status update sent so far is
	// acknowledged. Acknowledgements arrive as events, so calling it from
	// an Executor callback only waits for ctx.
	WaitAcknowledged(ctx context.Context) error
	// Stop ends Run. Unacknowledged updates are not waited for.
	Stop()
}

// Errors Run returns when the executor ends for a reason other than Stop.
var (
	// ErrDisconnected: the event stream broke and the executor does not
	// checkpoint, or the agent refused the re-subscription.
	ErrDisconnected = errors.New("executor: disconnected from agent")
	// ErrRecoveryTimeout: a checkpointing executor could not re-subscribe
	// within MESOS_RECOVERY_TIMEOUT.
	ErrRecoveryTimeout = errors.New("executor: agent did not come back within the recovery timeout")
	// ErrShutdownGraceExpired: after a shutdown the executor did not call
	// Stop within MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD. The agent kills it
	// soon after; returning lets the process exit on its own terms.
	ErrShutdownGraceExpired = errors.New("executor: shutdown grace period expired before Stop")
	// ErrNotConnected: a framework message cannot be sent while the driver
	// is not subscribed.
	ErrNotConnected = errors.New("executor: not subscribed to the agent")
	// ErrStopped: the driver has stopped.
	ErrStopped = errors.New("executor: driver stopped")
)
