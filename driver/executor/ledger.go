package executor

import (
	"bytes"
	"slices"

	executorapi "github.com/corral/corral/api/v1/executor"
	"github.com/corral/corral/api/v1/mesos"
)

// ledger remembers what the agent may not have: status updates not yet
// acknowledged, and launched tasks for which no update was acknowledged.
// A re-subscribing executor hands both back, so an agent that restarted
// between receiving and checkpointing them loses neither. Order is kept:
// updates of one task must reach the agent in the order they were sent.
//
// The ledger does no locking; the driver guards it.
type ledger struct {
	updates []*mesos.TaskStatus
	tasks   []*mesos.TaskInfo
}

func (l *ledger) addUpdate(s *mesos.TaskStatus) { l.updates = append(l.updates, s) }

// addTask remembers a launched task; a task launched again under the same ID
// replaces the first.
func (l *ledger) addTask(t *mesos.TaskInfo) {
	id := t.GetTaskId().GetValue()
	if i := slices.IndexFunc(l.tasks, func(x *mesos.TaskInfo) bool { return x.GetTaskId().GetValue() == id }); i >= 0 {
		l.tasks[i] = t
		return
	}
	l.tasks = append(l.tasks, t)
}

// acknowledge forgets the update with uuid and the task it belongs to (the
// agent acknowledging any update of a task proves it has the task). It
// reports whether the update was pending.
func (l *ledger) acknowledge(taskID string, uuid []byte) bool {
	l.tasks = slices.DeleteFunc(l.tasks, func(t *mesos.TaskInfo) bool { return t.GetTaskId().GetValue() == taskID })
	return l.dropUpdate(uuid)
}

// dropUpdate forgets an update the agent will never acknowledge.
func (l *ledger) dropUpdate(uuid []byte) bool {
	n := len(l.updates)
	l.updates = slices.DeleteFunc(l.updates, func(s *mesos.TaskStatus) bool { return bytes.Equal(s.GetUuid(), uuid) })
	return len(l.updates) < n
}

func (l *ledger) pendingUpdates() int { return len(l.updates) }

// subscribe is the SUBSCRIBE payload carrying everything pending.
func (l *ledger) subscribe() *executorapi.Call_Subscribe {
	sub := &executorapi.Call_Subscribe{UnacknowledgedTasks: slices.Clone(l.tasks)}
	for _, s := range l.updates {
		sub.UnacknowledgedUpdates = append(sub.UnacknowledgedUpdates, &executorapi.Call_Update{Status: s})
	}
	return sub
}

// updatesNotIn returns the pending updates a SUBSCRIBE payload did not
// carry: those sent while the subscription was under way, which the agent
// has therefore never seen.
func (l *ledger) updatesNotIn(sub *executorapi.Call_Subscribe) []*mesos.TaskStatus {
	var late []*mesos.TaskStatus
	for _, s := range l.updates {
		if !slices.ContainsFunc(sub.GetUnacknowledgedUpdates(), func(u *executorapi.Call_Update) bool {
			return bytes.Equal(u.GetStatus().GetUuid(), s.GetUuid())
		}) {
			late = append(late, s)
		}
	}
	return late
}
