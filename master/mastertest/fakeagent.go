package mastertest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/tlsconfig"
	"github.com/corral/corral/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

// EventWait bounds how long FakeAgent.Next waits for an event: it only
// turns a hang into a failure.
const EventWait = 10 * time.Second

// AgentOptions is what a FakeAgent claims when it subscribes.
type AgentOptions struct {
	// ID re-registers under an agent ID of an earlier run; empty registers.
	ID string
	// Resources in the --resources text form.
	Resources string
	// Hostname and the address of the agent's HTTP API the master puts
	// in offers (nothing listens there). Defaults: "fake", 127.0.0.1:1.
	Hostname string
	IP       string
	Port     int
	// What the agent reports it still runs, for a re-registration.
	Frameworks []*mesos.FrameworkInfo
	Executors  []*mesos.ExecutorInfo
	Tasks      []*mesos.Task
	// RunCommands makes the agent act out command tasks instead of only
	// recording them; see FakeAgent.RunCommands.
	RunCommands bool
	// Header goes with every call (credentials).
	Header http.Header
	// TLS, when set, makes the agent speak https to the master, trusting
	// and presenting what it holds.
	TLS *tls.Config
}

// FakeAgent speaks the internal agent protocol (api/cluster) to a master:
// it subscribes with the resources it is given, records every event the
// master sends it and sends status updates when the test says so. Nothing
// runs: a test of the master's allocation, ACCEPT and task bookkeeping
// needs neither root nor built binaries with it.
type FakeAgent struct {
	ID string
	// Endpoint is the host:port the agent claimed for its HTTP API.
	Endpoint string

	tb     testing.TB
	c      *httpapi.Client
	sub    *httpapi.Subscription
	events chan *cluster.Event
	done   chan struct{}

	mu       sync.Mutex
	closed   bool
	recorded []*cluster.Event
	running  map[string]*fakeTask // by task ID, with RunCommands
}

type fakeTask struct {
	fwID  string
	info  *mesos.TaskInfo
	timer *time.Timer
}

// ConnectAgent subscribes a fake agent with the master at addr and returns
// once the master answered SUBSCRIBED. The agent disconnects when the test
// ends, before the master stops.
func ConnectAgent(tb testing.TB, addr string, o AgentOptions) *FakeAgent {
	tb.Helper()
	res, err := resources.Parse(o.Resources)
	if err != nil {
		tb.Fatalf("fake agent resources %q: %v", o.Resources, err)
	}
	if o.Hostname == "" {
		o.Hostname = "fake"
	}
	if o.IP == "" {
		o.IP = "127.0.0.1"
	}
	if o.Port == 0 {
		o.Port = 1
	}
	scheme := "http"
	if o.TLS != nil {
		scheme = "https"
	}
	// As many kept connections as the real agent's calls in flight: calls
	// side by side do not each pay for a new connection (or handshake).
	tr := tlsconfig.Transport(o.TLS)
	tr.MaxIdleConnsPerHost = 32
	tb.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	fa := &FakeAgent{
		Endpoint: o.IP + ":" + strconv.Itoa(o.Port),
		tb:       tb,
		c:        &httpapi.Client{URL: scheme + "://" + addr + "/internal/v1/agent", Codec: codec.Protobuf, Header: o.Header, HTTP: hc},
		events:   make(chan *cluster.Event, 1000),
		done:     make(chan struct{}),
		running:  map[string]*fakeTask{},
	}
	call := &cluster.Call{Type: cluster.Call_SUBSCRIBE.Enum(), Subscribe: &cluster.Call_Subscribe{
		AgentInfo: &mesos.AgentInfo{Hostname: proto.String(o.Hostname), Port: proto.Int32(int32(o.Port)), Resources: res},
		Endpoint: &mesos.URL{Scheme: proto.String(scheme), Path: proto.String("/slave(1)"),
			Address: &mesos.Address{Hostname: proto.String(o.Hostname), Ip: proto.String(o.IP), Port: proto.Int32(int32(o.Port))}},
		Tasks: o.Tasks, Frameworks: o.Frameworks, Executors: o.Executors,
	}}
	if o.ID != "" {
		call.AgentId = &mesos.AgentID{Value: proto.String(o.ID)}
	}
	sub, err := fa.c.Subscribe(context.Background(), call, time.Minute)
	if err != nil {
		tb.Fatalf("agent SUBSCRIBE: %v", err)
	}
	fa.sub = sub
	ev := &cluster.Event{}
	if err := sub.Next(ev); err != nil || ev.GetType() != cluster.Event_SUBSCRIBED {
		_ = sub.Close()
		tb.Fatalf("first event %v, %v; want SUBSCRIBED", ev.GetType(), err)
	}
	fa.ID = ev.GetSubscribed().GetAgentId().GetValue()
	go fa.read(o.RunCommands)
	tb.Cleanup(fa.Close)
	return fa
}

