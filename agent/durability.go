package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/corral/corral/agent/checkpoint"
	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/ids"
	"google.golang.org/protobuf/proto"
)

// Checkpointing, Mesos' rules: only frameworks with FrameworkInfo.checkpoint
// are recorded, and only their tasks survive an agent restart. Everything
// is recorded before it is acted on — the framework, executor, run and
// tasks before a launch (or a delivery to an executor), an update before it
// is forwarded, an acknowledgement before the update leaves the retry queue,
// a kill before the first signal — so an agent killed at any instruction
// comes back knowing all it may have done. Tasks of frameworks that do not
// checkpoint die with the agent: a stopping agent destroys them, and a
// restarted one finds their containers unclaimed and destroys them as
// orphans; the master reports them TASK_LOST (TASK_GONE when partition-aware)
// with REASON_AGENT_RESTARTED when the agent re-registers without them.
//
// A checkpoint that cannot be written stops the agent (fatal), as in Mesos
// — except for want of space, which must not take the node down when a
// task fills the work_dir. The store gives the writes that keep running
// work correct (status updates, acknowledgements, a run's end, a kill, a
// resize) a reserve and waits for space beyond it (checkpoint/space.go);
// a launch that cannot be recorded is not launched: its tasks fail
// (launchNotRecorded) and the agent goes on.

func runKey(ex *executor) checkpoint.Key {
	return checkpoint.Key{Agent: ex.agentID, Framework: ex.fw.id, Executor: ex.id, Container: ex.containerID}
}

func taskKey(t *task) checkpoint.Key {
	k := runKey(t.ex)
	k.Task = t.info.GetTaskId().GetValue()
	return k
}

// runInfoLocked is the run's record: its container as last launched or
// resized.
func (a *Agent) runInfoLocked(ex *executor) *checkpoint.RunInfo {
	return &checkpoint.RunInfo{
		ContainerId: &mesos.ContainerID{Value: proto.String(ex.containerID)},
		Kind:        ex.runner.traits().kind.Enum(),
		Sandbox:     proto.String(ex.directory),
		BootId:      proto.String(a.bootID),
		LaunchedAt:  proto.Float64(float64(ex.launched.UnixNano()) / 1e9),
		User:        proto.String(a.user(ex.fw, ex.info.GetCommand())),
		Resources:   executorResources(ex),
		Command:     ex.info.GetCommand(),
		Container:   ex.info.GetContainer(),
	}
}

func taskRecordLocked(t *task) *checkpoint.TaskRecord {
	rec := &checkpoint.TaskRecord{
		Info:    t.info,
		Sandbox: proto.String(t.sandbox),
		Group:   proto.Uint32(uint32(t.group)),
		Killing: proto.Bool(t.killing),
	}
	if t.containerID != "" {
		rec.ContainerId = &mesos.ContainerID{Value: proto.String(t.containerID)}
	}
	return rec
}

// checkpointLaunch records what a launch is about to create: the framework
// (when new or changed), the executor and its run (when new), the tasks.
func (a *Agent) checkpointLaunch(fw *framework, ex *executor, tasks []*task) error {
	a.mu.Lock()
	if !fw.info.GetCheckpoint() {
		a.mu.Unlock()
		return nil
	}
	ctx := context.Background()
	var fwInfo *mesos.FrameworkInfo
	if fw.recorded == nil || !proto.Equal(fw.recorded, fw.info) {
		fwInfo = fw.info
	}
	var exInfo *mesos.ExecutorInfo
	var run *checkpoint.RunInfo
	if !ex.recorded {
		exInfo, run = ex.info, a.runInfoLocked(ex)
	}
	recs := make([]*checkpoint.TaskRecord, len(tasks))
	for i, t := range tasks {
		recs[i] = taskRecordLocked(t)
	}
	k := runKey(ex)
	// The framework's removals decided before this launch are done before
	// it records anything (removeCheckpointLocked).
	removals := a.removing[fw.id]
	a.mu.Unlock()
	if removals != nil {
		<-removals
	}

	if fwInfo != nil {
		if err := a.store.PutFramework(ctx, k, fwInfo); err != nil {
			return fmt.Errorf("checkpointing framework %s: %w", fw.id, err)
		}
	}
	if run != nil {
		if err := a.store.PutExecutor(ctx, k, exInfo); err != nil {
			return fmt.Errorf("checkpointing executor %s: %w", ex.id, err)
		}
		if err := a.store.PutRun(ctx, k, run); err != nil {
			return fmt.Errorf("checkpointing run %s: %w", ex.containerID, err)
		}
	}
	for i, t := range tasks {
		tk := k
		tk.Task = t.info.GetTaskId().GetValue()
		if err := a.store.PutTask(ctx, tk, recs[i]); err != nil {
			return fmt.Errorf("checkpointing task %s: %w", tk.Task, err)
		}
	}
	a.mu.Lock()
	if fwInfo != nil {
		fw.recorded = fwInfo
	}
	ex.recorded = true
	a.mu.Unlock()
	return nil
}

