package master

import (
	"fmt"
	"io"
	"log/slog"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/api/v1/scheduler"
)

// benchCluster is a master with agents agents, each running tasksPerAgent
// tasks, and frameworks frameworks, all in memory: no network, the
// frameworks' streams only queue what they are sent.
func benchCluster(tb testing.TB, agents, frameworks, tasksPerAgent int) *Master {
	tb.Helper()
	m := New(Config{Address: "127.0.0.1:5050", Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	var fws []*framework
	for i := range frameworks {
		id := fmt.Sprintf("fw-%03d", i)
		fw := &framework{
			id:     id,
			info:   &mesos.FrameworkInfo{Id: &mesos.FrameworkID{Value: proto.String(id)}, Name: proto.String(id), User: proto.String("nobody"), Role: proto.String("*")},
			stream: httpapi.NewStream(codec.Protobuf), active: true,
			suppress: map[string]bool{}, filters: offerFilters{}, offers: map[string]*offer{}, tasks: map[string]*task{}, executors: map[string]*executor{},
		}
		m.frameworks[id] = fw
		fws = append(fws, fw)
	}
	total, err := resources.Parse("cpus:32;mem:131072;disk:1048576;ports:[31000-32000]")
	if err != nil {
		tb.Fatal(err)
	}
	for i := range agents {
		id := fmt.Sprintf("agent-%04d", i)
		a := &agent{
			id: id, info: &mesos.AgentInfo{Hostname: proto.String(id)}, total: total, connected: true,
			tasks: map[string]*task{}, executors: map[string]*executor{},
		}
		m.agents[id] = a
		for k := range tasksPerAgent {
			fw := fws[(i*tasksPerAgent+k)%len(fws)]
			m.addTask(fw, a, "*", benchTask(fmt.Sprintf("%s-t%d", id, k), id), nil)
		}
	}
	m.allocate()
	return m
}

func benchTask(id, agentID string) *mesos.TaskInfo {
	res, _ := resources.ParseList("cpus:0.1;mem:32")
	return &mesos.TaskInfo{
		Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)}, AgentId: &mesos.AgentID{Value: proto.String(agentID)},
		Command: &mesos.CommandInfo{Value: proto.String("true")}, Resources: res,
	}
}

// BenchmarkAllocateAfterAccept is one allocation pass after an ACCEPT, at
// 1000 agents (10 tasks each) and 100 frameworks: the ACCEPT launches one
// task from one offer and leaves the rest of it, refused by that
// framework, to be offered to another. Only the allocation is timed.
func BenchmarkAllocateAfterAccept(b *testing.B) {
	m := benchCluster(b, 1000, 100, 10)
	noFilter := &mesos.Filters{RefuseSeconds: proto.Float64(0)}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		var o *offer
		for _, o = range m.offers {
			break
		}
		acc := &scheduler.Call_Accept{
			OfferIds: []*mesos.OfferID{{Value: proto.String(o.id)}},
			Operations: []*mesos.Offer_Operation{{
				Type:   mesos.Offer_Operation_LAUNCH.Enum(),
				Launch: &mesos.Offer_Operation_Launch{TaskInfos: []*mesos.TaskInfo{benchTask(fmt.Sprintf("b-%d", i), o.agent.id)}},
			}},
			Filters: noFilter,
		}
		if err := m.accept(o.fw, acc); err != nil {
			b.Fatal(err)
		}
		before := len(m.offers)
		b.StartTimer()
		m.allocate()
		b.StopTimer()
		if len(m.offers) != before+1 {
			b.Fatalf("%d offers after the allocation, want %d: the ACCEPT's remainder is offered again", len(m.offers), before+1)
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/allocation")
}
