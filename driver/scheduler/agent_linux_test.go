package scheduler

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/corral/corral/agent"
	"github.com/corral/corral/agent/agenttest"
	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/testsupport"
	// The agent's launcher and isolators register themselves when linked,
	// as in cmd/corral.
	_ "github.com/corral/corral/isolators/posix"
	_ "github.com/corral/corral/launcher/posix"
	"google.golang.org/protobuf/proto"
)

// startAgent runs the real agent (posix launcher) against m.
func startAgent(t *testing.T, m *testMaster) {
	t.Helper()
	agenttest.Start(t, agent.Config{
		Master:      m.addr,
		WorkDir:     t.TempDir(),
		IP:          "127.0.0.1",
		Resources:   "cpus:2;mem:512;disk:1024",
		LauncherDir: testsupport.BinDir(t),
		CgroupsRoot: testsupport.CgroupsRoot(t, testsupport.Prefix(t)),
		Log:         testLogger(t).With("side", "agent"),
		// Keep the test from waiting on the agent's first backoff.
		RegistrationBackoffFactor: 50 * time.Millisecond,
	})
}

func TestTasksOnRealAgent(t *testing.T) {
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			m := startMaster(t, time.Second)
			startAgent(t, m)

			res, _ := resources.Parse("cpus:0.1;mem:32")
			tasks := map[string]struct {
				command string
				final   mesos.TaskState
				message string // in the final status
			}{
				"ok":   {"echo hello", mesos.TaskState_TASK_FINISHED, ""},
				"fail": {"exit 3", mesos.TaskState_TASK_FAILED, "3"},
			}
			r := newRecorder()
			launched := false
			r.onOffers = func(d Driver, offers []*mesos.Offer) {
				if launched {
					for _, o := range offers {
						_ = d.DeclineOffer(context.Background(), o.GetId(), nil)
					}
					return
				}
				launched = true
				var infos []*mesos.TaskInfo
				for id, tc := range tasks {
					infos = append(infos, &mesos.TaskInfo{
						Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)}, AgentId: offers[0].GetAgentId(),
						Resources: res, Command: &mesos.CommandInfo{Value: proto.String(tc.command), Shell: proto.Bool(true)},
					})
				}
				if err := d.LaunchTasks(context.Background(), []*mesos.OfferID{offers[0].GetId()}, infos, nil); err != nil {
					t.Errorf("LaunchTasks: %v", err)
				}
			}
			d, err := New(Config{Master: m.addr, Framework: frameworkInfo("real-agent"), Codec: c.codec, Log: testLogger(t)}, r)
			if err != nil {
				t.Fatal(err)
			}
			errc := runDriver(t, d)
			r.next(t, "registered")

			seen := map[string][]mesos.TaskState{}
			final := map[string]*mesos.TaskStatus{}
			for len(final) < len(tasks) {
				s := r.next(t, "update").status
				id := s.GetTaskId().GetValue()
				seen[id] = append(seen[id], s.GetState())
				if len(s.GetUuid()) != 16 {
					t.Errorf("status %v has no 16-byte uuid", s)
				}
				switch s.GetState() {
				case mesos.TaskState_TASK_FINISHED, mesos.TaskState_TASK_FAILED, mesos.TaskState_TASK_KILLED,
					mesos.TaskState_TASK_ERROR, mesos.TaskState_TASK_LOST:
					final[id] = s
				}
			}
			for id, tc := range tasks {
				s := final[id]
				if s.GetState() != tc.final || !strings.Contains(s.GetMessage(), tc.message) {
					t.Errorf("task %s ended %v %q (states %v), want %v with %q", id, s.GetState(), s.GetMessage(), seen[id], tc.final, tc.message)
				}
				if states := seen[id]; len(states) < 2 || !containsState(states, mesos.TaskState_TASK_RUNNING) {
					t.Errorf("task %s went through %v, want TASK_RUNNING before the end", id, states)
				}
			}

			// Implicit acks reached the agent: the master moves an
			// acknowledged terminal task to completed and does not resend.
			r.none(t, "update", 500*time.Millisecond)
			if err := d.Stop(false); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if err := waitErr(t, errc); err != nil {
				t.Fatalf("Run: %v", err)
			}
		})
	}
}

func containsState(list []mesos.TaskState, s mesos.TaskState) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
