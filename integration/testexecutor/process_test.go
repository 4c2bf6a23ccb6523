//go:build unix

package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral/corral/api/httpapi"
	executorapi "github.com/corral/corral/api/v1/executor"
	"github.com/corral/corral/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

// The test binary doubles as the executor: run with TESTEXECUTOR_MAIN=1 it
// is main, so the process test needs no separate build.
func TestMain(m *testing.M) {
	if os.Getenv("TESTEXECUTOR_MAIN") == "1" {
		main()
	}
	os.Exit(m.Run())
}

// lockedBuffer collects the child's stderr, written by exec's copying
// goroutine while the test may read it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestProcess runs the executor as a process, configured only by the
// MESOS_* environment, against a stand-in agent built from httpapi's server
// pieces, in protobuf (CORRAL_EXECUTOR_CODEC) to cover the override.
func TestProcess(t *testing.T) {
	streams := make(chan *httpapi.Stream, 1)
	calls := make(chan *executorapi.Call, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		call := &executorapi.Call{}
		c, ok := httpapi.DecodeCall(w, r, call)
		if !ok {
			return
		}
		if call.GetType() != executorapi.Call_SUBSCRIBE {
			calls <- call
			w.WriteHeader(http.StatusAccepted)
			return
		}
		if r.Header.Get("Content-Type") != "application/x-protobuf" {
			t.Errorf("SUBSCRIBE Content-Type %q", r.Header.Get("Content-Type"))
		}
		s := httpapi.NewStream(c)
		s.Send(&executorapi.Event{Type: executorapi.Event_SUBSCRIBED.Enum(), Subscribed: &executorapi.Event_Subscribed{
			ExecutorInfo:  &mesos.ExecutorInfo{ExecutorId: call.GetExecutorId()},
			FrameworkInfo: &mesos.FrameworkInfo{User: proto.String("u"), Name: proto.String("fw")},
			AgentInfo:     &mesos.AgentInfo{Hostname: proto.String("h"), Id: &mesos.AgentID{Value: proto.String("a1")}},
		}})
		streams <- s
		s.Serve(w, r, "", &executorapi.Event{Type: executorapi.Event_HEARTBEAT.Enum()}, time.Second)
	}))
	defer srv.Close()

	sandbox := t.TempDir()
	var stderr lockedBuffer
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		"TESTEXECUTOR_MAIN=1",
		"MESOS_FRAMEWORK_ID=fw-1", "MESOS_EXECUTOR_ID=ex-1",
		"MESOS_DIRECTORY="+sandbox, "MESOS_SANDBOX="+sandbox,
		"MESOS_AGENT_ENDPOINT="+strings.TrimPrefix(srv.URL, "http://"),
		"MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD=5secs", "MESOS_CHECKPOINT=0",
		"CORRAL_EXECUTOR_CODEC=protobuf")
	cmd.Stderr = &stderr
	cmd.Dir = sandbox
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("executor stderr:\n%s", stderr.String())
		}
	}()

	next := func(what string) *executorapi.Call {
		t.Helper()
		select {
		case c := <-calls:
			return c
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s", what)
			return nil
		}
	}
	update := func(task string, state mesos.TaskState) *mesos.TaskStatus {
		t.Helper()
		c := next(task + " " + state.String())
		s := c.GetUpdate().GetStatus()
		if s.GetTaskId().GetValue() != task || s.GetState() != state || len(s.GetUuid()) != 16 {
			t.Fatalf("got %v; want %s %s", c, task, state)
		}
		return s
	}
	var stream *httpapi.Stream
	select {
	case stream = <-streams:
	case <-time.After(10 * time.Second):
		t.Fatal("executor did not subscribe")
	}
	ack := func(s *mesos.TaskStatus) {
		stream.Send(&executorapi.Event{Type: executorapi.Event_ACKNOWLEDGED.Enum(),
			Acknowledged: &executorapi.Event_Acknowledged{TaskId: s.GetTaskId(), Uuid: s.GetUuid()}})
	}
	launch := func(id, data string) {
		stream.Send(&executorapi.Event{Type: executorapi.Event_LAUNCH.Enum(), Launch: &executorapi.Event_Launch{Task: &mesos.TaskInfo{
			Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)}, Data: []byte(data),
			AgentId: &mesos.AgentID{Value: proto.String("a1")},
		}}})
	}

	launch("quick", "echo hello-from-task; exit 7")
	ack(update("quick", mesos.TaskState_TASK_RUNNING))
	s := update("quick", mesos.TaskState_TASK_FAILED)
	if s.GetMessage() != "exit status 7" {
		t.Errorf("message %q", s.GetMessage())
	}
	ack(s)

	stream.Send(&executorapi.Event{Type: executorapi.Event_MESSAGE.Enum(), Message: &executorapi.Event_Message{Data: []byte("hi")}})
	if m := next("echo"); string(m.GetMessage().GetData()) != "echo:hi" {
		t.Errorf("echo %v", m)
	}

	launch("long", "sleep 100")
	ack(update("long", mesos.TaskState_TASK_RUNNING))
	stream.Send(&executorapi.Event{Type: executorapi.Event_SHUTDOWN.Enum()})
	ack(update("long", mesos.TaskState_TASK_KILLED))
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("executor exited with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("executor did not exit after SHUTDOWN")
	}
	for _, want := range []string{"registered", "task started", "hello-from-task", "shutting down", "exiting"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
}
