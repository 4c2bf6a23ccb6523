package scheduler

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral/corral/api/auth"
	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/api/v1/scheduler"
	"github.com/corral/corral/master"
	"github.com/corral/corral/master/mastertest"
	"google.golang.org/protobuf/proto"
)

func TestSchedulerURL(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		bad      bool
	}{
		{in: "127.0.0.1:5050", want: "http://127.0.0.1:5050/api/v1/scheduler"},
		{in: "http://m:5050", want: "http://m:5050/api/v1/scheduler"},
		{in: "https://m:5050/", want: "https://m:5050/api/v1/scheduler"},
		{in: "http://m:5050/api/v1/scheduler", want: "http://m:5050/api/v1/scheduler"},
		{in: "", bad: true},
		{in: "http://", bad: true},
	} {
		got, err := schedulerURL(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("schedulerURL(%q) = %q, %v; want %q (error: %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestResolveLocation(t *testing.T) {
	base := "http://10.0.0.1:5050/api/v1/scheduler"
	for _, tc := range []struct{ loc, want string }{
		// What Mesos sends: scheme-relative, with the path.
		{"//10.0.0.2:5050/api/v1/scheduler", "http://10.0.0.2:5050/api/v1/scheduler"},
		{"//10.0.0.2:5050", "http://10.0.0.2:5050/api/v1/scheduler"},
		{"https://leader:5050/api/v1/scheduler", "https://leader:5050/api/v1/scheduler"},
	} {
		got, err := resolveLocation(base, tc.loc)
		if err != nil || got != tc.want {
			t.Errorf("resolveLocation(%q) = %q, %v; want %q", tc.loc, got, err, tc.want)
		}
	}
}

func TestSubscribeAndTeardown(t *testing.T) {
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			m := startMaster(t, time.Second)
			r := newRecorder()
			d, err := New(Config{Master: m.addr, Framework: frameworkInfo("subscribe-" + c.name), Codec: c.codec, Log: testLogger(t)}, r)
			if err != nil {
				t.Fatal(err)
			}
			errc := runDriver(t, d)
			reg := r.next(t, "registered")
			id := reg.id.GetValue()
			if id == "" || d.FrameworkID().GetValue() != id {
				t.Fatalf("registered with ID %q, driver says %q", id, d.FrameworkID().GetValue())
			}
			if reg.master.GetId() == "" {
				t.Errorf("registered without MasterInfo: %v", reg.master)
			}
			if !contains(frameworkIDs(m.state(t), "frameworks"), id) {
				t.Fatalf("master does not list framework %s", id)
			}
			if err := d.Stop(false); err != nil {
				t.Fatalf("Stop(false): %v", err)
			}
			if err := waitErr(t, errc); err != nil {
				t.Fatalf("Run after Stop: %v", err)
			}
			st := m.state(t)
			if contains(frameworkIDs(st, "frameworks"), id) || !contains(frameworkIDs(st, "completed_frameworks"), id) {
				t.Fatalf("framework %s not torn down: frameworks %v, completed %v", id,
					frameworkIDs(st, "frameworks"), frameworkIDs(st, "completed_frameworks"))
			}
			if err := d.ReviveOffers(context.Background()); !errors.Is(err, ErrNotSubscribed) {
				t.Errorf("call after Stop: %v, want ErrNotSubscribed", err)
			}
		})
	}
}

// The master itself must end the event stream on TEARDOWN (COMPAT.md);
// checked on a raw subscription so the driver's own Stop cannot hide it.
func TestTeardownClosesStream(t *testing.T) {
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			m := startMaster(t, time.Second)
			client := &httpapi.Client{URL: m.URL + "/api/v1/scheduler", Codec: c.codec}
			sub, err := client.Subscribe(context.Background(), &scheduler.Call{
				Type:      scheduler.Call_SUBSCRIBE.Enum(),
				Subscribe: &scheduler.Call_Subscribe{FrameworkInfo: frameworkInfo("raw")},
			}, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			ev := &scheduler.Event{}
			if err := sub.Next(ev); err != nil || ev.GetType() != scheduler.Event_SUBSCRIBED {
				t.Fatalf("first event %v, %v", ev, err)
			}
			if err := client.Call(context.Background(), &scheduler.Call{
				Type: scheduler.Call_TEARDOWN.Enum(), FrameworkId: ev.GetSubscribed().GetFrameworkId(),
			}, nil); err != nil {
				t.Fatalf("TEARDOWN: %v", err)
			}
			done := make(chan error, 1)
			go func() {
				for {
					if err := sub.Next(&scheduler.Event{}); err != nil {
						done <- err
						return
					}
				}
			}()
			select {
			case err := <-done:
				if !errors.Is(err, io.EOF) {
					t.Errorf("stream ended with %v, want EOF", err)
				}
			case <-time.After(waitTimeout):
				t.Fatal("stream still open after TEARDOWN")
			}
		})
	}
}

