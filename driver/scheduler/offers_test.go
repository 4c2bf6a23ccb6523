package scheduler

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

func TestLaunchUpdatesAndAcks(t *testing.T) {
	for _, explicit := range []bool{false, true} {
		for _, c := range codecs {
			t.Run(fmt.Sprintf("%s/explicit=%v", c.name, explicit), func(t *testing.T) {
				ctx := context.Background()
				m := startMaster(t, time.Second)
				agent := startTestAgent(t, m, "cpus:1;mem:256")
				r := newRecorder()
				d, err := New(Config{Master: m.addr, Framework: frameworkInfo("launch"), Codec: c.codec, ExplicitAcks: explicit, Log: testLogger(t)}, r)
				if err != nil {
					t.Fatal(err)
				}
				runDriver(t, d)
				fwID := r.next(t, "registered").id
				offer := r.next(t, "offers").offers[0]
				if offer.GetAgentId().GetValue() != agent.id.GetValue() || offer.GetUrl().GetAddress().GetPort() == 0 {
					t.Fatalf("offer %v does not name the agent and its URL", offer)
				}

				res, _ := resources.Parse("cpus:0.1;mem:32")
				task := &mesos.TaskInfo{
					Name: proto.String("t1"), TaskId: &mesos.TaskID{Value: proto.String("t1")}, AgentId: offer.GetAgentId(),
					Resources: res, Command: &mesos.CommandInfo{Value: proto.String("true")},
				}
				if err := d.LaunchTasks(ctx, []*mesos.OfferID{offer.GetId()}, []*mesos.TaskInfo{task}, &mesos.Filters{RefuseSeconds: proto.Float64(1)}); err != nil {
					t.Fatalf("LaunchTasks: %v", err)
				}
				if got := agent.next(t, cluster.Event_RUN_TASK).GetRunTask().GetTask().GetTaskId().GetValue(); got != "t1" {
					t.Fatalf("agent runs %q, want t1", got)
				}

				sent := agent.update(t, fwID, task.TaskId, mesos.TaskState_TASK_RUNNING)
				got := r.next(t, "update").status
				if got.GetState() != mesos.TaskState_TASK_RUNNING || !bytes.Equal(got.GetUuid(), sent.GetUuid()) {
					t.Fatalf("update %v, want TASK_RUNNING with uuid %x", got, sent.GetUuid())
				}
				if explicit {
					agent.none(t, cluster.Event_ACKNOWLEDGE, 300*time.Millisecond)
					if err := d.AcknowledgeStatusUpdate(ctx, got); err != nil {
						t.Fatalf("AcknowledgeStatusUpdate: %v", err)
					}
				}
				if ack := agent.next(t, cluster.Event_ACKNOWLEDGE).GetAcknowledge(); !bytes.Equal(ack.GetUuid(), sent.GetUuid()) || ack.GetTaskId().GetValue() != "t1" {
					t.Fatalf("agent got acknowledgement %v, want uuid %x for t1", ack, sent.GetUuid())
				}

				// Reconciliation answers carry no uuid and get no ack.
				if err := d.ReconcileTasks(ctx, []*mesos.TaskStatus{{TaskId: task.TaskId, AgentId: offer.AgentId}}); err != nil {
					t.Fatalf("ReconcileTasks: %v", err)
				}
				rs := r.next(t, "update").status
				if rs.GetState() != mesos.TaskState_TASK_RUNNING || len(rs.GetUuid()) != 0 || rs.GetReason() != mesos.TaskStatus_REASON_RECONCILIATION {
					t.Fatalf("reconciliation answer %v", rs)
				}
				if explicit {
					if err := d.AcknowledgeStatusUpdate(ctx, rs); err != nil {
						t.Fatalf("acknowledging a status without uuid: %v", err)
					}
				}
				agent.none(t, cluster.Event_ACKNOWLEDGE, 300*time.Millisecond)

				exID := &mesos.ExecutorID{Value: proto.String("t1")}
				if err := d.SendFrameworkMessage(ctx, exID, agent.id, []byte("ping")); err != nil {
					t.Fatalf("SendFrameworkMessage: %v", err)
				}
				if msg := agent.next(t, cluster.Event_FRAMEWORK_MESSAGE).GetFrameworkMessage(); string(msg.GetData()) != "ping" {
					t.Fatalf("agent got message %v", msg)
				}
				agent.call(t, &cluster.Call{Type: cluster.Call_FRAMEWORK_MESSAGE.Enum(), FrameworkMessage: &cluster.FrameworkMessage{
					FrameworkId: fwID, ExecutorId: exID, Data: []byte("pong"),
				}})
				if msg := r.next(t, "message"); string(msg.data) != "pong" || msg.executor.GetValue() != "t1" || msg.agent.GetValue() != agent.id.GetValue() {
					t.Fatalf("framework message %+v", msg)
				}

				if err := d.KillTask(ctx, task.TaskId, agent.id); err != nil {
					t.Fatalf("KillTask: %v", err)
				}
				if k := agent.next(t, cluster.Event_KILL_TASK).GetKillTask(); k.GetTaskId().GetValue() != "t1" {
					t.Fatalf("agent asked to kill %v", k)
				}
				agent.update(t, fwID, task.TaskId, mesos.TaskState_TASK_KILLED)
				if s := r.next(t, "update").status; s.GetState() != mesos.TaskState_TASK_KILLED {
					t.Fatalf("update %v, want TASK_KILLED", s)
				}

				agent.call(t, &cluster.Call{Type: cluster.Call_EXECUTOR_EXITED.Enum(), ExecutorExited: &cluster.Call_ExecutorExited{
					FrameworkId: fwID, ExecutorId: exID, Status: proto.Int32(9),
				}})
				if e := r.next(t, "executor_lost"); e.executor.GetValue() != "t1" || e.code != 9 || e.agent.GetValue() != agent.id.GetValue() {
					t.Fatalf("executor lost %+v", e)
				}
			})
		}
	}
}

