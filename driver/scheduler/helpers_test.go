package scheduler

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/ids"
	"github.com/corral/corral/master"
	"github.com/corral/corral/master/mastertest"
	"google.golang.org/protobuf/proto"
)

const waitTimeout = 10 * time.Second

var codecs = []struct {
	name  string
	codec codec.Codec
}{
	{"json", codec.JSON},
	{"protobuf", codec.Protobuf},
}

// testMaster is the real master on a loopback listener.
type testMaster struct {
	*httptest.Server
	addr string
}

func startMaster(t *testing.T, heartbeat time.Duration) *testMaster {
	t.Helper()
	addr, srv := mastertest.Start(t, master.Config{HeartbeatInterval: heartbeat, AllocationInterval: 50 * time.Millisecond, Log: testLogger(t)})
	return &testMaster{Server: srv, addr: addr}
}

// state fetches the master's /state.
func (m *testMaster) state(t *testing.T) map[string]any {
	t.Helper()
	resp, err := http.Get(m.URL + "/state")
	if err != nil {
		t.Fatalf("GET /state: %v", err)
	}
	defer resp.Body.Close()
	var st map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("decoding /state: %v", err)
	}
	return st
}

// frameworkIDs lists the IDs under a /state key ("frameworks" or
// "completed_frameworks").
func frameworkIDs(st map[string]any, key string) []string {
	var ids []string
	list, _ := st[key].([]any)
	for _, f := range list {
		if fw, ok := f.(map[string]any); ok {
			id, _ := fw["id"].(string)
			ids = append(ids, id)
		}
	}
	return ids
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// logBuffer collects the driver's logs so tests can look for a reason.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func frameworkInfo(name string) *mesos.FrameworkInfo {
	return &mesos.FrameworkInfo{
		User:            proto.String("nobody"),
		Name:            proto.String(name),
		FailoverTimeout: proto.Float64(60),
	}
}

// rec is one callback, as recorded.
type rec struct {
	kind     string
	id       *mesos.FrameworkID
	master   *mesos.MasterInfo
	offers   []*mesos.Offer
	offerID  *mesos.OfferID
	status   *mesos.TaskStatus
	executor *mesos.ExecutorID
	agent    *mesos.AgentID
	data     []byte
	code     int
	msg      string
}

// recorder is a Scheduler that records every callback; hooks run on the
// callback goroutine first, to act as a real scheduler would.
type recorder struct {
	ch           chan rec
	onRegistered func(Driver)
	onOffers     func(Driver, []*mesos.Offer)
	onUpdate     func(Driver, *mesos.TaskStatus)
}

var _ Scheduler = (*recorder)(nil)

func newRecorder() *recorder { return &recorder{ch: make(chan rec, 1000)} }

func (r *recorder) Registered(d Driver, id *mesos.FrameworkID, mi *mesos.MasterInfo) {
	if r.onRegistered != nil {
		r.onRegistered(d)
	}
	r.ch <- rec{kind: "registered", id: id, master: mi}
}
func (r *recorder) Reregistered(d Driver, mi *mesos.MasterInfo) {
	r.ch <- rec{kind: "reregistered", id: d.FrameworkID(), master: mi}
}
func (r *recorder) Disconnected(Driver) { r.ch <- rec{kind: "disconnected"} }
func (r *recorder) ResourceOffers(d Driver, offers []*mesos.Offer) {
	if r.onOffers != nil {
		r.onOffers(d, offers)
	}
	r.ch <- rec{kind: "offers", offers: offers}
}
func (r *recorder) OfferRescinded(_ Driver, id *mesos.OfferID) {
	r.ch <- rec{kind: "rescinded", offerID: id}
}
func (r *recorder) StatusUpdate(d Driver, s *mesos.TaskStatus) {
	if r.onUpdate != nil {
		r.onUpdate(d, s)
	}
	r.ch <- rec{kind: "update", status: s}
}
func (r *recorder) FrameworkMessage(_ Driver, ex *mesos.ExecutorID, ag *mesos.AgentID, data []byte) {
	r.ch <- rec{kind: "message", executor: ex, agent: ag, data: data}
}
func (r *recorder) AgentLost(_ Driver, ag *mesos.AgentID) { r.ch <- rec{kind: "agent_lost", agent: ag} }
func (r *recorder) ExecutorLost(_ Driver, ex *mesos.ExecutorID, ag *mesos.AgentID, status int) {
	r.ch <- rec{kind: "executor_lost", executor: ex, agent: ag, code: status}
}
func (r *recorder) Error(_ Driver, msg string) { r.ch <- rec{kind: "error", msg: msg} }

