// Package metrics is what the master's and the agent's /metrics/snapshot
// share: Mesos' shape (a flat JSON object of numbers), its names for task
// state and resource counters, and the rule that every key is present even
// at zero, since dashboards and alerts built for Mesos misfire on a missing
// key.
package metrics

import (
	"net/http"
	"strings"

	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/v1/mesos"
)

// Snapshot is one /metrics/snapshot: metric name to value.
type Snapshot map[string]float64

// Handler serves snap's result as /metrics/snapshot.
func Handler(snap func() Snapshot) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { httpapi.WriteJSON(w, snap()) }
}

// TaskStateKey is Mesos' metric name of a task state under prefix:
// ("master", TASK_RUNNING) → master/tasks_running.
func TaskStateKey(prefix string, s mesos.TaskState) string {
	return prefix + "/tasks_" + strings.ToLower(strings.TrimPrefix(s.String(), "TASK_"))
}

// Resources are the scalars Mesos reports as <prefix>/<name>_total, _used
// and _percent.
var Resources = []string{"cpus", "mem", "disk", "gpus"}

// SetResource sets prefix/name_total, _used and _percent (used over
// total, 0 when there is no total).
func SetResource(s Snapshot, prefix, name string, total, used float64) {
	s[prefix+"/"+name+"_total"] = total
	s[prefix+"/"+name+"_used"] = used
	pct := 0.0
	if total > 0 {
		pct = used / total
	}
	s[prefix+"/"+name+"_percent"] = pct
}

// Bool is a metric's value of a condition: 1 or 0.
func Bool(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
