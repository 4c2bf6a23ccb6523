package master_test

import (
	"context"
	"testing"
	"time"

	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/api/v1/scheduler"
	"google.golang.org/protobuf/proto"
)

// fakeAgent speaks the internal agent API by hand, so a test can make it
// vanish and come back with whatever it claims to run.
type fakeAgent struct {
	t      *testing.T
	c      *httpapi.Client
	sub    *httpapi.Subscription
	id     string
	events chan *cluster.Event
}

func connectFakeAgent(t *testing.T, tm *testMaster, id string, tasks []*mesos.Task, frameworks []*mesos.FrameworkInfo, executors ...*mesos.ExecutorInfo) *fakeAgent {
	t.Helper()
	return connectFakeAgentWith(t, tm, agentResources, id, tasks, frameworks, executors...)
}

// connectFakeAgentWith is connectFakeAgent for an agent with resources res
// (the --resources text form).
func connectFakeAgentWith(t *testing.T, tm *testMaster, res0 string, id string, tasks []*mesos.Task, frameworks []*mesos.FrameworkInfo, executors ...*mesos.ExecutorInfo) *fakeAgent {
	t.Helper()
	res, err := resources.Parse(res0)
	if err != nil {
		t.Fatal(err)
	}
	fa := &fakeAgent{t: t, c: &httpapi.Client{URL: tm.url("/internal/v1/agent"), Codec: codec.Protobuf}, events: make(chan *cluster.Event, 100)}
	call := &cluster.Call{Type: cluster.Call_SUBSCRIBE.Enum(), Subscribe: &cluster.Call_Subscribe{
		AgentInfo: &mesos.AgentInfo{Hostname: proto.String("fake"), Port: proto.Int32(1), Resources: res},
		Endpoint:  &mesos.URL{Scheme: proto.String("http"), Address: &mesos.Address{Hostname: proto.String("fake"), Ip: proto.String("127.0.0.1"), Port: proto.Int32(1)}},
		Tasks:     tasks, Frameworks: frameworks, Executors: executors,
	}}
	if id != "" {
		call.AgentId = &mesos.AgentID{Value: proto.String(id)}
	}
	sub, err := fa.c.Subscribe(context.Background(), call, time.Minute)
	if err != nil {
		t.Fatalf("agent SUBSCRIBE: %v", err)
	}
	fa.sub = sub
	ev := &cluster.Event{}
	if err := sub.Next(ev); err != nil || ev.GetType() != cluster.Event_SUBSCRIBED {
		t.Fatalf("first event %v, %v; want SUBSCRIBED", ev.GetType(), err)
	}
	fa.id = ev.GetSubscribed().GetAgentId().GetValue()
	go func() {
		defer close(fa.events)
		for {
			ev := &cluster.Event{}
			if err := sub.Next(ev); err != nil {
				return
			}
			if ev.GetType() != cluster.Event_HEARTBEAT {
				fa.events <- ev
			}
		}
	}()
	t.Cleanup(func() { _ = sub.Close() })
	return fa
}

func (fa *fakeAgent) next(typ cluster.Event_Type) *cluster.Event {
	fa.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-fa.events:
			if !ok {
				fa.t.Fatalf("agent stream ended waiting for %v", typ)
			}
			if ev.GetType() == typ {
				return ev
			}
		case <-timeout:
			fa.t.Fatalf("no %v for the agent", typ)
		}
	}
}

func (fa *fakeAgent) update(fwID string, ti *mesos.TaskInfo, state mesos.TaskState) {
	fa.t.Helper()
	fa.updateAt(fwID, ti, state, 0)
}

// updateAt is update with the status' timestamp (0: none).
func (fa *fakeAgent) updateAt(fwID string, ti *mesos.TaskInfo, state mesos.TaskState, timestamp float64) {
	fa.t.Helper()
	call := &cluster.Call{Type: cluster.Call_STATUS_UPDATE.Enum(), AgentId: &mesos.AgentID{Value: proto.String(fa.id)},
		StatusUpdate: &cluster.StatusUpdate{
			FrameworkId: &mesos.FrameworkID{Value: proto.String(fwID)},
			Status: &mesos.TaskStatus{TaskId: ti.GetTaskId(), State: state.Enum(), Source: mesos.TaskStatus_SOURCE_EXECUTOR.Enum(),
				Uuid: []byte("0123456789abcdef"), AgentId: &mesos.AgentID{Value: proto.String(fa.id)}},
		}}
	if timestamp != 0 {
		call.StatusUpdate.Status.Timestamp = proto.Float64(timestamp)
	}
	if err := fa.c.Call(context.Background(), call, nil); err != nil {
		fa.t.Fatalf("STATUS_UPDATE: %v", err)
	}
}

