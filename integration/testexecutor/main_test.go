//go:build unix

package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/driver/executor"
	"google.golang.org/protobuf/proto"
)

// fakeDriver records what the executor sends; the driver itself is tested
// in driver/executor.
type fakeDriver struct {
	updates  chan *mesos.TaskStatus
	messages chan string
	stopped  chan struct{}
}

func newFakeDriver() *fakeDriver {
	return &fakeDriver{updates: make(chan *mesos.TaskStatus, 32), messages: make(chan string, 8), stopped: make(chan struct{})}
}

func (f *fakeDriver) SendStatusUpdate(_ context.Context, s *mesos.TaskStatus) error {
	f.updates <- s
	return nil
}

func (f *fakeDriver) SendFrameworkMessage(_ context.Context, data []byte) error {
	f.messages <- string(data)
	return nil
}
func (f *fakeDriver) WaitAcknowledged(context.Context) error { return nil }
func (f *fakeDriver) Stop()                                  { close(f.stopped) }

func (f *fakeDriver) expect(t *testing.T, task string, state mesos.TaskState, msg string) {
	t.Helper()
	select {
	case s := <-f.updates:
		if s.GetTaskId().GetValue() != task || s.GetState() != state || !strings.Contains(s.GetMessage(), msg) {
			t.Fatalf("update %s %s %q; want %s %s containing %q", s.GetTaskId().GetValue(), s.GetState(), s.GetMessage(), task, state, msg)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no update; want %s %s", task, state)
	}
}

func newExec(t *testing.T) *testExecutor {
	return newTestExecutor(executor.Config{Sandbox: t.TempDir(), ShutdownGracePeriod: 4 * time.Second},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func taskWith(id string, set func(*mesos.TaskInfo)) *mesos.TaskInfo {
	t := &mesos.TaskInfo{Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)}}
	set(t)
	return t
}

func withCommand(c string) func(*mesos.TaskInfo) {
	return func(t *mesos.TaskInfo) { t.Command = &mesos.CommandInfo{Value: proto.String(c)} }
}

func TestTaskOutcomes(t *testing.T) {
	e, d := newExec(t), newFakeDriver()
	e.LaunchTask(d, taskWith("ok", withCommand("test -n \"$MESOS_TASK_ID\"")))
	d.expect(t, "ok", mesos.TaskState_TASK_RUNNING, "")
	d.expect(t, "ok", mesos.TaskState_TASK_FINISHED, "exit status 0")

	e.LaunchTask(d, taskWith("fail", func(t *mesos.TaskInfo) { t.Data = []byte("exit 3") }))
	d.expect(t, "fail", mesos.TaskState_TASK_RUNNING, "")
	d.expect(t, "fail", mesos.TaskState_TASK_FAILED, "exit status 3")

	e.LaunchTask(d, taskWith("label", func(t *mesos.TaskInfo) {
		t.Labels = &mesos.Labels{Labels: []*mesos.Label{{Key: proto.String("command"), Value: proto.String("kill -9 $$")}}}
	}))
	d.expect(t, "label", mesos.TaskState_TASK_RUNNING, "")
	d.expect(t, "label", mesos.TaskState_TASK_FAILED, "signal: killed")

	e.LaunchTask(d, taskWith("none", func(*mesos.TaskInfo) {}))
	d.expect(t, "none", mesos.TaskState_TASK_FAILED, "no command")
}

func TestKill(t *testing.T) {
	e, d := newExec(t), newFakeDriver()
	e.LaunchTask(d, taskWith("sleeper", withCommand("sleep 100")))
	d.expect(t, "sleeper", mesos.TaskState_TASK_RUNNING, "")
	e.KillTask(d, &mesos.TaskID{Value: proto.String("sleeper")})
	d.expect(t, "sleeper", mesos.TaskState_TASK_KILLED, "killed")

	// A task that ignores SIGTERM is killed after its kill policy's grace.
	e.LaunchTask(d, taskWith("stubborn", func(t *mesos.TaskInfo) {
		withCommand("trap '' TERM; sleep 100 & wait")(t)
		t.KillPolicy = &mesos.KillPolicy{GracePeriod: &mesos.DurationInfo{Nanoseconds: proto.Int64(int64(200 * time.Millisecond))}}
	}))
	d.expect(t, "stubborn", mesos.TaskState_TASK_RUNNING, "")
	time.Sleep(100 * time.Millisecond) // let the trap be set
	start := time.Now()
	e.KillTask(d, &mesos.TaskID{Value: proto.String("stubborn")})
	d.expect(t, "stubborn", mesos.TaskState_TASK_KILLED, "signal: killed")
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Errorf("SIGKILL after %v, before the grace period", el)
	}

	e.KillTask(d, &mesos.TaskID{Value: proto.String("unknown")}) // logged, no update
	select {
	case s := <-d.updates:
		t.Fatalf("unexpected update %v", s)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestEcho(t *testing.T) {
	e, d := newExec(t), newFakeDriver()
	e.FrameworkMessage(d, []byte("ping"))
	if got := <-d.messages; got != "echo:ping" {
		t.Fatalf("echo %q", got)
	}
}

func TestGroupAndShutdown(t *testing.T) {
	e, d := newExec(t), newFakeDriver()
	e.LaunchTaskGroup(d, &mesos.TaskGroupInfo{Tasks: []*mesos.TaskInfo{
		taskWith("g1", withCommand("sleep 100")),
		taskWith("g2", withCommand("sleep 100")),
	}})
	d.expect(t, "g1", mesos.TaskState_TASK_RUNNING, "")
	d.expect(t, "g2", mesos.TaskState_TASK_RUNNING, "")
	e.Shutdown(d)
	got := map[string]mesos.TaskState{}
	for range 2 {
		s := <-d.updates
		got[s.GetTaskId().GetValue()] = s.GetState()
	}
	if got["g1"] != mesos.TaskState_TASK_KILLED || got["g2"] != mesos.TaskState_TASK_KILLED {
		t.Fatalf("after shutdown: %v", got)
	}
	select {
	case <-d.stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("driver not stopped after shutdown")
	}
	e.LaunchTask(d, taskWith("late", withCommand("true")))
	d.expect(t, "late", mesos.TaskState_TASK_FAILED, "shutting down")
}
