package conformance

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	mclient "github.com/mesos/mesos-go/api/v1/lib/client"
	"github.com/mesos/mesos-go/api/v1/lib/encoding"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/httpsched"
	"github.com/mesos/mesos-go/api/v1/lib/resources"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
)

// codecCase is one wire encoding mesos-go speaks.
type codecCase struct {
	name  string
	codec encoding.Codec
}

var codecCases = []codecCase{
	{"json", codecs.ByMediaType[codecs.MediaTypeJSON]},
	{"protobuf", codecs.ByMediaType[codecs.MediaTypeProtobuf]},
}

// forEachCodec runs f as a subtest per codec.
func forEachCodec(t *testing.T, f func(t *testing.T, cc codecCase)) {
	requireRoot(t)
	for _, cc := range codecCases {
		t.Run(cc.name, func(t *testing.T) { f(t, cc) })
	}
}

func schedulerEndpoint(c *corral) string { return c.URL + "/api/v1/scheduler" }

// newHTTPClient is mesos-go's plain HTTP client for the scheduler endpoint,
// without the subscription state machine of httpsched: for sending calls
// the state machine would not let through (wrong stream id, junk).
func newHTTPClient(c *corral, cc codecCase) *httpcli.Client {
	return httpcli.New(
		httpcli.Endpoint(schedulerEndpoint(c)),
		httpcli.Codec(cc.codec),
		httpcli.Do(httpcli.With(httpcli.Timeout(10*time.Second))),
	)
}

// clientRequest and clientAuto are how mesos-go's httpcli sends one call
// and reads whatever answer comes (as httpsched does).
func clientRequest(m encoding.Marshaler) mclient.Request { return mclient.RequestSingleton(m) }

const clientAuto = mclient.ResponseClassAuto

// session is one framework subscribed through mesos-go's httpsched caller.
type session struct {
	t           *testing.T
	cc          codecCase
	caller      calls.Caller
	resp        mesos.Response
	events      chan *scheduler.Event
	streamErr   error // valid once events is closed
	FrameworkID string
	Subscribed  *scheduler.Event_Subscribed
	heartbeats  int
}

// subscribe subscribes a framework "conformance-<codec>" as user root and
// waits for SUBSCRIBED, which must be the first event.
func subscribe(ctx context.Context, t *testing.T, c *corral, cc codecCase, opts ...func(*mesos.FrameworkInfo)) *session {
	t.Helper()
	return subscribeVia(ctx, t, c, cc, nil, opts...)
}

// subscribeVia is subscribe with more options of mesos-go's client
// (credentials).
func subscribeVia(ctx context.Context, t *testing.T, c *corral, cc codecCase, cliOpts []httpcli.Opt, opts ...func(*mesos.FrameworkInfo)) *session {
	t.Helper()
	cli := httpcli.New(append([]httpcli.Opt{
		httpcli.Endpoint(schedulerEndpoint(c)),
		httpcli.Codec(cc.codec),
		// mesos-go's default transport: response headers within 15 s, no
		// overall timeout (the subscription stream is long-lived).
	}, cliOpts...)...)
	s := &session{
		t:      t,
		cc:     cc,
		caller: httpsched.NewCaller(cli),
		events: make(chan *scheduler.Event, 64),
	}
	info := &mesos.FrameworkInfo{
		User: "root",
		Name: "conformance-" + cc.name,
	}
	for _, o := range opts {
		o(info)
	}
	resp, err := s.caller.Call(ctx, calls.Subscribe(info))
	if err != nil {
		if resp != nil {
			resp.Close()
		}
		t.Fatalf("SUBSCRIBE (%s): %v", cc.name, err)
	}
	if resp == nil {
		t.Fatalf("SUBSCRIBE (%s): no response stream", cc.name)
	}
	s.resp = resp
	t.Cleanup(func() { resp.Close() })

	go func() {
		defer close(s.events)
		for {
			e := new(scheduler.Event)
			if err := resp.Decode(e); err != nil {
				s.streamErr = err
				return
			}
			select {
			case s.events <- e:
			case <-ctx.Done():
				s.streamErr = ctx.Err()
				return
			}
		}
	}()

	e, err := s.next(ctx)
	if err != nil {
		t.Fatalf("waiting for SUBSCRIBED: %v", err)
	}
	if e.GetType() != scheduler.Event_SUBSCRIBED || e.Subscribed == nil {
		t.Fatalf("first event is %s, want SUBSCRIBED: %s", e.GetType(), e.String())
	}
	s.Subscribed = e.Subscribed
	s.FrameworkID = e.Subscribed.GetFrameworkID().GetValue()
	if s.FrameworkID == "" {
		t.Fatalf("SUBSCRIBED without framework_id: %s", e.String())
	}
	if hb := e.Subscribed.GetHeartbeatIntervalSeconds(); hb <= 0 {
		t.Errorf("SUBSCRIBED heartbeat_interval_seconds = %v, want > 0", hb)
	}
	t.Logf("%s: SUBSCRIBED framework_id=%s heartbeat_interval_seconds=%v",
		cc.name, s.FrameworkID, e.Subscribed.GetHeartbeatIntervalSeconds())
	return s
}

