package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/recordio"
	executorapi "github.com/corral/corral/api/v1/executor"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/testsupport"
	"google.golang.org/protobuf/proto"
)

// fakeAgent serves the executor API from httpapi's own server pieces, so the
// driver is tested against the same stream code the agent uses.
type fakeAgent struct {
	t *testing.T
	// refuse, when set, may answer the nth SUBSCRIBE (from 1) with an
	// error status instead of a stream.
	refuse func(n int) int
	// beforeSubscribe runs before the nth SUBSCRIBE is answered.
	beforeSubscribe func(n int)
	heartbeat       time.Duration

	mu      sync.Mutex
	nsub    int
	subs    chan received
	calls   chan received // UPDATE and MESSAGE
	streams chan *httpapi.Stream
}

// received is one call as the agent saw it.
type received struct {
	call          *executorapi.Call
	streamID      string
	contentType   string
	authorization string
}

func newFakeAgent(t *testing.T) *fakeAgent {
	return &fakeAgent{
		t: t, heartbeat: time.Hour,
		// Room for every attempt a test's driver makes: a handler blocked
		// on a full channel would hang the server's Close.
		subs: make(chan received, 1024), calls: make(chan received, 1024), streams: make(chan *httpapi.Stream, 1024),
	}
}

func (a *fakeAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/executor" {
		http.NotFound(w, r)
		return
	}
	call := &executorapi.Call{}
	c, ok := httpapi.DecodeCall(w, r, call)
	if !ok {
		return
	}
	rec := received{call: call, streamID: r.Header.Get(httpapi.StreamIDHeader), contentType: r.Header.Get("Content-Type"), authorization: r.Header.Get("Authorization")}
	switch call.GetType() {
	case executorapi.Call_SUBSCRIBE:
		a.mu.Lock()
		a.nsub++
		n := a.nsub
		a.mu.Unlock()
		a.subs <- rec
		if a.beforeSubscribe != nil {
			a.beforeSubscribe(n)
		}
		if a.refuse != nil {
			if code := a.refuse(n); code != 0 {
				httpapi.Error(w, code, "refused subscription %d", n)
				return
			}
		}
		s := httpapi.NewStream(c)
		s.Send(&executorapi.Event{Type: executorapi.Event_SUBSCRIBED.Enum(), Subscribed: &executorapi.Event_Subscribed{
			ExecutorInfo: &mesos.ExecutorInfo{
				ExecutorId: call.GetExecutorId(), FrameworkId: call.GetFrameworkId(),
				Command: &mesos.CommandInfo{Value: proto.String("true")},
			},
			FrameworkInfo: &mesos.FrameworkInfo{User: proto.String("root"), Name: proto.String("fw"), Id: call.GetFrameworkId()},
			AgentInfo:     &mesos.AgentInfo{Hostname: proto.String("localhost"), Id: &mesos.AgentID{Value: proto.String("agent-1")}},
		}})
		a.streams <- s
		s.Serve(w, r, fmt.Sprintf("stream-%d", n), &executorapi.Event{Type: executorapi.Event_HEARTBEAT.Enum()}, a.heartbeat)
	case executorapi.Call_UPDATE, executorapi.Call_MESSAGE:
		a.calls <- rec
		w.WriteHeader(http.StatusAccepted)
	default:
		httpapi.Error(w, http.StatusBadRequest, "unexpected call %v", call.GetType())
	}
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// recorder is an Executor that reports each callback by name and can be
// given behaviour per callback.
type recorder struct {
	BaseExecutor
	events     chan string
	onLaunch   func(Driver, *mesos.TaskInfo)
	onShutdown func(Driver)
	onDisconn  func(Driver)
	messages   chan []byte
}

func newRecorder() *recorder {
	return &recorder{events: make(chan string, 64), messages: make(chan []byte, 8)}
}

