package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/agent/checkpoint"
	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/container"
	"github.com/corral/corral/container/containerizer"
)

// recoveryStats says what the agent's start-up recovery found and did
// (logged, and shown in /state as "recovery").
type recoveryStats struct {
	done     bool
	duration time.Duration
	// discarded says why nothing was re-attached (a reboot,
	// --recover=cleanup), empty otherwise.
	discarded       string
	frameworks      int
	executors       int
	tasks           int
	running         int // containers re-attached
	ended           int // containers that ended while the agent was down
	relaunched      int // containers that never started, launched now
	gone            int // tasks reported gone (reboot, cleanup, lost records)
	pendingUpdates  int // unacknowledged updates to resend
	inconsistencies int
	truncated       int
	// unrecoverable counts executors strict recovery found damaged
	// checkpoints in: their containers were destroyed as orphans and their
	// unfinished tasks are among the gone.
	unrecoverable int
}

func (r recoveryStats) json() map[string]any {
	return map[string]any{
		"done": r.done, "duration_secs": r.duration.Seconds(), "discarded": r.discarded,
		"frameworks": r.frameworks, "executors": r.executors, "tasks": r.tasks,
		"containers_running": r.running, "containers_ended": r.ended, "containers_relaunched": r.relaunched,
		"tasks_gone": r.gone, "pending_updates": r.pendingUpdates,
		"inconsistencies": r.inconsistencies, "truncated_streams": r.truncated,
		"executors_unrecoverable": r.unrecoverable,
	}
}

