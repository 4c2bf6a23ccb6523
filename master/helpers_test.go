package master_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/api/v1/scheduler"
	"github.com/corral/corral/internal/testsupport"
	"github.com/corral/corral/master"
	"github.com/corral/corral/master/mastertest"
	"google.golang.org/protobuf/proto"
)

const agentResources = "cpus:2;mem:1024;disk:1024;ports:[31000-31009]"

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testMaster is a real master serving on loopback (mastertest.Start).
type testMaster struct {
	addr string
}

func (tm *testMaster) url(path string) string { return "http://" + tm.addr + path }

func startMaster(t *testing.T) *testMaster {
	t.Helper()
	return startMasterWith(t, func(*master.Config) {})
}

// startMasterWith is startMaster with the test's changes to the config.
func startMasterWith(t *testing.T, change func(*master.Config)) *testMaster {
	t.Helper()
	cfg := master.Config{
		HeartbeatInterval:  500 * time.Millisecond,
		AllocationInterval: 50 * time.Millisecond,
		Log:                quietLog(),
	}
	change(&cfg)
	addr, _ := mastertest.Start(t, cfg)
	return &testMaster{addr: addr}
}

// setup starts a master and a fake agent (mastertest.FakeAgent) with
// agentResources that acts out command tasks: "true" finishes at once,
// "sleep N" after N seconds, a kill ends a task. The prefix keeps the
// test's task IDs its own.
func setup(t *testing.T) (*testMaster, *mastertest.FakeAgent, string) {
	t.Helper()
	tm := startMaster(t)
	fa := mastertest.ConnectAgent(t, tm.addr, mastertest.AgentOptions{Resources: agentResources, RunCommands: true})
	return tm, fa, testsupport.Prefix(t)
}

// connectFakeAgent connects a fake agent with agentResources that only
// records what the master tells it; the test sends its updates.
func connectFakeAgent(t *testing.T, tm *testMaster, id string, tasks []*mesos.Task, frameworks []*mesos.FrameworkInfo, executors ...*mesos.ExecutorInfo) *mastertest.FakeAgent {
	t.Helper()
	return connectFakeAgentWith(t, tm, agentResources, id, tasks, frameworks, executors...)
}

// connectFakeAgentWith is connectFakeAgent for an agent with resources res
// (the --resources text form).
func connectFakeAgentWith(t *testing.T, tm *testMaster, res string, id string, tasks []*mesos.Task, frameworks []*mesos.FrameworkInfo, executors ...*mesos.ExecutorInfo) *mastertest.FakeAgent {
	t.Helper()
	return mastertest.ConnectAgent(t, tm.addr, mastertest.AgentOptions{
		ID: id, Resources: res, Tasks: tasks, Frameworks: frameworks, Executors: executors,
	})
}

// scheduler is a framework connected through the v1 scheduler API.
type schedulerClient struct {
	t      *testing.T
	c      *httpapi.Client
	sub    *httpapi.Subscription
	id     string
	events chan *scheduler.Event
	// endErr is the error that ended the stream (io.EOF for a clean end),
	// readable once events is closed.
	endErr error
	// pending holds events read while looking for another.
	pending []*scheduler.Event
}

type subscribeOpt func(*mesos.FrameworkInfo)

func partitionAware(fi *mesos.FrameworkInfo) {
	fi.Capabilities = append(fi.Capabilities, &mesos.FrameworkInfo_Capability{Type: mesos.FrameworkInfo_Capability_PARTITION_AWARE.Enum()})
}

func subscribe(t *testing.T, tm *testMaster, c codec.Codec, opts ...subscribeOpt) *schedulerClient {
	t.Helper()
	info := &mesos.FrameworkInfo{User: proto.String("test"), Name: proto.String(t.Name())}
	for _, o := range opts {
		o(info)
	}
	return subscribeWith(t, tm, c, &scheduler.Call_Subscribe{FrameworkInfo: info})
}

func subscribeWith(t *testing.T, tm *testMaster, c codec.Codec, call *scheduler.Call_Subscribe) *schedulerClient {
	t.Helper()
	return subscribeAs(t, tm, c, call, nil)
}

