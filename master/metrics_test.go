package master_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/testsupport"
)

func snapshot(t *testing.T, tm *testMaster) map[string]float64 {
	t.Helper()
	resp, err := http.Get(tm.url("/metrics/snapshot"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]float64
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("/metrics/snapshot is not a flat object of numbers: %v", err)
	}
	return m
}

// /metrics/snapshot counts under Mesos' names what the master holds, and
// finished tasks stay counted after they leave the bounded completed lists.
func TestMetricsSnapshot(t *testing.T) {
	tm, _, prefix := setup(t)
	if m := snapshot(t, tm); len(m) < 30 || m["master/frameworks_active"] != 0 || m["master/tasks_finished"] != 0 {
		t.Fatalf("before any framework: %v", m)
	}
	s := subscribe(t, tm, codec.JSON)
	o := s.offer(offerWait)
	s.launch(o, task(prefix, "m-1", o, "cpus:0.5;mem:32", "true"))
	s.update(prefix+"m-1", 10*time.Second, mesos.TaskState_TASK_FINISHED)
	var m map[string]float64
	// The master completes the task when its terminal update arrives; the
	// scheduler may see it first, so look until it shows (a hang guard).
	testsupport.Eventually(t, "master/tasks_finished to count the task", 30*time.Second, func() bool {
		m = snapshot(t, tm)
		return m["master/tasks_finished"] >= 1
	})
	want := map[string]float64{
		"master/elected": 1, "master/slaves_active": 1, "master/frameworks_active": 1,
		"master/frameworks_connected": 1, "master/tasks_finished": 1, "master/tasks_running": 0,
		"master/tasks_failed": 0, "master/cpus_total": 2, "master/mem_total": 1024,
	}
	for k, v := range want {
		if got, ok := m[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	if m["master/uptime_secs"] <= 0 {
		t.Errorf("master/uptime_secs = %v", m["master/uptime_secs"])
	}
}