func TestInvalidFrameworkInfoIsFatal(t *testing.T) {
	m := startMaster(t, time.Second)
	for _, tc := range []struct {
		name string
		info *mesos.FrameworkInfo
		want string // in the error
		http int    // the master's answer; 0 when caught before sending
	}{
		{"no user", &mesos.FrameworkInfo{Name: proto.String("x")}, "user", 0},
		{"no name", &mesos.FrameworkInfo{User: proto.String("nobody")}, "name", 0},
		{"negative failover timeout", &mesos.FrameworkInfo{User: proto.String("u"), Name: proto.String("x"), FailoverTimeout: proto.Float64(-1)}, "failover_timeout", http.StatusBadRequest},
		{"roles without MULTI_ROLE", &mesos.FrameworkInfo{User: proto.String("u"), Name: proto.String("x"), Roles: []string{"a"}}, "MULTI_ROLE", http.StatusBadRequest},
	} {
		for _, c := range codecs {
			t.Run(tc.name+"/"+c.name, func(t *testing.T) {
				r := newRecorder()
				d, err := New(Config{Master: m.addr, Framework: tc.info, Codec: c.codec, Log: testLogger(t)}, r)
				if err != nil {
					t.Fatal(err)
				}
				err = waitErr(t, runDriver(t, d))
				// Required proto2 fields are caught before sending; the
				// master catches the rest with a 400. Both are fatal.
				var fatal *FatalError
				if !errors.As(err, &fatal) {
					t.Fatalf("Run = %v, want a *FatalError", err)
				}
				if se := (*httpapi.StatusError)(nil); tc.http != 0 && (!errors.As(err, &se) || se.Code != tc.http) {
					t.Errorf("Run = %v, want the master's HTTP %d", err, tc.http)
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %q does not mention %q", err, tc.want)
				}
				if e := r.next(t, "error"); !strings.Contains(e.msg, tc.want) {
					t.Errorf("Error callback %q does not mention %q", e.msg, tc.want)
				}
			})
		}
	}
}

func TestResubscribeAfterConnectionDrop(t *testing.T) {
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			m := startMaster(t, time.Second)
			r := newRecorder()
			d, err := New(Config{
				Master: m.URL, Framework: frameworkInfo("drop"), Codec: c.codec, Log: testLogger(t),
				MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
			}, r)
			if err != nil {
				t.Fatal(err)
			}
			runDriver(t, d)
			id := r.next(t, "registered").id.GetValue()
			for i := 0; i < 2; i++ {
				m.CloseClientConnections()
				r.next(t, "disconnected")
				if got := r.next(t, "reregistered").id.GetValue(); got != id {
					t.Fatalf("re-registered as %q, want %q", got, id)
				}
			}
			if ids := frameworkIDs(m.state(t), "frameworks"); len(ids) != 1 || ids[0] != id {
				t.Fatalf("master frameworks %v, want just %s", ids, id)
			}
			if err := d.ReviveOffers(context.Background()); err != nil {
				t.Fatalf("call on the new stream: %v", err)
			}
		})
	}
}

// freezeProxy forwards TCP to the master and can stop passing the master's
// bytes on the connections open so far, as a dead network path would: the
// client sees silence, not a closed connection.
type freezeProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []*atomic.Bool
}

