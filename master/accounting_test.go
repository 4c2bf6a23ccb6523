package master

import (
	"fmt"
	"math"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/api/v1/scheduler"
)

// checkBooks compares the allocator's running books with what they sum up
// from scratch: each framework's live tasks, executors and offers; each
// agent's used, offered and free; the cluster's total.
func checkBooks(t *testing.T, m *Master, step string) {
	t.Helper()
	same := func(a, b resources.Resources) bool { return a.Contains(b) && b.Contains(a) }
	near := func(a, b holdings) bool {
		for i := range a {
			if math.Abs(a[i]-b[i]) > 1e-9 {
				return false
			}
		}
		return true
	}
	for _, fw := range m.frameworks {
		held := inUse(fw.tasks, fw.executors)
		for _, o := range fw.offers {
			held = held.Plus(o.resources)
		}
		if !near(holdingsOf(held), fw.allocated) {
			t.Errorf("%s: framework %s holds %v, its books say %v", step, fw.id, held, fw.allocated)
		}
	}
	var total resources.Resources
	for _, a := range m.agents {
		used, offered := inUse(a.tasks, a.executors), resources.Resources(nil)
		for _, o := range m.offers {
			if o.agent == a {
				offered = offered.Plus(o.resources)
			}
		}
		if !same(used, a.used) || !same(offered, a.offered) {
			t.Errorf("%s: agent %s uses %v and offers %v, its books say %v and %v", step, a.id, used, offered, a.used, a.offered)
		}
		if free := a.total.Minus(used).Minus(offered); !same(free, a.freeResources()) {
			t.Errorf("%s: agent %s has %v free, its books say %v", step, a.id, free, a.freeResources())
		}
		if a.connected {
			total = total.Plus(a.total)
		}
	}
	if _, booked := m.cluster(); !near(holdingsOf(total), booked) {
		t.Errorf("%s: the cluster has %v, the books say %v", step, total, booked)
	}
}

// inUse is what live tasks and executors use.
func inUse(tasks map[string]*task, executors map[string]*executor) resources.Resources {
	var r resources.Resources
	for _, tk := range tasks {
		if !tk.state.IsTerminal() {
			r = r.Plus(tk.resources)
		}
	}
	for _, e := range executors {
		r = r.Plus(e.resources)
	}
	return r
}

// The books stay equal to the sums through launches (with executors),
// task ends, executor exits, declines, an agent's disconnection and its
// removal, each followed by an allocation.
func TestAllocationBooks(t *testing.T) {
	m := benchCluster(t, 4, 3, 2)
	checkBooks(t, m, "start")
	anOffer := func() *offer {
		for _, o := range m.offers {
			return o
		}
		t.Fatal("no offer")
		return nil
	}
	for i := range 3 {
		o := anOffer()
		ti := benchTask(fmt.Sprintf("x-%d", i), o.agent.id)
		ti.Command = nil
		exRes, _ := resources.ParseList("cpus:0.1;mem:32")
		ti.Executor = &mesos.ExecutorInfo{
			ExecutorId: &mesos.ExecutorID{Value: proto.String(fmt.Sprintf("ex-%d", i))},
			Command:    &mesos.CommandInfo{Value: proto.String("executor")}, Resources: exRes,
		}
		err := m.accept(o.fw, &scheduler.Call_Accept{
			OfferIds:   []*mesos.OfferID{{Value: proto.String(o.id)}},
			Operations: []*mesos.Offer_Operation{{Type: mesos.Offer_Operation_LAUNCH.Enum(), Launch: &mesos.Offer_Operation_Launch{TaskInfos: []*mesos.TaskInfo{ti}}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		checkBooks(t, m, "accept")
		m.allocate()
		checkBooks(t, m, "allocation after accept")
	}
	for _, fw := range m.frameworks {
		for _, tk := range fw.tasks {
			m.applyStatus(tk, &mesos.TaskStatus{State: mesos.TaskState_TASK_FINISHED.Enum()}, mesos.TaskState_TASK_FINISHED)
			break
		}
	}
	checkBooks(t, m, "task ends")
	for _, a := range m.agents {
		for key, e := range a.executors {
			m.executorExited(a, e.fw.id, e.info.GetExecutorId().GetValue(), nil)
			_ = key
			break
		}
	}
	checkBooks(t, m, "executor exits")
	o := anOffer()
	m.decline(o.fw, []*mesos.OfferID{{Value: proto.String(o.id)}}, &mesos.Filters{RefuseSeconds: proto.Float64(0)})
	checkBooks(t, m, "decline")
	m.allocate()
	checkBooks(t, m, "allocation after decline")
	a := m.agents["agent-0001"]
	m.agentDisconnected(a)
	a.removal.Stop()
	checkBooks(t, m, "agent disconnected")
	m.allocate()
	checkBooks(t, m, "allocation without the agent")
	m.removeAgent(a)
	checkBooks(t, m, "agent removed")
	m.allocate()
	checkBooks(t, m, "allocation after the removal")
}
