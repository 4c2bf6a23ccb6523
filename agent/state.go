package agent

import (
	"context"
	"net/http"
	"sort"
	"time"

	"github.com/corral/corral/agent/containerizer"
	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/internal/version"
)

// serveState is Mesos' agent /state: frameworks, their executors with
// sandbox directories, and tasks.
func (a *Agent) serveState(w http.ResponseWriter, _ *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	frameworks := []map[string]any{}
	fwIDs := make([]string, 0, len(a.frameworks))
	for id := range a.frameworks {
		fwIDs = append(fwIDs, id)
	}
	sort.Strings(fwIDs)
	for _, id := range fwIDs {
		fw := a.frameworks[id]
		executors := []map[string]any{}
		for _, ex := range fw.executors {
			executors = append(executors, a.executorJSON(ex))
		}
		completed := []map[string]any{}
		for _, ex := range fw.ended {
			completed = append(completed, a.executorJSON(ex))
		}
		frameworks = append(frameworks, map[string]any{
			"id": fw.id, "name": fw.info.GetName(), "user": fw.info.GetUser(), "hostname": fw.info.GetHostname(),
			"role": fw.info.GetRole(), "roles": fw.info.GetRoles(), "checkpoint": fw.info.GetCheckpoint(),
			"failover_timeout": fw.info.GetFailoverTimeout(),
			"executors":        executors, "completed_executors": completed,
		})
	}
	completedExecutors := []map[string]any{}
	for _, ex := range a.completed {
		completedExecutors = append(completedExecutors, a.executorJSON(ex))
	}
	masterHost := ""
	if a.masterInfo != nil {
		masterHost = a.masterInfo.GetHostname()
	}
	httpapi.WriteJSON(w, map[string]any{
		"version":                    version.MesosCompat,
		"corral_version":             version.Version,
		"id":                         a.agentID,
		"pid":                        "slave(1)@" + a.Endpoint(),
		"hostname":                   a.cfg.Hostname,
		"start_time":                 float64(a.start.UnixNano()) / 1e9,
		"resources":                  a.total.StateJSON(),
		"unreserved_resources":       a.total.StateJSON(),
		"attributes":                 map[string]any{},
		"master_hostname":            masterHost,
		"flags":                      a.cfg.Flags,
		"frameworks":                 frameworks,
		"completed_frameworks":       []any{},
		"completed_executors_recent": completedExecutors,
	})
}

func (a *Agent) executorJSON(ex *executor) map[string]any {
	var tasks, queued, done []map[string]any
	var used resources.Resources
	for _, t := range ex.tasks {
		r, _ := resources.New(t.info.GetResources())
		j := map[string]any{
			"id": t.info.GetTaskId().GetValue(), "name": t.info.GetName(), "framework_id": ex.fw.id,
			"executor_id": ex.id, "slave_id": a.agentID, "state": t.state.String(), "resources": r.StateJSON(),
		}
		if t.sandbox != "" {
			j["directory"] = t.sandbox
		}
		switch {
		case isTerminal(t.state):
			done = append(done, j)
		case t.state.String() == "TASK_STAGING" && ex.kind == httpExecutor && !ex.subscribed:
			queued = append(queued, j)
		default:
			used = used.Plus(r)
			tasks = append(tasks, j)
		}
	}
	return map[string]any{
		"id": ex.id, "name": ex.info.GetName(), "source": ex.info.GetSource(), "framework_id": ex.fw.id,
		"container": ex.containerID, "directory": ex.directory, "type": executorType(ex.kind),
		"resources": executorResources(ex).StateJSON(),
		"tasks":     orEmpty(tasks), "queued_tasks": orEmpty(queued), "completed_tasks": orEmpty(done),
		"registered_time": float64(ex.launched.UnixNano()) / 1e9,
	}
}

func executorType(k executorKind) string {
	switch k {
	case commandExecutor:
		return "COMMAND"
	case defaultExecutor:
		return "DEFAULT"
	}
	return "CUSTOM"
}

func orEmpty(v []map[string]any) []map[string]any {
	if v == nil {
		return []map[string]any{}
	}
	return v
}

// serveStatistics is Mesos' /monitor/statistics: one entry per running
// container with its ResourceStatistics.
func (a *Agent) serveStatistics(w http.ResponseWriter, r *http.Request) {
	type entry struct {
		ex  *executor
		cid string
	}
	a.mu.Lock()
	var list []entry
	for _, fw := range a.frameworks {
		for _, ex := range fw.executors {
			for _, cid := range ex.containerIDs() {
				list = append(list, entry{ex, cid})
			}
		}
	}
	a.mu.Unlock()
	out := []map[string]any{}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	for _, e := range list {
		u, err := a.cz.Usage(ctx, e.cid)
		if err != nil {
			continue
		}
		stats := map[string]any{"timestamp": float64(time.Now().UnixNano()) / 1e9}
		for name, v := range usageFields(u) {
			stats[name] = v
		}
		out = append(out, map[string]any{
			"executor_id": e.ex.id, "executor_name": e.ex.info.GetName(), "framework_id": e.ex.fw.id,
			"source": e.ex.info.GetSource(), "container_id": e.cid, "statistics": stats,
		})
	}
	httpapi.WriteJSON(w, out)
}

// usageFields names a container's usage as Mesos' ResourceStatistics does,
// keeping only the fields an isolator filled.
func usageFields(u *containerizer.Usage) map[string]any {
	all := map[string]any{
		"cpus_user_time_secs":      u.CPUsUserTimeSecs,
		"cpus_system_time_secs":    u.CPUsSystemTimeSecs,
		"cpus_limit":               u.CPUsLimit,
		"cpus_nr_periods":          u.CPUsNrPeriods,
		"cpus_nr_throttled":        u.CPUsNrThrottled,
		"cpus_throttled_time_secs": u.CPUsThrottledTimeSecs,
		"mem_total_bytes":          u.MemTotalBytes,
		"mem_rss_bytes":            u.MemRSSBytes,
		"mem_cache_bytes":          u.MemCacheBytes,
		"mem_swap_bytes":           u.MemSwapBytes,
		"mem_limit_bytes":          u.MemLimitBytes,
		"mem_soft_limit_bytes":     u.MemSoftLimitBytes,
		"disk_used_bytes":          u.DiskUsedBytes,
		"disk_limit_bytes":         u.DiskLimitBytes,
		"processes":                u.Processes,
		"threads":                  u.Threads,
	}
	out := map[string]any{}
	for name, v := range all {
		if u.Set[name] {
			out[name] = v
		}
	}
	return out
}