// recover rebuilds the agent from its checkpoints before it serves or
// registers: frameworks, executors and tasks come back; containers still
// running are re-attached, those that ended while the agent was down report
// how they ended, those that never started are launched; unacknowledged
// status updates are queued again in order; everything no checkpoint claims
// is destroyed. After a reboot (or with --recover=cleanup) nothing is
// re-attached: every container is destroyed and every unfinished task is
// reported gone.
//
// With --strict (the default) damaged checkpoints of the node — the agent's
// info, a framework's — stop the agent, as in Mesos. Damage inside one
// executor stops only that executor: it is not re-attached, its containers
// go as orphans, and its unfinished tasks are reported TASK_GONE (TASK_LOST
// to frameworks that are not partition-aware) with
// REASON_EXECUTOR_TERMINATED and a message naming the damaged file. Mesos'
// --strict aborts the agent on any damage.
//
// Recovery needs no free space on the work_dir: a full disk does not keep
// the agent from starting (checkpoint/space.go).
func (a *Agent) recover(ctx context.Context) error {
	start := time.Now()
	st, err := a.store.Recover(ctx, !a.cfg.NonStrict)
	readDone := time.Now()
	if err != nil {
		return fmt.Errorf("recovering the checkpoints in %s: %w (with --strict=false the agent skips what is damaged and recovers the rest)", a.store.Dir(), err)
	}
	stats := recoveryStats{inconsistencies: len(st.Inconsistencies), truncated: st.Truncated}
	for _, inc := range st.Inconsistencies {
		a.log.Warn("damaged checkpoint skipped", "path", inc.Path, "err", inc.Err)
	}
	switch {
	case st.Rebooted:
		stats.discarded = fmt.Sprintf("the node rebooted since the agent's last run (boot id %s, now %s)", st.BootID, st.CurrentBootID)
	case a.cfg.Recover == RecoverCleanup:
		stats.discarded = "the agent started with --recover=cleanup"
	}

	a.mu.Lock()
	a.bootID = st.CurrentBootID
	if st.AgentID != "" {
		a.agentID = st.AgentID
	}
	live, damaged := a.rebuildLocked(ctx, st, &stats)
	a.mu.Unlock()

	// The containers: re-attached, or all destroyed.
	var configs []*container.Config
	if stats.discarded == "" {
		for _, ex := range live {
			configs = append(configs, a.recoveryConfigs(ex)...)
		}
	}
	rebuilt := time.Now()
	found, err := a.cz.Recover(ctx, configs)
	if err != nil {
		a.log.Error("container recovery was incomplete", "err", err)
	}
	containersDone := time.Now()
	if st.Rebooted {
		// The runtime directory is meant to be a tmpfs, gone with the boot.
		a.clearRuntime()
	}

	var actions, discards []func()
	for _, ex := range live {
		if stats.discarded != "" {
			discards = append(discards, a.discardExecutor(ex, stats.discarded, &stats))
			continue
		}
		actions = append(actions, a.resumeExecutor(ex, found, &stats)...)
	}
	// After a reboot the tasks' ends are recorded before the new boot id
	// is: a crash in between must not let the next start take the runs for
	// this boot's and launch their tasks again.
	var wg sync.WaitGroup
	slots := make(chan struct{}, 16)
	for _, d := range discards {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			d()
		})
	}
	wg.Wait()
	a.mu.Lock()
	isDamaged := map[*executor]bool{}
	for _, d := range damaged {
		isDamaged[d.ex] = true
		// Their containers went with the orphans above.
		for _, t := range d.ex.tasks {
			if !t.state.IsTerminal() {
				stats.gone++
				actions = append(actions, func() {
					a.taskUpdate(t, fromAgent, goneState(d.ex.fw), mesos.TaskStatus_REASON_EXECUTOR_TERMINATED.Enum(), d.why, nil)
				})
			}
		}
	}
	for _, fw := range a.frameworks {
		for _, ex := range fw.ended {
			if isDamaged[ex] {
				continue // reported above
			}
			for _, t := range ex.tasks {
				if !t.state.IsTerminal() {
					// Damaged records: a run that ended without its task's
					// end recorded. Nothing can say how it ended.
					stats.gone++
					actions = append(actions, func() {
						a.taskUpdate(t, fromAgent, goneState(fw), mesos.TaskStatus_REASON_AGENT_RESTARTED.Enum(),
							"The task's executor ended without the task's end being recorded", nil)
					})
				}
			}
		}
	}
	// Before anything recovered goes on (and may end): what is on disk
	// and not live now is the collector's again.
	a.recoverGCLocked()
	a.mu.Unlock()
	for _, act := range actions {
		go act()
	}

	// Recorded last: until now a crash must make the next start see the
	// same boot history.
	if err := a.store.WriteBootID(ctx); err != nil {
		return fmt.Errorf("recording the boot id: %w", err)
	}
	stats.done, stats.duration = true, time.Since(start)
	a.mu.Lock()
	a.recovery = stats
	a.mu.Unlock()
	a.log.Info("recovered", "agent", a.ID(), "duration", stats.duration.Round(time.Microsecond),
		"reading", readDone.Sub(start).Round(time.Microsecond), "rebuilding", rebuilt.Sub(readDone).Round(time.Microsecond),
		"containers", containersDone.Sub(rebuilt).Round(time.Microsecond), "frameworks", stats.frameworks,
		"executors", stats.executors, "tasks", stats.tasks, "containers_running", stats.running, "containers_ended", stats.ended,
		"containers_relaunched", stats.relaunched, "tasks_gone", stats.gone, "pending_updates", stats.pendingUpdates,
		"inconsistencies", stats.inconsistencies, "truncated_streams", stats.truncated,
		"executors_unrecoverable", stats.unrecoverable, "discarded", stats.discarded)
	return nil
}