// checkpointTask records a task's record again (it changed: a kill began).
func (a *Agent) checkpointTask(t *task) error {
	a.mu.Lock()
	if !t.ex.fw.info.GetCheckpoint() {
		a.mu.Unlock()
		return nil
	}
	rec, k := taskRecordLocked(t), taskKey(t)
	a.mu.Unlock()
	if err := a.store.PutTask(context.Background(), k, rec); err != nil {
		return fmt.Errorf("checkpointing task %s: %w", k.Task, err)
	}
	return nil
}

// checkpointRun records a run again (its container was resized).
func (a *Agent) checkpointRun(ex *executor) error {
	a.mu.Lock()
	if !ex.fw.info.GetCheckpoint() || !ex.recorded {
		a.mu.Unlock()
		return nil
	}
	run, k := a.runInfoLocked(ex), runKey(ex)
	a.mu.Unlock()
	if err := a.store.PutRun(context.Background(), k, run); err != nil {
		return fmt.Errorf("checkpointing run %s: %w", ex.containerID, err)
	}
	return nil
}

// markRunCompleted records that every process of the run is gone.
func (a *Agent) markRunCompleted(ex *executor) {
	a.mu.Lock()
	ckpt := ex.fw.info.GetCheckpoint() && ex.recorded
	k := runKey(ex)
	a.mu.Unlock()
	if !ckpt {
		return
	}
	if err := a.store.MarkRunCompleted(context.Background(), k); err != nil {
		a.fatal(fmt.Errorf("checkpointing the end of run %s: %w", ex.containerID, err))
	}
}

// taskForgotten reports whether t is no longer among the agent's tasks
// (acknowledged terminal, or its framework shut down): its records may be
// gone, and a write to them failing is no fault of the store.
func (a *Agent) taskForgotten(t *task) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.findTaskLocked(t.ex.fw.id, t.info.GetTaskId().GetValue()) != t
}

// checkpointAck is the update manager's hook: an acknowledgement is
// appended to its task's stream before the update leaves the retry queue.
func (a *Agent) checkpointAck(u *cluster.StatusUpdate) error {
	fwID, taskID := u.GetFrameworkId().GetValue(), u.GetStatus().GetTaskId().GetValue()
	a.mu.Lock()
	t := a.findTaskLocked(fwID, taskID)
	if t == nil || !t.ex.fw.info.GetCheckpoint() {
		a.mu.Unlock()
		return nil
	}
	k := taskKey(t)
	a.mu.Unlock()
	if err := a.store.AppendAck(context.Background(), k, u.GetStatus().GetUuid()); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// The task has no records: its launch could not be recorded
			// (launchNotRecorded), or they were removed. Nothing to keep.
			return nil
		}
		err = fmt.Errorf("checkpointing the acknowledgement of %s of task %s: %w", u.GetStatus().GetState(), taskID, err)
		if !a.taskForgotten(t) {
			a.fatal(err)
		}
		// Forgotten meanwhile (its framework shut down): there is nothing
		// left to record.
		return err
	}
	return nil
}