// next returns the next event on the stream, or an error if the stream ended
// or ctx expired.
func (s *session) next(ctx context.Context) (*scheduler.Event, error) {
	select {
	case e, ok := <-s.events:
		if !ok {
			return nil, fmt.Errorf("event stream ended: %v", s.streamErr)
		}
		return e, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("no event in time: %w", ctx.Err())
	}
}

// call sends a call for this framework through the httpsched caller; any
// error (including a non-202 answer) is returned.
func (s *session) call(ctx context.Context, call *scheduler.Call) error {
	call = call.With(calls.Framework(s.FrameworkID))
	resp, err := s.caller.Call(ctx, call)
	if resp != nil {
		resp.Close()
	}
	if err != nil {
		return fmt.Errorf("%s call: %w", call.GetType(), err)
	}
	return nil
}

func (s *session) mustCall(ctx context.Context, call *scheduler.Call) {
	s.t.Helper()
	if err := s.call(ctx, call); err != nil {
		s.t.Fatal(err)
	}
}

// await reads events until match returns true for one and returns it. On the
// way it acknowledges every UPDATE that carries a uuid (before match sees
// it), declines OFFERS that match does not want, counts HEARTBEATs, and fails
// the test on ERROR or FAILURE events.
func (s *session) await(ctx context.Context, what string, match func(*scheduler.Event) bool) *scheduler.Event {
	s.t.Helper()
	for {
		e, err := s.next(ctx)
		if err != nil {
			s.t.Fatalf("waiting for %s: %v", what, err)
		}
		switch e.GetType() {
		case scheduler.Event_HEARTBEAT:
			s.heartbeats++
		case scheduler.Event_ERROR:
			s.t.Fatalf("waiting for %s: ERROR event: %s", what, e.GetError().GetMessage())
		case scheduler.Event_FAILURE:
			s.t.Errorf("waiting for %s: FAILURE event: %s", what, e.String())
		case scheduler.Event_UPDATE:
			s.ack(ctx, e.GetUpdate().GetStatus())
		}
		if match(e) {
			return e
		}
		if e.GetType() == scheduler.Event_OFFERS {
			s.decline(ctx, e.GetOffers().GetOffers()...)
		}
	}
}

// ack acknowledges a status update if it carries a uuid.
func (s *session) ack(ctx context.Context, st mesos.TaskStatus) {
	s.t.Helper()
	if len(st.UUID) == 0 {
		return
	}
	if len(st.UUID) != 16 {
		s.t.Errorf("status update for %s carries a %d-byte uuid, want 16 raw bytes: %x", st.TaskID.Value, len(st.UUID), st.UUID)
	}
	if st.AgentID == nil {
		s.t.Errorf("status update for %s with uuid has no agent_id: %s", st.TaskID.Value, st.String())
	}
	if err := s.call(ctx, calls.Acknowledge(st.GetAgentID().GetValue(), st.TaskID.Value, st.UUID)); err != nil {
		s.t.Errorf("acknowledging %s %s: %v", st.TaskID.Value, st.GetState(), err)
	}
}

func (s *session) decline(ctx context.Context, offers ...mesos.Offer) {
	s.t.Helper()
	if len(offers) == 0 {
		return
	}
	ids := make([]mesos.OfferID, len(offers))
	for i := range offers {
		ids[i] = offers[i].ID
	}
	if err := s.call(ctx, calls.Decline(ids...).With(calls.RefuseSeconds(time.Second))); err != nil {
		s.t.Errorf("declining offers: %v", err)
	}
}

// teardown sends TEARDOWN and expects the master to close the event stream.
func (s *session) teardown(ctx context.Context) {
	s.t.Helper()
	s.mustCall(ctx, &scheduler.Call{Type: scheduler.Call_TEARDOWN})
	wait, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		select {
		case e, ok := <-s.events:
			if !ok {
				s.t.Logf("%s: event stream closed after TEARDOWN (%v)", s.cc.name, s.streamErr)
				return
			}
			if e.GetType() == scheduler.Event_UPDATE {
				// Terminal updates of killed tasks may still arrive; nobody
				// acknowledges after TEARDOWN.
				continue
			}
		case <-wait.Done():
			s.t.Errorf("event stream still open 10 s after TEARDOWN (COMPAT: close the framework's event stream)")
			return
		}
	}
}