// rebuildLocked makes the frameworks, executors and tasks of the recovered
// state and queues their unacknowledged updates. It returns the executors
// whose runs had not ended, and the runs of executors strict recovery found
// damaged (rebuilt as ended). What is finished (every update of a terminal
// task acknowledged) is not rebuilt, and its records go.
func (a *Agent) rebuildLocked(ctx context.Context, st *checkpoint.State, stats *recoveryStats) (live []*executor, damaged []damagedRun) {
	for _, fwID := range sortedKeys(st.Frameworks) {
		rf := st.Frameworks[fwID]
		fw := &framework{id: fwID, info: rf.Info, recorded: rf.Info, executors: map[string]*executor{}, tasks: map[string]*task{}}
		for _, exID := range sortedKeys(rf.Executors) {
			re := rf.Executors[exID]
			if len(re.Damaged) > 0 {
				for _, d := range a.rebuildDamaged(ctx, st.AgentID, fw, re, stats) {
					for id, t := range d.ex.tasks {
						fw.tasks[id] = t
					}
					fw.ended = append(fw.ended, d.ex)
					damaged = append(damaged, d)
				}
				continue
			}
			runs := sortedKeys(re.Runs)
			// Oldest first, so that of two unfinished runs (damage) the newest
			// is the live one.
			sort.SliceStable(runs, func(i, j int) bool {
				return re.Runs[runs[i]].Info.GetLaunchedAt() < re.Runs[runs[j]].Info.GetLaunchedAt()
			})
			for _, cid := range runs {
				run := re.Runs[cid]
				ex := a.rebuildRun(st.AgentID, fw, re, run, stats)
				if ex == nil {
					continue
				}
				stats.executors++
				for id, t := range ex.tasks {
					fw.tasks[id] = t
				}
				if run.Completed {
					ex.ended = true
					fw.ended = append(fw.ended, ex)
					continue
				}
				if prev := fw.executors[exID]; prev != nil {
					a.log.Warn("two unfinished runs of one executor; the older is taken as ended", "executor", exID,
						"older", prev.containerID, "newer", ex.containerID)
					prev.ended = true
					fw.ended = append(fw.ended, prev)
					live = removeExecutor(live, prev)
				}
				fw.executors[exID] = ex
				live = append(live, ex)
			}
		}
		if len(fw.executors) == 0 && len(fw.ended) == 0 {
			// Nothing left to do for it.
			if err := a.store.RemoveFramework(ctx, checkpoint.Key{Agent: st.AgentID, Framework: fwID}); err != nil {
				a.log.Warn("removing finished framework's checkpoints", "framework", fwID, "err", err)
			}
			continue
		}
		stats.frameworks++
		a.frameworks[fwID] = fw
	}
	return live, damaged
}

// damagedRun is a run of an executor that cannot be recovered, and what its
// tasks are told.
type damagedRun struct {
	ex  *executor
	why string
}