// launchNotRecorded handles a launch whose checkpoint failed (runTasks),
// before anything of it was started or delivered. Without space on the
// work_dir (the store admits new work only while there is room beyond its
// reserve for status updates) the launch fails and the agent goes on: what
// was recorded of it is removed, each of its tasks ends TASK_FAILED with
// REASON_CONTAINER_LAUNCH_FAILED and a message saying why (an update not
// recorded either: a restart before its acknowledgement finds nothing of
// the task, and the master reports it lost), and an executor made for it
// ends. Any other error stops the agent, as Mesos aborts: a store that
// fails otherwise cannot be trusted.
func (a *Agent) launchNotRecorded(fw *framework, ex *executor, tasks []*task, err error) {
	if !errors.Is(err, checkpoint.ErrNoSpace) {
		a.fatal(err)
		return
	}
	a.mu.Lock()
	fresh := !ex.recorded
	k := runKey(ex)
	a.mu.Unlock()
	a.log.Error("launch not checkpointed for want of space on the work_dir; its tasks fail", "framework", fw.id,
		"executor", ex.id, "tasks", len(tasks), "err", err)
	ctx := context.Background()
	for _, t := range tasks {
		tk := k
		tk.Task = t.info.GetTaskId().GetValue()
		if rerr := a.store.RemoveTask(ctx, tk); rerr != nil {
			a.log.Warn("removing the records of a launch that failed", "task", tk.Task, "err", rerr)
		}
	}
	if fresh {
		// A run recorded without its tasks would be launched again by
		// the next recovery.
		if rerr := a.store.RemoveRun(ctx, k); rerr != nil {
			a.log.Warn("removing the records of a launch that failed", "container", ex.containerID, "err", rerr)
		}
	}
	msg := "No space left on the agent's work_dir to checkpoint the task before its launch: " + err.Error()
	a.counters.containerLaunchErrors.Add(uint64(len(tasks)))
	for _, t := range tasks {
		a.unrecordedEnd(t, mesos.TaskState_TASK_FAILED, mesos.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED, msg)
	}
	a.mu.Lock()
	open := false
	for _, t := range ex.tasks {
		open = open || !t.state.IsTerminal()
	}
	a.mu.Unlock()
	// A builtin executor's run is its tasks; a custom executor made for
	// this launch was never started.
	if !open && (fresh || ex.runner.traits().endsWithTasks) {
		a.executorEnded(ex, nil)
	}
}

// unrecordedEnd ends a task whose launch was never recorded, as
// taskUpdate and statusUpdate do, but without a checkpoint: there is no
// record to append it to (and there may be no room to make one).
func (a *Agent) unrecordedEnd(t *task, state mesos.TaskState, reason mesos.TaskStatus_Reason, msg string) {
	s := &mesos.TaskStatus{
		TaskId:     t.info.GetTaskId(),
		State:      state.Enum(),
		Source:     fromAgent.Enum(),
		Reason:     reason.Enum(),
		Message:    proto.String(msg),
		Timestamp:  proto.Float64(float64(time.Now().UnixNano()) / 1e9),
		Uuid:       ids.UUID(),
		ExecutorId: &mesos.ExecutorID{Value: proto.String(t.ex.id)},
	}
	a.sendStatus(t, s, false, nil)
}

// findTaskLocked finds a task of a live or ended executor.
func (a *Agent) findTaskLocked(fwID, taskID string) *task {
	fw := a.frameworks[fwID]
	if fw == nil {
		return nil
	}
	if t := fw.tasks[taskID]; t != nil {
		return t
	}
	for _, ex := range fw.ended {
		if t := ex.tasks[taskID]; t != nil {
			return t
		}
	}
	return nil
}

// removeCheckpointLocked removes what the framework no longer needs
// recorded. The decision is taken under the agent's lock; the removal
// (a journal record, a rename and the tree's deletion) runs after it,
// so that the lock is never held over the disk. Order is kept by
// framework: a launch of the framework records nothing before the
// removals decided before it are done (checkpointLaunch), so a removal can
// never take away what a later launch recorded again. The removals
// themselves run side by side — each removes what was already decided
// gone, whichever ends first — so their journal records share flushes;
// a removal counts as done once it and every removal before it are.
func (a *Agent) removeCheckpointLocked(fw *framework, remove func(context.Context) error) {
	if !fw.info.GetCheckpoint() {
		return
	}
	prev := a.removing[fw.id]
	done := make(chan struct{})
	a.removing[fw.id] = done
	a.background.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := remove(ctx); err != nil {
			// Left behind, it is read again at the next recovery, where
			// finished tasks are recognised and dropped.
			a.log.Warn("removing checkpoints", "framework", fw.id, "err", err)
		}
		if prev != nil {
			<-prev
		}
		a.mu.Lock()
		if a.removing[fw.id] == done {
			delete(a.removing, fw.id)
		}
		a.mu.Unlock()
		close(done)
	})
}
