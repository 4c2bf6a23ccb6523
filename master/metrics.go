package master

import (
	"net/http"
	"time"

	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/metrics"
)

// serveMetrics is Mesos' /metrics/snapshot: a flat JSON object of numbers
// under Mesos' key names, which dashboards and alerts built for Mesos read.
func (m *Master) serveMetrics(w http.ResponseWriter, r *http.Request) {
	metrics.Handler(m.metrics)(w, r)
}

func (m *Master) metrics() metrics.Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := metrics.Snapshot{
		"master/uptime_secs": time.Since(m.start).Seconds(),
		"master/elected":     1,
	}
	// Every key is there even at zero: alerts on a missing key misfire.
	for _, k := range []string{"frameworks_active", "frameworks_inactive", "frameworks_connected", "frameworks_disconnected",
		"outstanding_offers", "slaves_active", "slaves_inactive", "slaves_connected", "slaves_disconnected"} {
		out["master/"+k] = 0
	}
	for _, fw := range m.frameworks {
		if fw.active {
			out["master/frameworks_active"]++
		} else {
			out["master/frameworks_inactive"]++
		}
		if fw.stream != nil {
			out["master/frameworks_connected"]++
		} else {
			out["master/frameworks_disconnected"]++
		}
		out["master/outstanding_offers"] += float64(len(fw.offers))
	}
	for _, a := range m.agents {
		if a.connected {
			out["master/slaves_active"]++
			out["master/slaves_connected"]++
		} else {
			out["master/slaves_disconnected"]++
			out["master/slaves_inactive"]++
		}
		for _, r := range metrics.Resources {
			out["master/"+r+"_total"] += a.total.Scalar(r)
			out["master/"+r+"_used"] += a.used.Scalar(r)
		}
		for _, t := range a.tasks {
			out[taskStateKey(t.state)]++
		}
	}
	for _, r := range metrics.Resources {
		metrics.SetResource(out, "master", r, out["master/"+r+"_total"], out["master/"+r+"_used"])
	}
	for _, st := range []mesos.TaskState{mesos.TaskState_TASK_STAGING, mesos.TaskState_TASK_STARTING, mesos.TaskState_TASK_RUNNING, mesos.TaskState_TASK_KILLING} {
		out[taskStateKey(st)] += 0
	}
	for _, st := range []mesos.TaskState{mesos.TaskState_TASK_FINISHED, mesos.TaskState_TASK_FAILED, mesos.TaskState_TASK_KILLED,
		mesos.TaskState_TASK_LOST, mesos.TaskState_TASK_ERROR, mesos.TaskState_TASK_DROPPED, mesos.TaskState_TASK_GONE,
		mesos.TaskState_TASK_GONE_BY_OPERATOR, mesos.TaskState_TASK_UNREACHABLE} {
		out[taskStateKey(st)] = float64(m.ended[st])
	}
	return out
}

// taskStateKey is Mesos' metric name of a task state: TASK_RUNNING →
// master/tasks_running.
func taskStateKey(s mesos.TaskState) string { return metrics.TaskStateKey("master", s) }
