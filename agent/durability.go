package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/corral/corral/agent/checkpoint"
	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/v1/mesos"
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

func runKey(ex *executor) checkpoint.Key {
	return checkpoint.Key{Agent: ex.agentID, Framework: ex.fw.id, Executor: ex.id, Container: ex.containerID}
}

func taskKey(t *task) checkpoint.Key {
	k := runKey(t.ex)
	k.Task = t.info.GetTaskId().GetValue()
	return k
}

func runKind(k executorKind) checkpoint.RunInfo_Kind {
	switch k {
	case commandExecutor:
		return checkpoint.RunInfo_COMMAND
	case defaultExecutor:
		return checkpoint.RunInfo_DEFAULT
	}
	return checkpoint.RunInfo_HTTP
}

func kindOf(k checkpoint.RunInfo_Kind) executorKind {
	switch k {
	case checkpoint.RunInfo_COMMAND:
		return commandExecutor
	case checkpoint.RunInfo_DEFAULT:
		return defaultExecutor
	}
	return httpExecutor
}

// runInfoLocked is the run's record: its container as last launched or
// resized.
func (a *Agent) runInfoLocked(ex *executor) *checkpoint.RunInfo {
	return &checkpoint.RunInfo{
		ContainerId: &mesos.ContainerID{Value: proto.String(ex.containerID)},
		Kind:        runKind(ex.kind).Enum(),
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
	a.mu.Unlock()

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
		err = fmt.Errorf("checkpointing the acknowledgement of %s of task %s: %w", u.GetStatus().GetState(), taskID, err)
		a.mu.Lock()
		gone := a.findTaskLocked(fwID, taskID) != t
		a.mu.Unlock()
		if !gone {
			a.fatal(err)
		}
		// Forgotten meanwhile (its framework shut down): there is nothing
		// left to record.
		return err
	}
	return nil
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
// recorded. It runs under the agent's lock, so that a launch that records
// the same entity again cannot interleave with the removal.
func (a *Agent) removeCheckpointLocked(fw *framework, remove func(context.Context) error) {
	if !fw.info.GetCheckpoint() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := remove(ctx); err != nil {
		// Left behind, it is read again at the next recovery, where
		// finished tasks are recognised and dropped.
		a.log.Warn("removing checkpoints", "framework", fw.id, "err", err)
	}
}
