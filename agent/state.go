package agent

import (
	"context"
	"net/http"
	"sort"
	"time"

	"github.com/corral/corral/api/authz"
	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/container"
	"github.com/corral/corral/internal/version"
)

// serveState is Mesos' agent /state: frameworks, their executors with
// sandbox directories, and tasks. Each running container's usage is added
// as "statistics" (ResourceStatistics fields, as /monitor/statistics has
// them) to its executor's entry, or to its task's for tasks that run in
// containers of their own (task groups).
func (a *Agent) serveState(w http.ResponseWriter, r *http.Request) {
	// Usage is read before the agent's lock is taken: it reads cgroup files
	// and must not hold up task updates.
	usage := a.containerUsage(r.Context())
	v := a.viewerOf(r)
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
		if !v.framework(fw) {
			continue
		}
		executors := []map[string]any{}
		for _, ex := range fw.executors {
			if v.executor(ex) {
				executors = append(executors, a.executorJSON(ex, usage, v))
			}
		}
		completed := []map[string]any{}
		for _, ex := range fw.ended {
			if v.executor(ex) {
				completed = append(completed, a.executorJSON(ex, nil, v))
			}
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
		if v.framework(ex.fw) && v.executor(ex) {
			completedExecutors = append(completedExecutors, a.executorJSON(ex, nil, v))
		}
	}
	masterHost := ""
	if a.masterInfo != nil {
		masterHost = a.masterInfo.GetHostname()
	}
	st := map[string]any{
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
		"frameworks":                 frameworks,
		"completed_frameworks":       []any{},
		"completed_executors_recent": completedExecutors,
		// Not in Mesos' /state: what start-up recovery found and did, and
		// the status updates still waiting for their acknowledgement.
		"recovery": a.recovery.json(),
	}
	// The pending updates name every framework's tasks: only for whom may
	// see the tasks of any user.
	if v.SeesAll(authz.ViewTask) {
		st["status_updates"] = updatesJSON(a.updates)
	}
	// As the master's: the flags only for whom view_flags allows.
	if v.Flags() {
		st["flags"] = a.cfg.Flags
	}
	httpapi.WriteJSON(w, st)
}

func (a *Agent) executorJSON(ex *executor, usage map[string]map[string]any, v viewer) map[string]any {
	var tasks, queued, done []map[string]any
	var used resources.Resources
	_, registering := ex.runner.phaseLocked()
	for _, t := range ex.tasks {
		if !v.task(ex, t) {
			continue
		}
		r, _ := resources.New(t.info.GetResources())
		j := map[string]any{
			"id": t.info.GetTaskId().GetValue(), "name": t.info.GetName(), "framework_id": ex.fw.id,
			"executor_id": ex.id, "slave_id": a.agentID, "state": t.state.String(), "resources": r.StateJSON(),
		}
		if t.sandbox != "" {
			j["directory"] = t.sandbox
		}
		if t.containerID != "" && t.containerID != ex.containerID {
			j["container_id"] = t.containerID
			if u, ok := usage[t.containerID]; ok {
				j["statistics"] = u
			}
		}
		switch {
		case t.state.IsTerminal():
			done = append(done, j)
		case t.state.String() == "TASK_STAGING" && registering:
			queued = append(queued, j)
		default:
			used = used.Plus(r)
			tasks = append(tasks, j)
		}
	}
	j := map[string]any{
		"id": ex.id, "name": ex.info.GetName(), "source": ex.info.GetSource(), "framework_id": ex.fw.id,
		"container": ex.containerID, "directory": ex.directory, "type": ex.runner.traits().typeName,
		"resources": executorResources(ex).StateJSON(),
		"tasks":     orEmpty(tasks), "queued_tasks": orEmpty(queued), "completed_tasks": orEmpty(done),
		"registered_time": float64(ex.launched.UnixNano()) / 1e9,
	}
	if u, ok := usage[ex.containerID]; ok {
		j["statistics"] = u
	}
	return j
}