// TestAgentReregistration: an agent that comes back under its ID keeps it;
// the tasks it reports keep their state, those it no longer has are
// reported TASK_LOST with REASON_AGENT_RESTARTED, and for a framework torn
// down while it was away it is told to shut that framework down.
func TestAgentReregistration(t *testing.T) {
	tm := startMaster(t)
	fa := connectFakeAgent(t, tm, "", nil, nil)
	s := subscribe(t, tm, codec.JSON)
	gone := subscribe(t, tm, codec.JSON)

	o := s.offer(offerWait)
	kept, lost := task("", "kept", o, "cpus:0.5;mem:64", "sleep 60"), task("", "lost", o, "cpus:0.5;mem:64", "sleep 60")
	s.launch(o, kept, lost)
	fwInfo := fa.next(cluster.Event_RUN_TASK).GetRunTask().GetFramework()
	fa.next(cluster.Event_RUN_TASK)
	fa.update(s.id, kept, mesos.TaskState_TASK_RUNNING)
	s.update("kept", 5*time.Second, mesos.TaskState_TASK_RUNNING)

	og := gone.offer(offerWait)
	orphan := task("", "orphan", og, "cpus:0.5;mem:64", "sleep 60")
	gone.launch(og, orphan)
	goneInfo := fa.next(cluster.Event_RUN_TASK).GetRunTask().GetFramework()

	// The agent goes away; the second framework is torn down meanwhile.
	_ = fa.sub.Close()
	gone.mustCall(&scheduler.Call{Type: scheduler.Call_TEARDOWN.Enum()})

	reported := []*mesos.Task{
		{Name: proto.String("kept"), TaskId: kept.TaskId, FrameworkId: &mesos.FrameworkID{Value: proto.String(s.id)},
			AgentId: &mesos.AgentID{Value: proto.String(fa.id)}, State: mesos.TaskState_TASK_RUNNING.Enum(), Resources: kept.Resources},
		{Name: proto.String("orphan"), TaskId: orphan.TaskId, FrameworkId: &mesos.FrameworkID{Value: proto.String(gone.id)},
			AgentId: &mesos.AgentID{Value: proto.String(fa.id)}, State: mesos.TaskState_TASK_RUNNING.Enum(), Resources: orphan.Resources},
	}
	back := connectFakeAgent(t, tm, fa.id, reported, []*mesos.FrameworkInfo{fwInfo, goneInfo})
	if back.id != fa.id {
		t.Fatalf("re-registered as %s, want %s", back.id, fa.id)
	}
	st := s.update("lost", 5*time.Second, mesos.TaskState_TASK_LOST)
	if st.GetReason() != mesos.TaskStatus_REASON_AGENT_RESTARTED || st.GetSource() != mesos.TaskStatus_SOURCE_MASTER {
		t.Errorf("lost: %v %v from %v, want REASON_AGENT_RESTARTED from the master", st.GetState(), st.GetReason(), st.GetSource())
	}
	sd := back.next(cluster.Event_SHUTDOWN_FRAMEWORK)
	if got := sd.GetShutdownFramework().GetFrameworkId().GetValue(); got != gone.id {
		t.Errorf("SHUTDOWN_FRAMEWORK for %s, want %s", got, gone.id)
	}
	// The kept task is still the master's, running: a kill reaches the agent.
	s.mustCall(&scheduler.Call{Type: scheduler.Call_KILL.Enum(), Kill: &scheduler.Call_Kill{TaskId: kept.TaskId}})
	if k := back.next(cluster.Event_KILL_TASK); k.GetKillTask().GetTaskId().GetValue() != "kept" {
		t.Errorf("KILL_TASK for %s", k.GetKillTask().GetTaskId().GetValue())
	}
	state := getState(t, tm)
	if len(state.Slaves) != 1 || state.Slaves[0].ID != fa.id {
		t.Errorf("master /state has agents %+v, want just %s", state.Slaves, fa.id)
	}
}

// TestReregisteredExecutorIsShutDown: the ExecutorInfo the master hands the
// agent names its framework, so that an executor the agent reports when it
// re-registers — with no task left — is still the framework's, and the
// framework's teardown reaches that agent to shut it down.
func TestReregisteredExecutorIsShutDown(t *testing.T) {
	tm := startMaster(t)
	fa := connectFakeAgent(t, tm, "", nil, nil)
	s := subscribe(t, tm, codec.JSON)
	o := s.offer(offerWait)
	ti := task("", "with-executor", o, "cpus:0.5;mem:64", "")
	ti.Command = nil
	ti.Executor = &mesos.ExecutorInfo{ExecutorId: &mesos.ExecutorID{Value: proto.String("ex")},
		Command: &mesos.CommandInfo{Value: proto.String("/bin/true")}}
	s.launch(o, ti)
	run := fa.next(cluster.Event_RUN_TASK).GetRunTask()
	ex := run.GetTask().GetExecutor()
	if got := ex.GetFrameworkId().GetValue(); got != s.id {
		t.Fatalf("RUN_TASK's ExecutorInfo names framework %q, want %s", got, s.id)
	}
	fa.update(s.id, ti, mesos.TaskState_TASK_FINISHED)
	s.update("with-executor", 5*time.Second, mesos.TaskState_TASK_FINISHED)

	_ = fa.sub.Close()
	back := connectFakeAgent(t, tm, fa.id, nil, []*mesos.FrameworkInfo{run.GetFramework()}, ex)
	s.mustCall(&scheduler.Call{Type: scheduler.Call_TEARDOWN.Enum()})
	if got := back.next(cluster.Event_SHUTDOWN_FRAMEWORK).GetShutdownFramework().GetFrameworkId().GetValue(); got != s.id {
		t.Errorf("SHUTDOWN_FRAMEWORK for %s, want %s", got, s.id)
	}
}