func startFreezeProxy(t *testing.T, target string) *freezeProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezeProxy{ln: ln, target: target}
	var wg sync.WaitGroup
	var open sync.Map
	t.Cleanup(func() {
		ln.Close()
		open.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			cc, err := ln.Accept()
			if err != nil {
				return
			}
			sc, err := net.Dial("tcp", target)
			if err != nil {
				cc.Close()
				continue
			}
			open.Store(cc, true)
			open.Store(sc, true)
			frozen := &atomic.Bool{}
			p.mu.Lock()
			p.conns = append(p.conns, frozen)
			p.mu.Unlock()
			wg.Add(2)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(sc, cc)
				sc.Close()
				cc.Close()
			}()
			go func() {
				defer wg.Done()
				defer cc.Close()
				defer sc.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := sc.Read(buf)
					if err != nil {
						return
					}
					if frozen.Load() {
						continue
					}
					if _, err := cc.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return p
}

func (p *freezeProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.conns {
		f.Store(true)
	}
}

func TestMissedHeartbeats(t *testing.T) {
	const heartbeat = 100 * time.Millisecond
	m := startMaster(t, heartbeat)
	p := startFreezeProxy(t, m.addr)
	var logs logBuffer
	r := newRecorder()
	d, err := New(Config{
		Master: p.ln.Addr().String(), Framework: frameworkInfo("heartbeat"),
		Log: slog.New(slog.NewTextHandler(&logs, nil)),
		// A connection per request, so freezing hits the event stream only.
		HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	}, r)
	if err != nil {
		t.Fatal(err)
	}
	runDriver(t, d)
	id := r.next(t, "registered").id.GetValue()
	// Heartbeats keep a healthy, idle stream alive well past the deadline.
	r.none(t, "disconnected", 10*heartbeat)

	frozenAt := time.Now()
	p.freeze()
	r.next(t, "disconnected")
	// The last heartbeat may have come up to one interval before the freeze.
	if took := time.Since(frozenAt); took < 2*heartbeat || took > 10*heartbeat {
		t.Errorf("dead stream noticed after %v; want about 3.5 heartbeats (%v)", took, 3*heartbeat+heartbeat/2)
	}
	if !strings.Contains(logs.String(), ErrMissedHeartbeats.Error()) {
		t.Errorf("log does not say why the stream was dropped:\n%s", logs.String())
	}
	if got := r.next(t, "reregistered").id.GetValue(); got != id {
		t.Fatalf("re-registered as %q, want %q", got, id)
	}
}

// A callback slower than the heartbeat deadline must not be taken for a
// silent master: heartbeats are read while callbacks run.
func TestSlowCallbackIsNotAMissedHeartbeat(t *testing.T) {
	const heartbeat = 100 * time.Millisecond
	m := startMaster(t, heartbeat)
	r := newRecorder()
	r.onRegistered = func(Driver) { time.Sleep(10 * heartbeat) }
	d, err := New(Config{Master: m.addr, Framework: frameworkInfo("slow"), Log: testLogger(t)}, r)
	if err != nil {
		t.Fatal(err)
	}
	runDriver(t, d)
	r.next(t, "registered")
	r.none(t, "disconnected", 5*heartbeat)
	if err := d.ReviveOffers(context.Background()); err != nil {
		t.Fatalf("call after slow callback: %v", err)
	}
}

func TestCallsFromCallbacks(t *testing.T) {
	m := startMaster(t, time.Second)
	r := newRecorder()
	var callErrs []error
	r.onRegistered = func(d Driver) {
		ctx := context.Background()
		callErrs = append(callErrs,
			d.SuppressOffers(ctx),
			d.ReviveOffers(ctx),
			d.ReconcileTasks(ctx, nil),
			d.ReconcileTasks(ctx, []*mesos.TaskStatus{{TaskId: &mesos.TaskID{Value: proto.String("ghost")}}}),
			d.Stop(false),
		)
	}
	d, err := New(Config{Master: m.addr, Framework: frameworkInfo("callbacks"), Log: testLogger(t)}, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := waitErr(t, runDriver(t, d)); err != nil {
		t.Fatalf("Run after Stop from a callback: %v", err)
	}
	id := r.next(t, "registered").id.GetValue()
	for i, err := range callErrs {
		if err != nil {
			t.Errorf("call %d from Registered: %v", i, err)
		}
	}
	if !contains(frameworkIDs(m.state(t), "completed_frameworks"), id) {
		t.Errorf("framework %s not torn down by Stop(false) from a callback", id)
	}
}

func TestStopBeforeRun(t *testing.T) {
	d, err := New(Config{Master: "127.0.0.1:1", Framework: frameworkInfo("x")}, BaseScheduler{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Stop(false); err != nil {
		t.Fatal(err)
	}
	if err := d.Run(context.Background()); err != nil {
		t.Fatalf("Run after Stop = %v, want nil", err)
	}
}

func TestGiveUpAfter(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	d, err := New(Config{
		Master: addr, Framework: frameworkInfo("x"), Log: testLogger(t),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, GiveUpAfter: 200 * time.Millisecond,
	}, BaseScheduler{})
	if err != nil {
		t.Fatal(err)
	}
	err = waitErr(t, runDriver(t, d))
	if err == nil || !strings.Contains(err.Error(), "no subscription") {
		t.Fatalf("Run = %v, want it to give up", err)
	}
}

func TestContextCancelLeavesFramework(t *testing.T) {
	m := startMaster(t, time.Second)
	r := newRecorder()
	d, err := New(Config{Master: m.addr, Framework: frameworkInfo("ctx"), Log: testLogger(t)}, r)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx) }()
	id := r.next(t, "registered").id.GetValue()
	cancel()
	if err := waitErr(t, errc); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	if contains(frameworkIDs(m.state(t), "completed_frameworks"), id) {
		t.Errorf("framework %s was torn down; cancelling Run must leave it for failover", id)
	}
}

func TestRedirectToLeader(t *testing.T) {
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			m := startMaster(t, time.Second)
			var redirected atomic.Int32
			// A non-leading master answers every call with 307 and the
			// leader's scheme-relative address, as Mesos does.
			follower := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				redirected.Add(1)
				w.Header().Set("Location", "//"+m.addr+"/api/v1/scheduler")
				w.WriteHeader(http.StatusTemporaryRedirect)
			})}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go follower.Serve(ln)
			t.Cleanup(func() { follower.Close() })

			r := newRecorder()
			d, err := New(Config{Master: ln.Addr().String(), Framework: frameworkInfo("redirect"), Codec: c.codec, Log: testLogger(t)}, r)
			if err != nil {
				t.Fatal(err)
			}
			runDriver(t, d)
			id := r.next(t, "registered").id.GetValue()
			if redirected.Load() != 1 {
				t.Errorf("follower saw %d requests, want 1", redirected.Load())
			}
			if !contains(frameworkIDs(m.state(t), "frameworks"), id) {
				t.Fatalf("leader does not know framework %s", id)
			}
			// Calls go to the leader with the stream's ID.
			if err := d.ReviveOffers(context.Background()); err != nil {
				t.Fatalf("call after redirect: %v", err)
			}
		})
	}
}