func TestDeclineSuppressRevive(t *testing.T) {
	ctx := context.Background()
	m := startMaster(t, time.Second)
	startTestAgent(t, m, "cpus:1;mem:256")
	r := newRecorder()
	d, err := New(Config{Master: m.addr, Framework: frameworkInfo("decline"), Log: testLogger(t)}, r)
	if err != nil {
		t.Fatal(err)
	}
	runDriver(t, d)
	r.next(t, "registered")

	offer := r.next(t, "offers").offers[0]
	if err := d.DeclineOffer(ctx, offer.GetId(), &mesos.Filters{RefuseSeconds: proto.Float64(3600)}); err != nil {
		t.Fatalf("DeclineOffer: %v", err)
	}
	r.none(t, "offers", 300*time.Millisecond)
	if err := d.ReviveOffers(ctx); err != nil {
		t.Fatalf("ReviveOffers: %v", err)
	}
	offer = r.next(t, "offers").offers[0]

	if err := d.SuppressOffers(ctx); err != nil {
		t.Fatalf("SuppressOffers: %v", err)
	}
	// Whether the master rescinds what is outstanding is its choice; the
	// decline returns the resources either way, and none come back.
	if err := d.DeclineOffer(ctx, offer.GetId(), &mesos.Filters{RefuseSeconds: proto.Float64(0)}); err != nil {
		t.Fatalf("DeclineOffer: %v", err)
	}
	r.none(t, "offers", 300*time.Millisecond)
	if err := d.ReviveOffers(ctx); err != nil {
		t.Fatalf("ReviveOffers: %v", err)
	}
	r.next(t, "offers")
}

func TestOfferRescindedWhenAgentGoes(t *testing.T) {
	m := startMaster(t, time.Second)
	agent := startTestAgent(t, m, "cpus:1;mem:256")
	r := newRecorder()
	d, err := New(Config{Master: m.addr, Framework: frameworkInfo("rescind"), Log: testLogger(t)}, r)
	if err != nil {
		t.Fatal(err)
	}
	runDriver(t, d)
	offer := r.next(t, "offers").offers[0]
	agent.disconnect()
	if got := r.next(t, "rescinded").offerID.GetValue(); got != offer.GetId().GetValue() {
		t.Fatalf("rescinded %q, want %q", got, offer.GetId().GetValue())
	}
}