func (fa *FakeAgent) read(act bool) {
	defer close(fa.done)
	defer close(fa.events)
	for {
		ev := &cluster.Event{}
		if err := fa.sub.Next(ev); err != nil {
			return
		}
		if ev.GetType() == cluster.Event_HEARTBEAT {
			continue
		}
		fa.mu.Lock()
		fa.recorded = append(fa.recorded, ev)
		fa.mu.Unlock()
		if act {
			fa.act(ev)
		}
		select {
		case fa.events <- ev:
		default: // a test that reads none of them must not stall the stream
		}
	}
}

// Close ends the agent's stream, as an agent that goes away; the master
// sees it disconnect. Updates of tasks it runs stop.
func (fa *FakeAgent) Close() {
	fa.mu.Lock()
	fa.closed = true
	for _, t := range fa.running {
		if t.timer != nil {
			t.timer.Stop()
		}
	}
	fa.mu.Unlock()
	_ = fa.sub.Close()
	<-fa.done
}

// Next waits for the next event of typ the master sent, skipping others.
func (fa *FakeAgent) Next(typ cluster.Event_Type) *cluster.Event {
	fa.tb.Helper()
	timeout := time.After(EventWait)
	for {
		select {
		case ev, ok := <-fa.events:
			if !ok {
				fa.tb.Fatalf("agent stream ended waiting for %v", typ)
			}
			if ev.GetType() == typ {
				return ev
			}
		case <-timeout:
			fa.tb.Fatalf("no %v for the agent within %v", typ, EventWait)
		}
	}
}

// Events returns every event the master sent so far but heartbeats, in
// order, whether or not Next consumed them.
func (fa *FakeAgent) Events() []*cluster.Event {
	fa.mu.Lock()
	defer fa.mu.Unlock()
	return append([]*cluster.Event(nil), fa.recorded...)
}

// Update sends the master an executor's update of task ti of framework
// fwID to state, with a fresh uuid.
func (fa *FakeAgent) Update(fwID string, ti *mesos.TaskInfo, state mesos.TaskState) {
	fa.tb.Helper()
	if err := fa.send(fwID, ti, state, 0); err != nil {
		fa.tb.Fatalf("STATUS_UPDATE: %v", err)
	}
}

// UpdateAt is Update with the status' timestamp (0: none).
func (fa *FakeAgent) UpdateAt(fwID string, ti *mesos.TaskInfo, state mesos.TaskState, timestamp float64) {
	fa.tb.Helper()
	if err := fa.send(fwID, ti, state, timestamp); err != nil {
		fa.tb.Fatalf("STATUS_UPDATE: %v", err)
	}
}

// TryUpdate is Update that returns its error: for goroutines besides the
// test's.
func (fa *FakeAgent) TryUpdate(fwID string, ti *mesos.TaskInfo, state mesos.TaskState) error {
	return fa.send(fwID, ti, state, 0)
}