func isType(t scheduler.Event_Type) func(*scheduler.Event) bool {
	return func(e *scheduler.Event) bool { return e.GetType() == t }
}

// awaitOffer waits for an OFFERS event, checks its offers and returns the
// first one that can hold wants; the others are declined.
func (s *session) awaitOffer(ctx context.Context, wants mesos.Resources) (mesos.Offer, mesos.Resources) {
	s.t.Helper()
	for {
		e := s.await(ctx, "OFFERS", isType(scheduler.Event_OFFERS))
		offers := e.GetOffers().GetOffers()
		if len(offers) == 0 {
			s.t.Errorf("OFFERS event without offers: %s", e.String())
			continue
		}
		for i, o := range offers {
			checkOffer(s.t, s.FrameworkID, o)
			if found := resources.Find(wants, o.Resources...); len(found) > 0 {
				rest := append(append([]mesos.Offer(nil), offers[:i]...), offers[i+1:]...)
				s.decline(ctx, rest...)
				return o, found
			}
		}
		s.t.Logf("no offer holds %v; declining %d offers", wants, len(offers))
		s.decline(ctx, offers...)
	}
}

// checkOffer checks what mesos-go's decoding does not (it already enforces
// the required fields).
func checkOffer(t *testing.T, frameworkID string, o mesos.Offer) {
	t.Helper()
	if o.ID.Value == "" || o.AgentID.Value == "" || o.Hostname == "" {
		t.Errorf("offer lacks id, agent_id or hostname: %s", o.String())
	}
	if o.FrameworkID.Value != frameworkID {
		t.Errorf("offer framework_id = %q, want %q", o.FrameworkID.Value, frameworkID)
	}
	if u := o.URL; u == nil {
		t.Errorf("offer %s has no url (COMPAT: offers carry url with address.ip, address.port and scheme)", o.ID.Value)
	} else if u.Scheme != "http" || u.Address.GetIP() == "" || u.Address.Port <= 0 {
		t.Errorf("offer %s url = %s, want scheme http, address.ip and address.port", o.ID.Value, u.String())
	}
	if _, ok := resources.CPUs(o.Resources...); !ok {
		t.Errorf("offer %s has no cpus: %v", o.ID.Value, mesos.Resources(o.Resources))
	}
	if _, ok := resources.Memory(o.Resources...); !ok {
		t.Errorf("offer %s has no mem: %v", o.ID.Value, mesos.Resources(o.Resources))
	}
}

// commandTaskWants is what every test task asks for.
func commandTaskWants() mesos.Resources {
	return mesos.Resources{
		resources.NewCPUs(0.1).Resource,
		resources.NewMemory(32).Resource,
	}
}

// launch accepts offer with one LAUNCH of a command task and returns it.
func (s *session) launch(ctx context.Context, offer mesos.Offer, res mesos.Resources, taskID, command string) mesos.TaskInfo {
	s.t.Helper()
	task := mesos.TaskInfo{
		Name:      taskID,
		TaskID:    mesos.TaskID{Value: taskID},
		AgentID:   offer.AgentID,
		Resources: res,
		Command: &mesos.CommandInfo{
			Value: &command,
		},
	}
	accept := calls.Accept(
		calls.OfferOperations{calls.OpLaunch(task)}.WithOffers(offer.ID),
	).With(calls.RefuseSeconds(time.Second))
	s.mustCall(ctx, accept)
	s.t.Logf("%s: ACCEPT offer %s: LAUNCH %s (%q) with %v on agent %s",
		s.cc.name, offer.ID.Value, taskID, command, res, offer.AgentID.Value)
	return task
}

// awaitTaskState follows UPDATEs of task (acknowledging them) until one in
// a state that stop accepts; it returns the updates seen on the way.
func (s *session) awaitTaskState(ctx context.Context, taskID string, stop func(mesos.TaskState) bool) []mesos.TaskStatus {
	s.t.Helper()
	var seen []mesos.TaskStatus
	s.await(ctx, "update of "+taskID, func(e *scheduler.Event) bool {
		if e.GetType() != scheduler.Event_UPDATE {
			return false
		}
		st := e.GetUpdate().GetStatus()
		if st.TaskID.Value != taskID {
			return false
		}
		seen = append(seen, st)
		return stop(st.GetState())
	})
	return seen
}

func stateNames(sts []mesos.TaskStatus) string {
	names := make([]string, len(sts))
	for i, st := range sts {
		names[i] = st.GetState().String()
	}
	return strings.Join(names, " -> ")
}