func (r *recorder) Registered(_ Driver, ei *mesos.ExecutorInfo, _ *mesos.FrameworkInfo, ai *mesos.AgentInfo) {
	r.events <- "registered:" + ai.GetId().GetValue()
}
func (r *recorder) Reregistered(Driver, *mesos.AgentInfo) { r.events <- "reregistered" }
func (r *recorder) Disconnected(d Driver) {
	r.events <- "disconnected"
	if r.onDisconn != nil {
		r.onDisconn(d)
	}
}
func (r *recorder) LaunchTask(d Driver, t *mesos.TaskInfo) {
	r.events <- "launch:" + t.GetTaskId().GetValue()
	if r.onLaunch != nil {
		r.onLaunch(d, t)
	}
}
func (r *recorder) KillTask(_ Driver, id *mesos.TaskID) { r.events <- "kill:" + id.GetValue() }
func (r *recorder) FrameworkMessage(_ Driver, data []byte) {
	r.events <- "message"
	r.messages <- data
}
func (r *recorder) Error(_ Driver, msg string) { r.events <- "error:" + msg }
func (r *recorder) Shutdown(d Driver) {
	r.events <- "shutdown"
	if r.onShutdown != nil {
		r.onShutdown(d)
	}
}

func (r *recorder) expect(t *testing.T, want string) {
	t.Helper()
	if got := recv(t, r.events, want); got != want {
		t.Fatalf("callback %q, want %q", got, want)
	}
}

type harness struct {
	agent *fakeAgent
	rec   *recorder
	drv   *HTTPDriver
	done  chan error
}