// rebuildDamaged makes ended executors of the runs of an executor whose
// checkpoints strict recovery found damaged, with every task of them it
// can name: by its record, or, where that is unreadable, by its
// directory's name (Mesos' layout: tasks/<task id>). Their containers are
// not claimed, so container recovery destroys them as orphans; the agent
// then reports the unfinished tasks gone, and a task's records go when
// its end is acknowledged, as for any ended run. Pending updates that
// could be read are resent. Runs with nothing left to report go at once.
func (a *Agent) rebuildDamaged(ctx context.Context, agentID string, fw *framework, re *checkpoint.Executor, stats *recoveryStats) []damagedRun {
	stats.unrecoverable++
	cause := re.Damaged[0]
	damage := cause.Err.Error()
	if !strings.Contains(damage, cause.Path) {
		damage = cause.Path + ": " + damage
	}
	why := fmt.Sprintf("The agent could not recover the task's executor %s from its checkpoints: %s", re.ID, damage)
	if n := len(re.Damaged) - 1; n > 0 {
		why += fmt.Sprintf(" (and %d more damaged)", n)
	}
	why += "; its containers were destroyed"
	a.log.Error("executor cannot be recovered from its damaged checkpoints; its containers are destroyed and its tasks reported gone",
		"framework", fw.id, "executor", re.ID, "damaged", re.Damaged)
	info := re.Info
	if info == nil {
		info = &mesos.ExecutorInfo{ExecutorId: &mesos.ExecutorID{Value: proto.String(re.ID)}, FrameworkId: &mesos.FrameworkID{Value: proto.String(fw.id)}}
	}
	var out []damagedRun
	for _, cid := range sortedKeys(re.Runs) {
		run := re.Runs[cid]
		ri := run.Info
		ex := &executor{
			fw: fw, id: re.ID, info: info, agentID: agentID, containerID: cid,
			directory: ri.GetSandbox(), tasks: map[string]*task{}, recorded: true, ended: true,
			launched: time.Unix(0, int64(ri.GetLaunchedAt()*1e9)),
		}
		ex.runner = newRunner(a, ex, damagedKind(re, run))
		if ex.directory == "" {
			ex.directory = a.sandboxDir(agentID, fw.id, re.ID, cid)
		}
		for _, id := range sortedKeys(run.Tasks) {
			rt := run.Tasks[id]
			pending := rt.Pending()
			state, ok := rt.LatestState()
			if ok && state.IsTerminal() && len(pending) == 0 {
				continue // finished and acknowledged: its records go with the run's
			}
			ti := rt.Record.GetInfo()
			if ti == nil {
				ti = &mesos.TaskInfo{
					Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)},
					AgentId: &mesos.AgentID{Value: proto.String(agentID)},
				}
			}
			a.rebuildTask(ex, id, ti, rt, stats)
		}
		if len(ex.tasks) == 0 {
			if err := a.store.RemoveRun(ctx, runKey(ex)); err != nil {
				a.log.Warn("removing the checkpoints of a damaged run with nothing to report", "container", cid, "err", err)
			}
			continue
		}
		stats.executors++
		out = append(out, damagedRun{ex: ex, why: why})
	}
	if len(out) == 0 {
		if err := a.store.RemoveExecutor(ctx, checkpoint.Key{Agent: agentID, Framework: fw.id, Executor: re.ID}); err != nil {
			a.log.Warn("removing the checkpoints of a damaged executor with nothing to report", "executor", re.ID, "err", err)
		}
	}
	return out
}

// rebuildRun makes the executor of one recovered run, with the tasks that
// still have something to report, and queues their pending updates. It
// returns nil for a run with nothing left (its records are removed).
func (a *Agent) rebuildRun(agentID string, fw *framework, re *checkpoint.Executor, run *checkpoint.Run, stats *recoveryStats) *executor {
	ri := run.Info
	ex := &executor{
		fw: fw, id: re.ID, info: re.Info, agentID: agentID, containerID: run.ContainerID,
		directory: ri.GetSandbox(), tasks: map[string]*task{}, recorded: true,
		launched: time.Unix(0, int64(ri.GetLaunchedAt()*1e9)),
	}
	ex.runner = newRunner(a, ex, ri.GetKind())
	ex.resources, _ = resources.New(re.Info.GetResources())
	k := checkpoint.Key{Agent: agentID, Framework: fw.id, Executor: re.ID, Container: run.ContainerID}
	for _, id := range sortedKeys(run.Tasks) {
		rt := run.Tasks[id]
		pending := rt.Pending()
		state, ok := rt.LatestState()
		if ok && state.IsTerminal() && len(pending) == 0 {
			// Finished and acknowledged: the agent died before forgetting it.
			tk := k
			tk.Task = id
			if err := a.store.RemoveTask(context.Background(), tk); err != nil {
				a.log.Warn("removing finished task's checkpoints", "task", id, "err", err)
			}
			continue
		}
		a.rebuildTask(ex, id, rt.Record.GetInfo(), rt, stats)
	}
	// A builtin executor's run is its tasks: with none left, it is over.
	// A custom executor may be running with no task.
	if len(ex.tasks) == 0 && (run.Completed || ex.runner.traits().endsWithTasks) {
		if !run.Completed {
			// Its containers are not claimed and go as orphans.
			a.log.Info("dropping the records of a finished run", "executor", re.ID, "container", run.ContainerID)
		}
		if err := a.store.RemoveRun(context.Background(), k); err != nil {
			a.log.Warn("removing finished run's checkpoints", "container", run.ContainerID, "err", err)
		}
		return nil
	}
	return ex
}