// containerUsage reads the statistics of every running container, by
// container ID, in /monitor/statistics' shape.
func (a *Agent) containerUsage(ctx context.Context) map[string]map[string]any {
	a.mu.Lock()
	var ids []string
	for _, fw := range a.frameworks {
		for _, ex := range fw.executors {
			ids = append(ids, ex.containerIDs()...)
		}
	}
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out := make(map[string]map[string]any, len(ids))
	for _, id := range ids {
		if u, err := a.cz.Usage(ctx, id); err == nil {
			out[id] = statisticsJSON(u)
		}
	}
	return out
}

// statisticsJSON is one container's ResourceStatistics as Mesos' JSON has
// it: the fields the isolators filled and a timestamp.
func statisticsJSON(u *container.Usage) map[string]any {
	stats := map[string]any{"timestamp": float64(time.Now().UnixNano()) / 1e9}
	for name, v := range usageFields(u) {
		stats[name] = v
	}
	return stats
}

func orEmpty(v []map[string]any) []map[string]any {
	if v == nil {
		return []map[string]any{}
	}
	return v
}

// serveStatistics is Mesos' /monitor/statistics: each live container's
// usage with its executor.
func (a *Agent) serveStatistics(w http.ResponseWriter, r *http.Request) {
	httpapi.WriteJSON(w, a.containerEntries(r, false))
}

// serveContainers is Mesos' /containers: the same entries with each
// container's status, filtered by the container_id, framework_id and
// executor_id query parameters as Mesos filters them.
func (a *Agent) serveContainers(w http.ResponseWriter, r *http.Request) {
	httpapi.WriteJSON(w, a.containerEntries(r, true))
}

func (a *Agent) containerEntries(r *http.Request, withStatus bool) []map[string]any {
	type entry struct {
		ex  *executor
		cid string
	}
	q := r.URL.Query()
	match := func(key, v string) bool { return !q.Has(key) || q.Get(key) == v }
	a.mu.Lock()
	var list []entry
	for _, fw := range a.frameworks {
		for _, ex := range fw.executors {
			for _, cid := range ex.containerIDs() {
				if match("container_id", cid) && match("framework_id", fw.id) && match("executor_id", ex.id) {
					list = append(list, entry{ex, cid})
				}
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
			continue // ended meanwhile
		}
		m := map[string]any{
			"executor_id": e.ex.id, "executor_name": e.ex.info.GetName(), "framework_id": e.ex.fw.id,
			"source": e.ex.info.GetSource(), "container_id": e.cid, "statistics": statisticsJSON(u),
		}
		if withStatus {
			m["status"] = map[string]any{"container_id": map[string]any{"value": e.cid}}
		}
		out = append(out, m)
	}
	return out
}

// usageFields names a container's usage as Mesos' ResourceStatistics does,
// keeping only the fields an isolator filled.
func usageFields(u *container.Usage) map[string]any {
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
	if u.Set["mem_pressure"] {
		// Not in Mesos' ResourceStatistics: cgroup v2's memory PSI, named
		// after the file's fields.
		for kind, p := range map[string]container.PSI{"some": u.MemPressureSome, "full": u.MemPressureFull} {
			out["mem_pressure_"+kind+"_avg10"] = p.Avg10
			out["mem_pressure_"+kind+"_avg60"] = p.Avg60
			out["mem_pressure_"+kind+"_avg300"] = p.Avg300
			out["mem_pressure_"+kind+"_total_secs"] = float64(p.TotalMicros) / 1e6
		}
	}
	return out
}

func updatesJSON(m *updateManager) map[string]any {
	streams, pending := m.Counts()
	tasks := m.PendingTasks()
	sort.Strings(tasks)
	if len(tasks) > 100 {
		tasks = tasks[:100]
	}
	return map[string]any{"streams": streams, "pending": pending, "tasks": tasks}
}