// next waits for the next callback of kind, skipping others.
func (r *recorder) next(t *testing.T, kind string) rec {
	t.Helper()
	timeout := time.After(waitTimeout)
	for {
		select {
		case e := <-r.ch:
			if e.kind == kind {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s callback within %v", kind, waitTimeout)
		}
	}
}

// none checks that no callback of kind comes within d.
func (r *recorder) none(t *testing.T, kind string, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case e := <-r.ch:
			if e.kind == kind {
				t.Fatalf("unexpected %s callback: %+v", kind, e)
			}
		case <-timeout:
			return
		}
	}
}

// runDriver starts Run and returns a channel with its result; the cleanup
// stops the driver (failover, so the master's state is left as the test
// made it) and waits for Run.
func runDriver(t *testing.T, d *HTTPDriver) <-chan error {
	t.Helper()
	errc := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		errc <- d.Run(context.Background())
	}()
	t.Cleanup(func() {
		_ = d.Stop(true)
		select {
		case <-done:
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return after Stop")
		}
	})
	return errc
}

func waitErr(t *testing.T, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(waitTimeout):
		t.Fatalf("Run did not return within %v", waitTimeout)
		return nil
	}
}

// testAgent speaks the master's internal agent API just enough to make
// offers and report task states; the master under test is real.
type testAgent struct {
	// disconnect ends the agent's subscription.
	disconnect context.CancelFunc
	client     *httpapi.Client
	id         *mesos.AgentID
	events     chan *cluster.Event
}

func startTestAgent(t *testing.T, m *testMaster, res string) *testAgent {
	t.Helper()
	rs, err := resources.Parse(res)
	if err != nil {
		t.Fatal(err)
	}
	host, portStr, _ := net.SplitHostPort(m.addr)
	port, _ := strconv.Atoi(portStr)
	c := &httpapi.Client{URL: m.URL + "/internal/v1/agent", Codec: codec.Protobuf}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sub, err := c.Subscribe(ctx, &cluster.Call{
		Type: cluster.Call_SUBSCRIBE.Enum(),
		Subscribe: &cluster.Call_Subscribe{
			AgentInfo: &mesos.AgentInfo{Hostname: proto.String("test-agent"), Resources: rs},
			Endpoint: &mesos.URL{Scheme: proto.String("http"), Address: &mesos.Address{
				Hostname: proto.String("test-agent"), Ip: proto.String(host), Port: proto.Int32(int32(port + 1)),
			}},
		},
	}, 0)
	if err != nil {
		t.Fatalf("test agent subscribe: %v", err)
	}
	a := &testAgent{disconnect: cancel, client: c, events: make(chan *cluster.Event, 100)}
	first := &cluster.Event{}
	if err := sub.Next(first); err != nil || first.GetType() != cluster.Event_SUBSCRIBED {
		t.Fatalf("test agent: first event %v, %v", first, err)
	}
	a.id = first.GetSubscribed().GetAgentId()
	go func() {
		defer sub.Close()
		for {
			ev := &cluster.Event{}
			if err := sub.Next(ev); err != nil {
				return
			}
			if ev.GetType() != cluster.Event_HEARTBEAT {
				a.events <- ev
			}
		}
	}()
	return a
}

func (a *testAgent) next(t *testing.T, typ cluster.Event_Type) *cluster.Event {
	t.Helper()
	timeout := time.After(waitTimeout)
	for {
		select {
		case ev := <-a.events:
			if ev.GetType() == typ {
				return ev
			}
		case <-timeout:
			t.Fatalf("test agent: no %v within %v", typ, waitTimeout)
			return nil
		}
	}
}

func (a *testAgent) none(t *testing.T, typ cluster.Event_Type, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case ev := <-a.events:
			if ev.GetType() == typ {
				t.Fatalf("test agent: unexpected %v: %v", typ, ev)
			}
		case <-timeout:
			return
		}
	}
}

func (a *testAgent) call(t *testing.T, c *cluster.Call) {
	t.Helper()
	c.AgentId = a.id
	if err := a.client.Call(context.Background(), c, nil); err != nil {
		t.Fatalf("test agent call %v: %v", c.GetType(), err)
	}
}

// update reports a task state with a fresh uuid and returns the status.
func (a *testAgent) update(t *testing.T, fw *mesos.FrameworkID, task *mesos.TaskID, state mesos.TaskState) *mesos.TaskStatus {
	t.Helper()
	s := &mesos.TaskStatus{
		TaskId: task, State: state.Enum(), AgentId: a.id,
		Source: mesos.TaskStatus_SOURCE_EXECUTOR.Enum(),
		Uuid:   ids.UUID(),
	}
	a.call(t, &cluster.Call{Type: cluster.Call_STATUS_UPDATE.Enum(), StatusUpdate: &cluster.StatusUpdate{FrameworkId: fw, Status: s}})
	return s
}
