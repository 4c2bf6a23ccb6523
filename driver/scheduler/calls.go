package scheduler

import (
	"context"
	"errors"
	"fmt"

	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/api/v1/scheduler"
)

// call sends a call on the current subscription. It holds no lock while
// the request is in flight, so callbacks can make calls freely.
func (d *HTTPDriver) call(ctx context.Context, call *scheduler.Call) error {
	d.mu.Lock()
	client, id := d.client, d.frameworkID
	d.mu.Unlock()
	if client == nil {
		return fmt.Errorf("%s: %w", call.GetType(), ErrNotSubscribed)
	}
	call.FrameworkId = id
	if err := client.Call(ctx, call, nil); err != nil {
		return fmt.Errorf("%s call: %w", call.GetType(), err)
	}
	return nil
}

// LaunchTasks accepts the offers with one LAUNCH operation.
func (d *HTTPDriver) LaunchTasks(ctx context.Context, offerIDs []*mesos.OfferID, tasks []*mesos.TaskInfo, filters *mesos.Filters) error {
	op := &mesos.Offer_Operation{
		Type:   mesos.Offer_Operation_LAUNCH.Enum(),
		Launch: &mesos.Offer_Operation_Launch{TaskInfos: tasks},
	}
	return d.AcceptOffers(ctx, offerIDs, []*mesos.Offer_Operation{op}, filters)
}

// AcceptOffers accepts the offers with the given operations.
func (d *HTTPDriver) AcceptOffers(ctx context.Context, offerIDs []*mesos.OfferID, ops []*mesos.Offer_Operation, filters *mesos.Filters) error {
	return d.call(ctx, &scheduler.Call{
		Type:   scheduler.Call_ACCEPT.Enum(),
		Accept: &scheduler.Call_Accept{OfferIds: offerIDs, Operations: ops, Filters: filters},
	})
}

// DeclineOffer declines one offer; filters.refuse_seconds keeps the agent's
// resources away for that long (Mesos' default is 5 s).
func (d *HTTPDriver) DeclineOffer(ctx context.Context, id *mesos.OfferID, filters *mesos.Filters) error {
	return d.call(ctx, &scheduler.Call{
		Type:    scheduler.Call_DECLINE.Enum(),
		Decline: &scheduler.Call_Decline{OfferIds: []*mesos.OfferID{id}, Filters: filters},
	})
}

// ReviveOffers removes all filters and un-suppresses all roles.
func (d *HTTPDriver) ReviveOffers(ctx context.Context) error {
	return d.call(ctx, &scheduler.Call{Type: scheduler.Call_REVIVE.Enum(), Revive: &scheduler.Call_Revive{}})
}

// SuppressOffers stops offers for all the framework's roles.
func (d *HTTPDriver) SuppressOffers(ctx context.Context) error {
	return d.call(ctx, &scheduler.Call{Type: scheduler.Call_SUPPRESS.Enum(), Suppress: &scheduler.Call_Suppress{}})
}

// KillTask asks for a task to be killed.
func (d *HTTPDriver) KillTask(ctx context.Context, id *mesos.TaskID, agentID *mesos.AgentID) error {
	return d.call(ctx, &scheduler.Call{
		Type: scheduler.Call_KILL.Enum(),
		Kill: &scheduler.Call_Kill{TaskId: id, AgentId: agentID},
	})
}

// errImplicitAcks is returned by AcknowledgeStatusUpdate when the driver
// acknowledges by itself: acknowledging twice would be a scheduler bug.
var errImplicitAcks = errors.New("AcknowledgeStatusUpdate needs Config.ExplicitAcks; the driver acknowledges updates itself")

// AcknowledgeStatusUpdate acknowledges a status that carries a uuid.
func (d *HTTPDriver) AcknowledgeStatusUpdate(ctx context.Context, status *mesos.TaskStatus) error {
	if !d.cfg.ExplicitAcks {
		return errImplicitAcks
	}
	return d.acknowledge(ctx, status)
}

func (d *HTTPDriver) acknowledge(ctx context.Context, status *mesos.TaskStatus) error {
	if len(status.GetUuid()) == 0 {
		// Reconciliation answers and unreliable master-generated updates
		// carry no uuid: nobody waits for an acknowledgement.
		return nil
	}
	if status.AgentId == nil {
		// ACKNOWLEDGE requires agent_id; a status with a uuid but no agent
		// cannot be acknowledged on the wire, and no agent resends it.
		d.log.Debug("not acknowledging a status without agent_id", "task", status.GetTaskId().GetValue())
		return nil
	}
	return d.call(ctx, &scheduler.Call{
		Type: scheduler.Call_ACKNOWLEDGE.Enum(),
		Acknowledge: &scheduler.Call_Acknowledge{
			AgentId: status.GetAgentId(), TaskId: status.GetTaskId(), Uuid: status.GetUuid(),
		},
	})
}

// ReconcileTasks asks the master for the latest state of the given tasks,
// or of all its tasks when statuses is empty. Answers come as StatusUpdate
// callbacks without a uuid.
func (d *HTTPDriver) ReconcileTasks(ctx context.Context, statuses []*mesos.TaskStatus) error {
	rc := &scheduler.Call_Reconcile{}
	for _, s := range statuses {
		rc.Tasks = append(rc.Tasks, &scheduler.Call_Reconcile_Task{TaskId: s.GetTaskId(), AgentId: s.AgentId})
	}
	return d.call(ctx, &scheduler.Call{Type: scheduler.Call_RECONCILE.Enum(), Reconcile: rc})
}

// SendFrameworkMessage sends data to an executor.
func (d *HTTPDriver) SendFrameworkMessage(ctx context.Context, executor *mesos.ExecutorID, agent *mesos.AgentID, data []byte) error {
	return d.call(ctx, &scheduler.Call{
		Type:    scheduler.Call_MESSAGE.Enum(),
		Message: &scheduler.Call_Message{ExecutorId: executor, AgentId: agent, Data: data},
	})
}

// Stop ends Run; see Driver.Stop. Only the first call has an effect. The
// returned error is that of the TEARDOWN call; Run stops regardless.
func (d *HTTPDriver) Stop(failover bool) error {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return nil
	}
	// Marked before TEARDOWN goes out: the master closes the stream in
	// answer, and Run must not take that for a drop and re-subscribe.
	d.stopped = true
	client, id := d.client, d.frameworkID
	d.client = nil
	d.mu.Unlock()
	defer close(d.stop)

	if failover || client == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.CallTimeout)
	defer cancel()
	err := client.Call(ctx, &scheduler.Call{FrameworkId: id, Type: scheduler.Call_TEARDOWN.Enum()}, nil)
	if err != nil {
		d.log.Warn("tearing down framework", "framework", id.GetValue(), "err", err)
		return fmt.Errorf("TEARDOWN call: %w", err)
	}
	d.log.Info("framework torn down", "framework", id.GetValue())
	return nil
}