func start(t *testing.T, cfg Config, agent *fakeAgent, rec *recorder, opts ...Option) *harness {
	t.Helper()
	srv := httptest.NewServer(agent)
	t.Cleanup(srv.Close)
	cfg.FrameworkID, cfg.ExecutorID = "fw-1", "ex-1"
	cfg.AgentEndpoint = strings.TrimPrefix(srv.URL, "http://")
	opts = append([]Option{WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}, opts...)
	d, err := New(rec, cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{agent: agent, rec: rec, drv: d, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { h.done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return h
}

func (h *harness) ended(t *testing.T) error {
	t.Helper()
	err := recv(t, h.done, "Run to return")
	h.done <- err // for the cleanup
	return err
}

func event(typ executorapi.Event_Type) *executorapi.Event {
	return &executorapi.Event{Type: typ.Enum()}
}

func launch(id string) *executorapi.Event {
	ev := event(executorapi.Event_LAUNCH)
	ev.Launch = &executorapi.Event_Launch{Task: &mesos.TaskInfo{
		Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)}, AgentId: &mesos.AgentID{Value: proto.String("agent-1")},
	}}
	return ev
}

func ack(s *mesos.TaskStatus) *executorapi.Event {
	ev := event(executorapi.Event_ACKNOWLEDGED)
	ev.Acknowledged = &executorapi.Event_Acknowledged{TaskId: s.GetTaskId(), Uuid: s.GetUuid()}
	return ev
}

func sendRunning(d Driver, t *mesos.TaskInfo) {
	err := d.SendStatusUpdate(context.Background(), &mesos.TaskStatus{TaskId: t.GetTaskId(), State: mesos.TaskState_TASK_RUNNING.Enum()})
	if err != nil {
		panic(err)
	}
}

// TestDriverConversation runs one executor life against the fake agent in
// both media types: subscribe, launch, update, acknowledgement, messages,
// shutdown.
func TestDriverConversation(t *testing.T) {
	for _, c := range []codec.Codec{codec.JSON, codec.Protobuf} {
		t.Run(c.MediaType(), func(t *testing.T) {
			agent := newFakeAgent(t)
			rec := newRecorder()
			rec.onLaunch = sendRunning
			rec.onShutdown = func(d Driver) { d.Stop() }
			h := start(t, Config{Codec: c}, agent, rec)

			sub := recv(t, agent.subs, "SUBSCRIBE")
			if sub.contentType != c.MediaType() {
				t.Errorf("SUBSCRIBE Content-Type %q, want %q", sub.contentType, c.MediaType())
			}
			if got := sub.call; got.GetExecutorId().GetValue() != "ex-1" || got.GetFrameworkId().GetValue() != "fw-1" ||
				got.Subscribe == nil || len(got.GetSubscribe().GetUnacknowledgedUpdates())+len(got.GetSubscribe().GetUnacknowledgedTasks()) != 0 {
				t.Errorf("first SUBSCRIBE = %v", got)
			}
			stream := recv(t, agent.streams, "stream")
			rec.expect(t, "registered:agent-1")

			stream.Send(launch("t1"))
			rec.expect(t, "launch:t1")
			up := recv(t, agent.calls, "UPDATE")
			if up.streamID != "stream-1" {
				t.Errorf("UPDATE carries stream id %q, want stream-1", up.streamID)
			}
			s := up.call.GetUpdate().GetStatus()
			if up.call.GetType() != executorapi.Call_UPDATE || s.GetState() != mesos.TaskState_TASK_RUNNING ||
				len(s.GetUuid()) != 16 || s.GetSource() != mesos.TaskStatus_SOURCE_EXECUTOR ||
				s.GetExecutorId().GetValue() != "ex-1" || s.GetTimestamp() < float64(time.Now().Add(-time.Minute).Unix()) {
				t.Errorf("UPDATE not stamped as Mesos expects: %v", up.call)
			}
			if us, ts := h.drv.Unacknowledged(); len(us) != 1 || len(ts) != 1 {
				t.Fatalf("unacknowledged before ACK: %d updates, %d tasks", len(us), len(ts))
			}

			// A foreign uuid acknowledges nothing.
			stream.Send(ack(&mesos.TaskStatus{TaskId: s.GetTaskId(), Uuid: make([]byte, 16)}))
			stream.Send(ack(s))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := h.drv.WaitAcknowledged(ctx); err != nil {
				t.Fatal(err)
			}
			if us, ts := h.drv.Unacknowledged(); len(us) != 0 || len(ts) != 0 {
				t.Fatalf("unacknowledged after ACK: %v %v", us, ts)
			}

			msg := event(executorapi.Event_MESSAGE)
			msg.Message = &executorapi.Event_Message{Data: []byte("hi\x00there")}
			stream.Send(msg)
			rec.expect(t, "message")
			if got := recv(t, rec.messages, "message data"); string(got) != "hi\x00there" {
				t.Errorf("message data %q", got)
			}
			if err := h.drv.SendFrameworkMessage(context.Background(), []byte("back")); err != nil {
				t.Fatal(err)
			}
			m := recv(t, agent.calls, "MESSAGE")
			if m.call.GetType() != executorapi.Call_MESSAGE || string(m.call.GetMessage().GetData()) != "back" {
				t.Errorf("MESSAGE call %v", m.call)
			}

			stream.Send(&executorapi.Event{Type: executorapi.Event_KILL.Enum(), Kill: &executorapi.Event_Kill{TaskId: s.GetTaskId()}})
			rec.expect(t, "kill:t1")
			stream.Send(&executorapi.Event{Type: executorapi.Event_ERROR.Enum(), Error: &executorapi.Event_Error{Message: proto.String("boom")}})
			rec.expect(t, "error:boom")
			// Events this library does not know, and payload-less ones,
			// are skipped rather than fatal.
			stream.Send(&executorapi.Event{Type: executorapi.Event_Type(99).Enum()})
			stream.Send(event(executorapi.Event_LAUNCH))

			stream.Send(event(executorapi.Event_SHUTDOWN))
			rec.expect(t, "shutdown")
			if err := h.ended(t); err != nil {
				t.Fatalf("Run after Stop = %v, want nil", err)
			}
			if err := h.drv.SendStatusUpdate(context.Background(), &mesos.TaskStatus{TaskId: s.GetTaskId(), State: mesos.TaskState_TASK_KILLED.Enum()}); !errors.Is(err, ErrStopped) {
				t.Errorf("update after Stop: %v", err)
			}
		})
	}
}

// TestDriverResubscribes checks that a checkpointing executor survives a
// broken stream: it retries through a refusal, hands back what was not
// acknowledged, and sends what it queued meanwhile.
func TestDriverResubscribes(t *testing.T) {
	agent := newFakeAgent(t)
	agent.refuse = func(n int) int {
		if n == 2 {
			return http.StatusServiceUnavailable // agent still recovering
		}
		return 0
	}
	rec := newRecorder()
	rec.onLaunch = sendRunning
	var drv *HTTPDriver
	// An update sent while the third SUBSCRIBE is in flight is not in it,
	// so the driver must send it once subscribed.
	agent.beforeSubscribe = func(n int) {
		if n == 3 {
			if err := drv.SendStatusUpdate(context.Background(), &mesos.TaskStatus{
				TaskId: &mesos.TaskID{Value: proto.String("t1")}, State: mesos.TaskState_TASK_FINISHED.Enum(),
			}); err != nil {
				t.Error(err)
			}
		}
	}
	h := start(t, Config{Checkpoint: true, RecoveryTimeout: 10 * time.Second, SubscriptionBackoffMax: 20 * time.Millisecond}, agent, rec)
	drv = h.drv

	recv(t, agent.subs, "SUBSCRIBE")
	stream := recv(t, agent.streams, "stream")
	rec.expect(t, "registered:agent-1")
	stream.Send(launch("t1"))
	stream.Send(launch("t2"))
	rec.expect(t, "launch:t1")
	rec.expect(t, "launch:t2")
	running1 := recv(t, agent.calls, "UPDATE t1").call.GetUpdate().GetStatus()
	running2 := recv(t, agent.calls, "UPDATE t2").call.GetUpdate().GetStatus()
	stream.Send(ack(running2))

	// Wait until the ACK is in, then break the stream.
	testsupport.Eventually(t, "the ACK processed", 5*time.Second, func() bool {
		us, _ := h.drv.Unacknowledged()
		return len(us) == 1
	})
	stream.Close()
	rec.expect(t, "disconnected")

	refused := recv(t, agent.subs, "refused SUBSCRIBE")
	resub := recv(t, agent.subs, "re-SUBSCRIBE")
	for _, r := range []received{refused, resub} {
		got := r.call.GetSubscribe()
		if len(got.GetUnacknowledgedUpdates()) != 1 || !proto.Equal(got.GetUnacknowledgedUpdates()[0].GetStatus(), running1) {
			t.Errorf("re-SUBSCRIBE unacknowledged_updates = %v, want only %v", got.GetUnacknowledgedUpdates(), running1)
		}
		if len(got.GetUnacknowledgedTasks()) != 1 || got.GetUnacknowledgedTasks()[0].GetTaskId().GetValue() != "t1" {
			t.Errorf("re-SUBSCRIBE unacknowledged_tasks = %v, want t1 only", got.GetUnacknowledgedTasks())
		}
	}
	stream = recv(t, agent.streams, "second stream")
	rec.expect(t, "reregistered")
	late := recv(t, agent.calls, "queued UPDATE")
	if late.call.GetUpdate().GetStatus().GetState() != mesos.TaskState_TASK_FINISHED || late.streamID != "stream-3" {
		t.Errorf("queued update %v on stream %q", late.call, late.streamID)
	}
	if us, _ := h.drv.Unacknowledged(); len(us) != 2 {
		t.Errorf("pending updates = %d, want 2", len(us))
	}
}

// Without checkpointing a lost agent means shutting down.
func TestDriverDisconnectWithoutCheckpoint(t *testing.T) {
	agent := newFakeAgent(t)
	rec := newRecorder()
	rec.onShutdown = func(d Driver) { d.Stop() }
	h := start(t, Config{}, agent, rec)
	recv(t, agent.streams, "stream").Close()
	rec.expect(t, "registered:agent-1")
	rec.expect(t, "disconnected")
	rec.expect(t, "shutdown")
	if err := h.ended(t); !errors.Is(err, ErrDisconnected) {
		t.Fatalf("Run = %v, want ErrDisconnected", err)
	}
}

// A checkpointing executor gives up after the recovery timeout even when
// the agent takes its SUBSCRIBE and never answers: the attempt ends with
// the deadline, not after attemptTimeout.
func TestDriverRecoveryTimeoutBoundsAHungAttempt(t *testing.T) {
	agent := newFakeAgent(t)
	hang := make(chan struct{})
	agent.beforeSubscribe = func(n int) {
		if n > 1 {
			<-hang
		}
	}
	rec := newRecorder()
	rec.onShutdown = func(d Driver) { d.Stop() }
	h := start(t, Config{Checkpoint: true, RecoveryTimeout: 300 * time.Millisecond, SubscriptionBackoffMax: 20 * time.Millisecond}, agent, rec)
	t.Cleanup(func() { close(hang) }) // before the server's Close (cleanups run last first)
	recv(t, agent.streams, "stream").Close()
	rec.expect(t, "registered:agent-1")
	rec.expect(t, "disconnected")
	t0 := time.Now()
	rec.expect(t, "shutdown")
	if took := time.Since(t0); took >= attemptTimeout {
		t.Fatalf("shut down %v after the disconnection, want within the recovery timeout (300ms), not attemptTimeout", took)
	}
	if err := h.ended(t); !errors.Is(err, ErrRecoveryTimeout) {
		t.Fatalf("Run = %v, want ErrRecoveryTimeout", err)
	}
}

// A checkpointing executor gives up after the recovery timeout.
func TestDriverRecoveryTimeout(t *testing.T) {
	agent := newFakeAgent(t)
	agent.refuse = func(n int) int {
		if n > 1 {
			return http.StatusServiceUnavailable
		}
		return 0
	}
	rec := newRecorder()
	rec.onShutdown = func(d Driver) { d.Stop() }
	h := start(t, Config{Checkpoint: true, RecoveryTimeout: 200 * time.Millisecond, SubscriptionBackoffMax: 20 * time.Millisecond}, agent, rec)
	recv(t, agent.streams, "stream").Close()
	rec.expect(t, "registered:agent-1")
	rec.expect(t, "disconnected")
	rec.expect(t, "shutdown")
	if err := h.ended(t); !errors.Is(err, ErrRecoveryTimeout) {
		t.Fatalf("Run = %v, want ErrRecoveryTimeout", err)
	}
}

// An agent that refuses the first subscription (say, it does not know the
// executor) ends Run at once, without callbacks.
func TestDriverRefusedAtStart(t *testing.T) {
	agent := newFakeAgent(t)
	agent.refuse = func(int) int { return http.StatusBadRequest }
	rec := newRecorder()
	h := start(t, Config{}, agent, rec)
	err := h.ended(t)
	var se *httpapi.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusBadRequest {
		t.Fatalf("Run = %v, want the 400", err)
	}
	select {
	case ev := <-rec.events:
		t.Fatalf("unexpected callback %s", ev)
	default:
	}
}

// An executor that does not stop after SHUTDOWN is cut loose after the
// grace period.
func TestDriverShutdownGrace(t *testing.T) {
	agent := newFakeAgent(t)
	rec := newRecorder()
	h := start(t, Config{ShutdownGracePeriod: 100 * time.Millisecond}, agent, rec)
	recv(t, agent.streams, "stream").Send(event(executorapi.Event_SHUTDOWN))
	rec.expect(t, "registered:agent-1")
	rec.expect(t, "shutdown")
	if err := h.ended(t); !errors.Is(err, ErrShutdownGraceExpired) {
		t.Fatalf("Run = %v, want ErrShutdownGraceExpired", err)
	}
}

// A stream that goes silent after the agent showed it heartbeats is
// declared dead and replaced.
func TestDriverHeartbeatTimeout(t *testing.T) {
	agent := newFakeAgent(t)
	agent.heartbeat = 20 * time.Millisecond
	var mu sync.Mutex
	subs := 0
	silent := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		subs++
		first := subs == 1
		mu.Unlock()
		if !first {
			agent.ServeHTTP(w, r)
			return
		}
		// A half-dead agent: SUBSCRIBED, two heartbeats, then nothing while
		// the connection stays open.
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		rw := recordio.NewWriter(w)
		for _, ev := range []*executorapi.Event{
			{Type: executorapi.Event_SUBSCRIBED.Enum(), Subscribed: &executorapi.Event_Subscribed{
				ExecutorInfo:  &mesos.ExecutorInfo{ExecutorId: &mesos.ExecutorID{Value: proto.String("ex-1")}},
				FrameworkInfo: &mesos.FrameworkInfo{User: proto.String("root"), Name: proto.String("fw")},
				AgentInfo:     &mesos.AgentInfo{Hostname: proto.String("h"), Id: &mesos.AgentID{Value: proto.String("agent-0")}},
			}},
			event(executorapi.Event_HEARTBEAT),
			event(executorapi.Event_HEARTBEAT),
		} {
			b, _ := codec.JSON.Marshal(ev)
			_ = rw.WriteRecord(b)
			time.Sleep(20 * time.Millisecond)
		}
		<-r.Context().Done()
	})
	srv := httptest.NewServer(silent)
	t.Cleanup(srv.Close)
	rec := newRecorder()
	d, err := New(rec, Config{
		FrameworkID: "fw-1", ExecutorID: "ex-1", AgentEndpoint: strings.TrimPrefix(srv.URL, "http://"),
		Checkpoint: true, RecoveryTimeout: 5 * time.Second, SubscriptionBackoffMax: 20 * time.Millisecond,
	}, WithHeartbeatTimeout(150*time.Millisecond), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(context.Background()) }()
	rec.expect(t, "registered:agent-0")
	rec.expect(t, "disconnected")
	recv(t, agent.streams, "second stream")
	rec.expect(t, "reregistered")
	d.Stop()
	if err := recv(t, done, "Run"); err != nil {
		t.Fatalf("Run = %v", err)
	}
}

