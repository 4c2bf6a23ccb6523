// Package scheduler is a Go client for the Mesos v1 scheduler API (POST
// /api/v1/scheduler) in the shape of the classic Mesos SchedulerDriver: a
// Scheduler receives callbacks, a Driver makes calls.
//
// The driver keeps the subscription alive on its own: it re-subscribes with
// exponential backoff when the stream drops or goes silent for a few
// heartbeat intervals, follows a 307 to the leading master, and (by
// default) acknowledges status updates once StatusUpdate returns.
package scheduler

import (
	"context"

	"github.com/corral/corral/api/v1/mesos"
)

// Scheduler receives the events of one framework. All callbacks run on the
// goroutine of Driver.Run, one at a time and in the order the master sent the
// events, so a Scheduler needs no locking of its own for state touched only
// from callbacks. Callbacks may call any Driver method, including Stop.
type Scheduler interface {
	// Registered is called on the first successful subscription with the
	// framework ID the master assigned (or confirmed).
	Registered(d Driver, id *mesos.FrameworkID, master *mesos.MasterInfo)
	// Reregistered is called on every later successful subscription, after
	// a Disconnected.
	Reregistered(d Driver, master *mesos.MasterInfo)
	// Disconnected is called when the event stream ends unexpectedly; the
	// driver then re-subscribes on its own. Offers received before are no
	// longer valid.
	Disconnected(d Driver)
	ResourceOffers(d Driver, offers []*mesos.Offer)
	OfferRescinded(d Driver, id *mesos.OfferID)
	// StatusUpdate is called for every task status. Unless the driver was
	// configured for explicit acknowledgements it acknowledges the update
	// when StatusUpdate returns.
	StatusUpdate(d Driver, status *mesos.TaskStatus)
	FrameworkMessage(d Driver, executor *mesos.ExecutorID, agent *mesos.AgentID, data []byte)
	// AgentLost is a FAILURE event without an executor: the agent is gone.
	AgentLost(d Driver, agent *mesos.AgentID)
	// ExecutorLost is a FAILURE event for an executor; status is its exit
	// status (wait status as the agent reported it), or -1 when unknown.
	ExecutorLost(d Driver, executor *mesos.ExecutorID, agent *mesos.AgentID, status int)
	// Error is called when the master refuses the framework (an ERROR
	// event, or a SUBSCRIBE answered with a client error). It is fatal: Run
	// returns a *FatalError right after.
	Error(d Driver, message string)
}

// BaseScheduler implements every Scheduler method as a no-op; embed it to
// implement only the callbacks you need.
type BaseScheduler struct{}

func (BaseScheduler) Registered(Driver, *mesos.FrameworkID, *mesos.MasterInfo)           {}
func (BaseScheduler) Reregistered(Driver, *mesos.MasterInfo)                             {}
func (BaseScheduler) Disconnected(Driver)                                                {}
func (BaseScheduler) ResourceOffers(Driver, []*mesos.Offer)                              {}
func (BaseScheduler) OfferRescinded(Driver, *mesos.OfferID)                              {}
func (BaseScheduler) StatusUpdate(Driver, *mesos.TaskStatus)                             {}
func (BaseScheduler) FrameworkMessage(Driver, *mesos.ExecutorID, *mesos.AgentID, []byte) {}
func (BaseScheduler) AgentLost(Driver, *mesos.AgentID)                                   {}
func (BaseScheduler) ExecutorLost(Driver, *mesos.ExecutorID, *mesos.AgentID, int)        {}
func (BaseScheduler) Error(Driver, string)                                               {}

// Driver is what a Scheduler uses to talk to the master. Every call but Stop
// fails with ErrNotSubscribed while the driver has no subscription (before
// the first SUBSCRIBED and between a Disconnected and the next
// Reregistered); the master answers calls with 202, so a nil error means
// the master took the call, not that it succeeded.
type Driver interface {
	// FrameworkID is the ID the master assigned, nil before the first
	// subscription.
	FrameworkID() *mesos.FrameworkID

	// LaunchTasks accepts the offers with one LAUNCH of tasks.
	LaunchTasks(ctx context.Context, offerIDs []*mesos.OfferID, tasks []*mesos.TaskInfo, filters *mesos.Filters) error
	// AcceptOffers accepts the offers with the given operations.
	AcceptOffers(ctx context.Context, offerIDs []*mesos.OfferID, ops []*mesos.Offer_Operation, filters *mesos.Filters) error
	DeclineOffer(ctx context.Context, id *mesos.OfferID, filters *mesos.Filters) error
	// ReviveOffers removes filters and un-suppresses all roles.
	ReviveOffers(ctx context.Context) error
	// SuppressOffers stops offers for all roles until ReviveOffers.
	SuppressOffers(ctx context.Context) error
	// KillTask asks for a task to be killed; agentID may be nil.
	KillTask(ctx context.Context, id *mesos.TaskID, agentID *mesos.AgentID) error
	// AcknowledgeStatusUpdate acknowledges a status. Statuses without a
	// uuid (answers to reconciliation, some master-generated updates) need
	// no acknowledgement, and the call does nothing for them. With implicit
	// acknowledgements (the default) it is an error to call it.
	AcknowledgeStatusUpdate(ctx context.Context, status *mesos.TaskStatus) error
	// ReconcileTasks asks for the latest state of the given tasks (task_id
	// and, if known, agent_id are used); none asks for all known tasks.
	ReconcileTasks(ctx context.Context, statuses []*mesos.TaskStatus) error
	SendFrameworkMessage(ctx context.Context, executor *mesos.ExecutorID, agent *mesos.AgentID, data []byte) error

	// Stop ends Run. With failover=false it first tears the framework down
	// (the master kills its tasks and forgets it); with failover=true the
	// framework stays registered for its failover_timeout so another
	// scheduler can subscribe with the same ID. It does not wait for Run to
	// return, so it is safe to call from a callback.
	Stop(failover bool) error
}