func (fa *FakeAgent) send(fwID string, ti *mesos.TaskInfo, state mesos.TaskState, timestamp float64) error {
	uuid := make([]byte, 16)
	_, _ = rand.Read(uuid)
	agentID := &mesos.AgentID{Value: proto.String(fa.ID)}
	call := &cluster.Call{Type: cluster.Call_STATUS_UPDATE.Enum(), AgentId: agentID,
		StatusUpdate: &cluster.StatusUpdate{
			FrameworkId: &mesos.FrameworkID{Value: proto.String(fwID)},
			ExecutorId:  ti.GetExecutor().GetExecutorId(),
			Status: &mesos.TaskStatus{TaskId: ti.GetTaskId(), State: state.Enum(), Source: mesos.TaskStatus_SOURCE_EXECUTOR.Enum(),
				Uuid: uuid, AgentId: agentID},
			LatestState: state.Enum(),
		}}
	if timestamp != 0 {
		call.StatusUpdate.Status.Timestamp = proto.Float64(timestamp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return fa.c.Call(ctx, call, nil)
}

// RunCommands (AgentOptions.RunCommands) acts out command tasks the way
// the agent reports them, without running anything: a RUN_TASK is
// answered TASK_STARTING and TASK_RUNNING; a command "true" then finishes
// (TASK_FINISHED) at once, "sleep N" after N seconds, any other runs until
// a KILL_TASK (TASK_KILLED). SHUTDOWN_FRAMEWORK kills the framework's
// tasks. It is the agent only as far as the master can tell.
func (fa *FakeAgent) act(ev *cluster.Event) {
	switch ev.GetType() {
	case cluster.Event_RUN_TASK:
		rt := ev.GetRunTask()
		fa.start(rt.GetFramework().GetId().GetValue(), rt.GetTask())
	case cluster.Event_RUN_TASK_GROUP:
		rg := ev.GetRunTaskGroup()
		for _, ti := range rg.GetTaskGroup().GetTasks() {
			fa.start(rg.GetFramework().GetId().GetValue(), ti)
		}
	case cluster.Event_KILL_TASK:
		fa.end(ev.GetKillTask().GetTaskId().GetValue(), mesos.TaskState_TASK_KILLED)
	case cluster.Event_SHUTDOWN_FRAMEWORK:
		fwID := ev.GetShutdownFramework().GetFrameworkId().GetValue()
		fa.mu.Lock()
		var ids []string
		for id, t := range fa.running {
			if t.fwID == fwID {
				ids = append(ids, id)
			}
		}
		fa.mu.Unlock()
		for _, id := range ids {
			fa.end(id, mesos.TaskState_TASK_KILLED)
		}
	}
}

func (fa *FakeAgent) start(fwID string, ti *mesos.TaskInfo) {
	id := ti.GetTaskId().GetValue()
	t := &fakeTask{fwID: fwID, info: ti}
	fa.mu.Lock()
	fa.running[id] = t
	fa.mu.Unlock()
	fa.report(fwID, ti, mesos.TaskState_TASK_STARTING)
	fa.report(fwID, ti, mesos.TaskState_TASK_RUNNING)
	cmd := strings.TrimSpace(ti.GetCommand().GetValue())
	switch {
	case cmd == "true":
		fa.end(id, mesos.TaskState_TASK_FINISHED)
	case strings.HasPrefix(cmd, "sleep "):
		secs, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(cmd, "sleep ")), 64)
		if err != nil {
			return
		}
		fa.mu.Lock()
		t.timer = time.AfterFunc(time.Duration(secs*float64(time.Second)), func() { fa.end(id, mesos.TaskState_TASK_FINISHED) })
		fa.mu.Unlock()
	}
}

// end ends a task that runs, once: a kill after the end changes nothing.
func (fa *FakeAgent) end(id string, state mesos.TaskState) {
	fa.mu.Lock()
	t := fa.running[id]
	delete(fa.running, id)
	if t != nil && t.timer != nil {
		t.timer.Stop()
	}
	fa.mu.Unlock()
	if t != nil {
		fa.report(t.fwID, t.info, state)
	}
}

// report sends an update from the agent's own goroutines, where a failure
// cannot stop the test: it is reported, unless the agent is closing.
func (fa *FakeAgent) report(fwID string, ti *mesos.TaskInfo, state mesos.TaskState) {
	fa.mu.Lock()
	closed := fa.closed
	fa.mu.Unlock()
	if closed {
		return
	}
	if err := fa.send(fwID, ti, state, 0); err != nil {
		fa.mu.Lock()
		closed = fa.closed
		fa.mu.Unlock()
		if !closed {
			fa.tb.Errorf("fake agent: STATUS_UPDATE %s %v: %v", ti.GetTaskId().GetValue(), state, err)
		}
	}
}