// Stop before Run makes Run return at once.
func TestDriverStopBeforeRun(t *testing.T) {
	d, err := New(newRecorder(), Config{FrameworkID: "f", ExecutorID: "e", AgentEndpoint: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	d.Stop()
	if err := d.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestNewValidates(t *testing.T) {
	for _, cfg := range []Config{
		{ExecutorID: "e", AgentEndpoint: "127.0.0.1:1"},
		{FrameworkID: "f", AgentEndpoint: "127.0.0.1:1"},
		{FrameworkID: "f", ExecutorID: "e", AgentEndpoint: "localhost"},
	} {
		if _, err := New(newRecorder(), cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func TestSendStatusUpdateValidates(t *testing.T) {
	d, err := New(newRecorder(), Config{FrameworkID: "f", ExecutorID: "e", AgentEndpoint: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*mesos.TaskStatus{
		{State: mesos.TaskState_TASK_RUNNING.Enum()},
		{TaskId: &mesos.TaskID{Value: proto.String("t")}},
		{TaskId: &mesos.TaskID{Value: proto.String("t")}, State: mesos.TaskState_TASK_STAGING.Enum()},
	} {
		if err := d.SendStatusUpdate(context.Background(), s); err == nil {
			t.Errorf("SendStatusUpdate(%v) accepted", s)
		}
	}
	// Before subscribing an update is queued, not lost.
	if err := d.SendStatusUpdate(context.Background(), &mesos.TaskStatus{TaskId: &mesos.TaskID{Value: proto.String("t")}, State: mesos.TaskState_TASK_RUNNING.Enum()}); err != nil {
		t.Fatal(err)
	}
	if us, _ := d.Unacknowledged(); len(us) != 1 || len(us[0].GetUuid()) != 16 || us[0].GetUuid()[6]>>4 != 4 {
		t.Fatalf("queued update %v", us)
	}
	if err := d.SendFrameworkMessage(context.Background(), nil); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("message while unsubscribed: %v", err)
	}
}

// With MESOS_EXECUTOR_AUTHENTICATION_TOKEN every call carries the token
// (Bearer), the subscription and the updates alike; without, none does.
func TestDriverSendsItsToken(t *testing.T) {
	for _, token := range []string{"the-token", ""} {
		agent := newFakeAgent(t)
		rec := newRecorder()
		rec.onLaunch = sendRunning
		start(t, Config{AuthenticationToken: token}, agent, rec)
		want := ""
		if token != "" {
			want = "Bearer " + token
		}
		if sub := recv(t, agent.subs, "SUBSCRIBE"); sub.authorization != want {
			t.Errorf("SUBSCRIBE Authorization %q, want %q", sub.authorization, want)
		}
		stream := recv(t, agent.streams, "stream")
		rec.expect(t, "registered:agent-1")
		stream.Send(launch("t1"))
		rec.expect(t, "launch:t1")
		if up := recv(t, agent.calls, "UPDATE"); up.authorization != want {
			t.Errorf("UPDATE Authorization %q, want %q", up.authorization, want)
		}
	}
}