func TestImplicitAcksRefuseExplicitAck(t *testing.T) {
	d, err := New(Config{Master: "127.0.0.1:1", Framework: frameworkInfo("x")}, BaseScheduler{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.AcknowledgeStatusUpdate(context.Background(), &mesos.TaskStatus{Uuid: make([]byte, 16)}); err == nil {
		t.Fatal("explicit ack with implicit acks enabled: no error")
	}
}

// With Credential the driver authenticates every call: it subscribes to a
// master that wants frameworks authenticated, takes its principal, and
// stops (TEARDOWN) as itself; a wrong secret is fatal (401).
func TestCredential(t *testing.T) {
	addr, srv := mastertest.Start(t, master.Config{HeartbeatInterval: time.Second, Log: testLogger(t),
		FrameworkCredentials: auth.Credentials{"fw": "secret"}})
	m := &testMaster{Server: srv, addr: addr}
	for _, c := range []struct {
		name   string
		secret string
	}{{"right secret", "secret"}, {"wrong secret", "nope"}} {
		t.Run(c.name, func(t *testing.T) {
			r := newRecorder()
			d, err := New(Config{Master: m.addr, Framework: frameworkInfo("cred"), Log: testLogger(t),
				Credential: &mesos.Credential{Principal: proto.String("fw"), Secret: proto.String(c.secret)}}, r)
			if err != nil {
				t.Fatal(err)
			}
			errc := runDriver(t, d)
			if c.secret != "secret" {
				var se *httpapi.StatusError
				if err := waitErr(t, errc); !errors.As(err, &se) || se.Code != http.StatusUnauthorized {
					t.Fatalf("Run with a wrong secret = %v, want a fatal 401", err)
				}
				return
			}
			id := r.next(t, "registered").id.GetValue()
			if err := d.ReviveOffers(context.Background()); err != nil {
				t.Fatalf("an authenticated call: %v", err)
			}
			if err := d.Stop(false); err != nil {
				t.Fatalf("Stop(false): %v", err)
			}
			if err := waitErr(t, errc); err != nil {
				t.Fatalf("Run after Stop: %v", err)
			}
			if !contains(frameworkIDs(m.state(t), "completed_frameworks"), id) {
				t.Fatalf("framework %s not torn down by its authenticated TEARDOWN", id)
			}
		})
	}
}

// A redirect from an https master to a plain-HTTP address is not
// followed: the credentials would go in the clear.
func TestRedirectToPlainHTTPRefused(t *testing.T) {
	var plain atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { plain.Add(1) }))
	t.Cleanup(target.Close)
	follower := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", target.URL+"/api/v1/scheduler")
		w.WriteHeader(http.StatusTemporaryRedirect)
	}))
	t.Cleanup(follower.Close)
	d, err := New(Config{
		Master: follower.URL, HTTPClient: follower.Client(), Framework: frameworkInfo("tls"), Log: testLogger(t),
		Credential: &mesos.Credential{Principal: proto.String("p"), Secret: proto.String("s")},
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, GiveUpAfter: 200 * time.Millisecond,
	}, BaseScheduler{})
	if err != nil {
		t.Fatal(err)
	}
	err = waitErr(t, runDriver(t, d))
	if err == nil || !strings.Contains(err.Error(), "plain HTTP") {
		t.Fatalf("Run = %v, want the redirect to plain HTTP refused", err)
	}
	if n := plain.Load(); n != 0 {
		t.Fatalf("the plain-HTTP address got %d requests", n)
	}
}
