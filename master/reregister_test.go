package master_test

import (
	"testing"
	"time"

	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/api/v1/scheduler"
	"google.golang.org/protobuf/proto"
)

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
	fwInfo := fa.Next(cluster.Event_RUN_TASK).GetRunTask().GetFramework()
	fa.Next(cluster.Event_RUN_TASK)
	fa.Update(s.id, kept, mesos.TaskState_TASK_RUNNING)
	s.update("kept", 5*time.Second, mesos.TaskState_TASK_RUNNING)

	og := gone.offer(offerWait)
	orphan := task("", "orphan", og, "cpus:0.5;mem:64", "sleep 60")
	gone.launch(og, orphan)
	goneInfo := fa.Next(cluster.Event_RUN_TASK).GetRunTask().GetFramework()

	// The agent goes away; the second framework is torn down meanwhile.
	fa.Close()
	gone.mustCall(&scheduler.Call{Type: scheduler.Call_TEARDOWN.Enum()})

	reported := []*mesos.Task{
		{Name: proto.String("kept"), TaskId: kept.TaskId, FrameworkId: &mesos.FrameworkID{Value: proto.String(s.id)},
			AgentId: &mesos.AgentID{Value: proto.String(fa.ID)}, State: mesos.TaskState_TASK_RUNNING.Enum(), Resources: kept.Resources},
		{Name: proto.String("orphan"), TaskId: orphan.TaskId, FrameworkId: &mesos.FrameworkID{Value: proto.String(gone.id)},
			AgentId: &mesos.AgentID{Value: proto.String(fa.ID)}, State: mesos.TaskState_TASK_RUNNING.Enum(), Resources: orphan.Resources},
	}
	back := connectFakeAgent(t, tm, fa.ID, reported, []*mesos.FrameworkInfo{fwInfo, goneInfo})
	if back.ID != fa.ID {
		t.Fatalf("re-registered as %s, want %s", back.ID, fa.ID)
	}
	st := s.update("lost", 5*time.Second, mesos.TaskState_TASK_LOST)
	if st.GetReason() != mesos.TaskStatus_REASON_AGENT_RESTARTED || st.GetSource() != mesos.TaskStatus_SOURCE_MASTER {
		t.Errorf("lost: %v %v from %v, want REASON_AGENT_RESTARTED from the master", st.GetState(), st.GetReason(), st.GetSource())
	}
	sd := back.Next(cluster.Event_SHUTDOWN_FRAMEWORK)
	if got := sd.GetShutdownFramework().GetFrameworkId().GetValue(); got != gone.id {
		t.Errorf("SHUTDOWN_FRAMEWORK for %s, want %s", got, gone.id)
	}
	// The kept task is still the master's, running: a kill reaches the agent.
	s.mustCall(&scheduler.Call{Type: scheduler.Call_KILL.Enum(), Kill: &scheduler.Call_Kill{TaskId: kept.TaskId}})
	if k := back.Next(cluster.Event_KILL_TASK); k.GetKillTask().GetTaskId().GetValue() != "kept" {
		t.Errorf("KILL_TASK for %s", k.GetKillTask().GetTaskId().GetValue())
	}
	state := getState(t, tm)
	if len(state.Slaves) != 1 || state.Slaves[0].ID != fa.ID {
		t.Errorf("master /state has agents %+v, want just %s", state.Slaves, fa.ID)
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
	run := fa.Next(cluster.Event_RUN_TASK).GetRunTask()
	ex := run.GetTask().GetExecutor()
	if got := ex.GetFrameworkId().GetValue(); got != s.id {
		t.Fatalf("RUN_TASK's ExecutorInfo names framework %q, want %s", got, s.id)
	}
	fa.Update(s.id, ti, mesos.TaskState_TASK_FINISHED)
	s.update("with-executor", 5*time.Second, mesos.TaskState_TASK_FINISHED)

	fa.Close()
	back := connectFakeAgent(t, tm, fa.ID, nil, []*mesos.FrameworkInfo{run.GetFramework()}, ex)
	s.mustCall(&scheduler.Call{Type: scheduler.Call_TEARDOWN.Enum()})
	if got := back.Next(cluster.Event_SHUTDOWN_FRAMEWORK).GetShutdownFramework().GetFrameworkId().GetValue(); got != s.id {
		t.Errorf("SHUTDOWN_FRAMEWORK for %s, want %s", got, s.id)
	}
}