// subscribeAs is subscribeWith whose calls all carry header (credentials).
func subscribeAs(t *testing.T, tm *testMaster, c codec.Codec, call *scheduler.Call_Subscribe, header http.Header) *schedulerClient {
	t.Helper()
	s := &schedulerClient{
		t:      t,
		c:      &httpapi.Client{URL: tm.url("/api/v1/scheduler"), Codec: c, Header: header},
		events: make(chan *scheduler.Event, 1000),
	}
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := s.c.Subscribe(ctx, &scheduler.Call{
		Type:      scheduler.Call_SUBSCRIBE.Enum(),
		Subscribe: call,
	}, 30*time.Second)
	if err != nil {
		cancel()
		t.Fatalf("subscribe: %v", err)
	}
	s.sub = sub
	t.Cleanup(func() { cancel(); _ = sub.Close() })
	go func() {
		defer close(s.events)
		for {
			ev := &scheduler.Event{}
			if err := sub.Next(ev); err != nil {
				s.endErr = err
				return
			}
			s.events <- ev
		}
	}()
	ev := s.next(scheduler.Event_SUBSCRIBED, 5*time.Second)
	s.id = ev.GetSubscribed().GetFrameworkId().GetValue()
	if s.id == "" {
		t.Fatalf("SUBSCRIBED without a framework ID: %v", ev)
	}
	return s
}

// read returns the next event of any type other than HEARTBEAT, or nil on
// timeout or the end of the stream.
func (s *schedulerClient) read(timeout time.Duration) *scheduler.Event {
	if len(s.pending) > 0 {
		ev := s.pending[0]
		s.pending = s.pending[1:]
		return ev
	}
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				return nil
			}
			if ev.GetType() == scheduler.Event_HEARTBEAT {
				continue
			}
			return ev
		case <-deadline:
			return nil
		}
	}
}

// next waits for an event of the given type; other events are kept for
// later reads.
func (s *schedulerClient) next(typ scheduler.Event_Type, timeout time.Duration) *scheduler.Event {
	s.t.Helper()
	ev := s.find(timeout, func(ev *scheduler.Event) bool { return ev.GetType() == typ })
	if ev == nil {
		s.t.Fatalf("no %v event within %v", typ, timeout)
	}
	return ev
}

// find waits for an event matching f; the others are kept, in order.
func (s *schedulerClient) find(timeout time.Duration, f func(*scheduler.Event) bool) *scheduler.Event {
	for i, ev := range s.pending {
		if f(ev) {
			s.pending = append(s.pending[:i:i], s.pending[i+1:]...)
			return ev
		}
	}
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				return nil
			}
			if f(ev) {
				return ev
			}
			if ev.GetType() != scheduler.Event_HEARTBEAT {
				s.pending = append(s.pending, ev)
			}
		case <-deadline:
			return nil
		}
	}
}

// noEvent checks that no event of typ arrives within d.
func (s *schedulerClient) noEvent(typ scheduler.Event_Type, d time.Duration) {
	s.t.Helper()
	if ev := s.find(d, func(ev *scheduler.Event) bool { return ev.GetType() == typ }); ev != nil {
		s.t.Fatalf("unexpected %v event: %v", typ, ev)
	}
}

// dropPending forgets events read so far (e.g. offers already handled).
func (s *schedulerClient) dropPending(typ scheduler.Event_Type) {
	var keep []*scheduler.Event
	for _, ev := range s.pending {
		if ev.GetType() != typ {
			keep = append(keep, ev)
		}
	}
	s.pending = keep
}

// update waits for a status update of task in one of states. Every update
// carrying a uuid that is seen on the way is acknowledged.
func (s *schedulerClient) update(taskID string, timeout time.Duration, states ...mesos.TaskState) *mesos.TaskStatus {
	s.t.Helper()
	ev := s.find(timeout, func(ev *scheduler.Event) bool {
		if ev.GetType() != scheduler.Event_UPDATE {
			return false
		}
		st := ev.GetUpdate().GetStatus()
		if st.GetTaskId().GetValue() != taskID {
			return false
		}
		s.ackStatus(st)
		for _, want := range states {
			if st.GetState() == want {
				return true
			}
		}
		return false
	})
	if ev == nil {
		s.t.Fatalf("no update of task %s to %v within %v", taskID, states, timeout)
	}
	return ev.GetUpdate().GetStatus()
}

func (s *schedulerClient) ackStatus(st *mesos.TaskStatus) {
	if len(st.GetUuid()) == 0 || st.GetAgentId().GetValue() == "" {
		return
	}
	_ = s.call(&scheduler.Call{Type: scheduler.Call_ACKNOWLEDGE.Enum(), Acknowledge: &scheduler.Call_Acknowledge{
		AgentId: st.GetAgentId(), TaskId: st.GetTaskId(), Uuid: st.GetUuid(),
	}})
}

