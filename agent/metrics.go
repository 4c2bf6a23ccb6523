package agent

import (
	"sync/atomic"
	"time"

	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/metrics"
)

// counters are the agent's running totals for /metrics/snapshot, since
// this start (as Mesos' are). They are their own owner (atomic): counting
// takes no lock of the agent's.
type counters struct {
	// tasksEnded counts tasks by the terminal state they reached, indexed
	// by the state's number.
	tasksEnded            [mesos.TaskState_TASK_UNKNOWN + 1]atomic.Uint64
	executorsTerminated   atomic.Uint64
	containerLaunchErrors atomic.Uint64
}

// taskEnded counts a task's terminal state.
func (c *counters) taskEnded(st mesos.TaskState) {
	if st >= 0 && int(st) < len(c.tasksEnded) {
		c.tasksEnded[st].Add(1)
	}
}

// Task states the agent counts, under Mesos' agent names: the live ones by
// what it holds now, the terminal ones since it started.
var (
	liveTaskStates = []mesos.TaskState{
		mesos.TaskState_TASK_STAGING, mesos.TaskState_TASK_STARTING,
		mesos.TaskState_TASK_RUNNING, mesos.TaskState_TASK_KILLING,
	}
	endedTaskStates = []mesos.TaskState{
		mesos.TaskState_TASK_FINISHED, mesos.TaskState_TASK_FAILED, mesos.TaskState_TASK_KILLED,
		mesos.TaskState_TASK_LOST, mesos.TaskState_TASK_GONE, mesos.TaskState_TASK_GONE_BY_OPERATOR,
	}
)

// metrics is the agent's /metrics/snapshot: Mesos' slave/ keys, and the
// sandbox collector's under gc/ (path_removals_* are Mesos' names; the
// rest are Corral's). Every key is present even at zero.
func (a *Agent) metrics() metrics.Snapshot {
	g := a.gc.Metrics()
	maxAge := a.gc.MaxAllowedAge()
	a.mu.Lock()
	defer a.mu.Unlock()
	const p = "slave"
	out := metrics.Snapshot{
		p + "/uptime_secs":             time.Since(a.start).Seconds(),
		p + "/registered":              metrics.Bool(a.connected),
		p + "/recovery_errors":         float64(a.recovery.inconsistencies),
		p + "/recovery_time_secs":      a.recovery.duration.Seconds(),
		p + "/executors_registering":   0,
		p + "/executors_running":       0,
		p + "/executors_terminating":   0,
		p + "/executors_terminated":    float64(a.counters.executorsTerminated.Load()),
		p + "/container_launch_errors": float64(a.counters.containerLaunchErrors.Load()),
		p + "/frameworks_active":       0,
		// Mesos' name for how old a finished sandbox may get by the
		// last disk reading.
		p + "/executor_directory_max_allowed_age_secs": maxAge.Seconds(),

		"gc/path_removals_succeeded": float64(g.Succeeded),
		"gc/path_removals_failed":    float64(g.Failed),
		"gc/path_removals_pending":   float64(g.Pending),
		"gc/path_removals_running":   float64(g.Removing),
		"gc/path_removals_retrying":  float64(g.Retrying),
		"gc/bytes_freed":             float64(g.BytesFreed),
		"gc/mounts_detached":         float64(g.Unmounted),
		// The Unix time of the last prune (disk check), 0 before the
		// first: a stalled collector shows as a value that stops moving.
		"gc/last_prune_secs": unixSecs(g.LastPrune),
		"gc/disk_usage":      g.LastUsage.Blocks,
		"gc/inode_usage":     g.LastUsage.Inodes,
	}
	for _, st := range liveTaskStates {
		out[metrics.TaskStateKey(p, st)] = 0
	}
	for _, st := range endedTaskStates {
		out[metrics.TaskStateKey(p, st)] = float64(a.counters.tasksEnded[st].Load())
	}
	var used = map[string]float64{}
	for _, fw := range a.frameworks {
		if len(fw.executors) > 0 && !fw.shuttingDown {
			out[p+"/frameworks_active"]++
		}
		for _, ex := range fw.executors {
			terminating, registering := ex.runner.phaseLocked()
			switch {
			case terminating:
				out[p+"/executors_terminating"]++
			case registering:
				out[p+"/executors_registering"]++
			default:
				out[p+"/executors_running"]++
			}
			for _, t := range ex.tasks {
				if !t.state.IsTerminal() {
					out[metrics.TaskStateKey(p, t.state)]++
				}
			}
			r := executorResources(ex)
			for _, name := range metrics.Resources {
				used[name] += r.Scalar(name)
			}
		}
	}
	for _, name := range metrics.Resources {
		metrics.SetResource(out, p, name, a.total.Scalar(name), used[name])
	}
	return out
}

func unixSecs(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