func removeExecutor(list []*executor, ex *executor) []*executor {
	for i, e := range list {
		if e == ex {
			return append(list[:i], list[i+1:]...)
		}
	}
	return list
}

// recoveryConfigs are the containers of a live run as the isolators must
// take them back: IDs, sandboxes and the resources and labels they were
// launched (or last resized) with.
func (a *Agent) recoveryConfigs(ex *executor) []*container.Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return ex.runner.recoveryConfigsLocked()
}

// resumeExecutor decides, from what container recovery found, how each of
// a live run's tasks goes on; the returned actions run once recovery is
// complete.
func (a *Agent) resumeExecutor(ex *executor, found map[string]*containerizer.Recovered, stats *recoveryStats) []func() {
	a.mu.Lock()
	defer a.mu.Unlock()
	return ex.runner.resumeLocked(found, stats)
}

// discardExecutor ends a live run whose containers recovery destroyed (a
// reboot, --recover=cleanup): its unfinished tasks are gone.
func (a *Agent) discardExecutor(ex *executor, why string, stats *recoveryStats) func() {
	a.mu.Lock()
	var open []*task
	for _, t := range ex.tasks {
		if !t.state.IsTerminal() {
			open = append(open, t)
		}
	}
	stats.gone += len(open)
	a.mu.Unlock()
	return func() {
		for _, t := range open {
			a.taskUpdate(t, fromAgent, goneState(ex.fw), mesos.TaskStatus_REASON_AGENT_RESTARTED.Enum(), "Task is gone: "+why, nil)
		}
		a.executorEnded(ex, nil)
	}
}

// startReregistrationTimers gives every recovered custom executor
// --executor_reregistration_timeout to re-subscribe; one that does not is
// destroyed and its tasks are reported gone with
// REASON_EXECUTOR_REREGISTRATION_TIMEOUT.
func (a *Agent) startReregistrationTimers() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, fw := range a.frameworks {
		for _, ex := range fw.executors {
			ex.runner.startReregistrationLocked()
		}
	}
}

// clearRuntime empties the runtime directory's container records after a
// reboot.
func (a *Agent) clearRuntime() {
	dir := filepath.Join(a.cfg.RuntimeDir, "containers")
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		a.log.Warn("clearing the runtime directory", "err", err)
	}
	for _, e := range entries {
		_ = os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// rebuildTask makes the task of a recovered record in ex, with the states
// of its updates, and queues its pending updates for resending. info is
// its TaskInfo (its record's, or one made from its ID where that record is
// damaged).
func (a *Agent) rebuildTask(ex *executor, id string, info *mesos.TaskInfo, rt *checkpoint.Task, stats *recoveryStats) {
	rec := rt.Record
	t := &task{
		ex: ex, info: info, state: mesos.TaskState_TASK_STAGING, group: int(rec.GetGroup()),
		containerID: rec.GetContainerId().GetValue(), sandbox: rec.GetSandbox(), killing: rec.GetKilling(),
	}
	if state, ok := rt.LatestState(); ok {
		t.state = state
	}
	pending := rt.Pending()
	var acked [][]byte
	for _, u := range rt.Updates {
		s := u.Update.GetStatus()
		t.statuses = append(t.statuses, &mesos.TaskStatus{TaskId: s.TaskId, State: s.State, Timestamp: s.Timestamp, ContainerStatus: s.ContainerStatus})
		if u.Acked {
			acked = append(acked, s.GetUuid())
		}
	}
	ex.tasks[id] = t
	stats.tasks++
	stats.pendingUpdates += len(pending)
	a.updates.Recover(ex.fw.id, id, pending, acked)
}