func (s *schedulerClient) call(c *scheduler.Call) error {
	if c.FrameworkId == nil {
		c.FrameworkId = &mesos.FrameworkID{Value: proto.String(s.id)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.c.Call(ctx, c, nil)
}

func (s *schedulerClient) mustCall(c *scheduler.Call) {
	s.t.Helper()
	if err := s.call(c); err != nil {
		s.t.Fatalf("%v call: %v", c.GetType(), err)
	}
}

// offer waits for one offer.
func (s *schedulerClient) offer(timeout time.Duration) *mesos.Offer {
	s.t.Helper()
	ev := s.next(scheduler.Event_OFFERS, timeout)
	offers := ev.GetOffers().GetOffers()
	if len(offers) != 1 {
		s.t.Fatalf("OFFERS with %d offers, want 1 (one agent)", len(offers))
	}
	return offers[0]
}

func (s *schedulerClient) decline(o *mesos.Offer, refuse float64) {
	s.t.Helper()
	s.mustCall(&scheduler.Call{Type: scheduler.Call_DECLINE.Enum(), Decline: &scheduler.Call_Decline{
		OfferIds: []*mesos.OfferID{o.GetId()}, Filters: &mesos.Filters{RefuseSeconds: proto.Float64(refuse)},
	}})
}

// launch accepts offer o with tasks; unused resources are not filtered.
func (s *schedulerClient) launch(o *mesos.Offer, tasks ...*mesos.TaskInfo) {
	s.t.Helper()
	s.mustCall(acceptCall([]*mesos.OfferID{o.GetId()}, tasks...))
}

func acceptCall(offers []*mesos.OfferID, tasks ...*mesos.TaskInfo) *scheduler.Call {
	return &scheduler.Call{Type: scheduler.Call_ACCEPT.Enum(), Accept: &scheduler.Call_Accept{
		OfferIds: offers,
		Operations: []*mesos.Offer_Operation{{
			Type:   mesos.Offer_Operation_LAUNCH.Enum(),
			Launch: &mesos.Offer_Operation_Launch{TaskInfos: tasks},
		}},
		Filters: &mesos.Filters{RefuseSeconds: proto.Float64(0)},
	}}
}

// task builds a command task whose processes carry prefix in their
// environment, so CheckLeaks finds them if they outlive the test.
func task(prefix, id string, o *mesos.Offer, res, cmd string) *mesos.TaskInfo {
	r, err := resources.Parse(res)
	if err != nil {
		panic(err)
	}
	ti := &mesos.TaskInfo{
		Name:      proto.String(id),
		TaskId:    &mesos.TaskID{Value: proto.String(prefix + id)},
		Resources: r,
		Command: &mesos.CommandInfo{
			Value: proto.String(cmd),
			Environment: &mesos.Environment{Variables: []*mesos.Environment_Variable{
				{Name: proto.String("CORRAL_TEST_PREFIX"), Value: proto.String(prefix)},
			}},
		},
	}
	if o != nil {
		ti.AgentId = o.GetAgentId()
	}
	return ti
}

func scalar(list []*mesos.Resource, name string) float64 {
	r, err := resources.New(list)
	if err != nil {
		return -1
	}
	return r.Scalar(name)
}

func rangesOf(list []*mesos.Resource, name string) string {
	for _, r := range list {
		if r.GetName() == name && r.GetType() == mesos.Value_RANGES {
			var parts []string
			for _, rg := range r.GetRanges().GetRange() {
				parts = append(parts, fmt.Sprintf("%d-%d", rg.GetBegin(), rg.GetEnd()))
			}
			return strings.Join(parts, ",")
		}
	}
	return ""
}

// rawPost posts body to url with the given headers and returns the status
// and body.
func rawPost(t *testing.T, url string, header map[string]string, body []byte) (int, string) {
	t.Helper()
	h := http.Header{}
	for k, v := range header {
		h.Set(k, v)
	}
	code, msg, _ := rawPostHeader(t, url, h, body)
	return code, msg
}

// rawPostHeader is rawPost with the request's and the answer's headers.
func rawPostHeader(t *testing.T, url string, header http.Header, body []byte) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func statusCode(err error) int {
	var se *httpapi.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}
