package scheduler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corral/corral/api/auth"
	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/api/v1/scheduler"
	"google.golang.org/protobuf/proto"
)

// Config configures an HTTPDriver. Master and Framework are required.
type Config struct {
	// Master is the master's host:port or URL (http://host:port, with or
	// without the /api/v1/scheduler path).
	Master string
	// Framework is subscribed as given; set Framework.Id to take over a
	// framework that is failing over. The driver keeps the ID the master
	// assigns for every later subscription.
	Framework *mesos.FrameworkInfo
	// Codec is the media type spoken with the master; default codec.JSON.
	Codec codec.Codec
	// ExplicitAcks makes the Scheduler acknowledge status updates itself
	// with AcknowledgeStatusUpdate. By default the driver acknowledges each
	// update once StatusUpdate returns, like the old driver's implicit
	// acknowledgements.
	ExplicitAcks bool
	// HTTPClient is used for the event stream and for calls. Its Timeout is
	// ignored (the stream is long-lived; calls are bounded by their
	// contexts) and so are its redirects (the driver handles 307 itself).
	HTTPClient *http.Client
	Log        *slog.Logger
	// MinBackoff and MaxBackoff bound the jittered exponential delay
	// between subscription attempts; defaults 500ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// MissedHeartbeats is how many heartbeat intervals of silence mean the
	// stream is dead; default 3.
	MissedHeartbeats int
	// CallTimeout bounds the calls the driver makes on its own
	// (acknowledgements, the TEARDOWN of Stop); default 10s.
	CallTimeout time.Duration
	// Credential, when set, authenticates every call with HTTP basic
	// authentication (a master with --authenticate_http_frameworks). The
	// framework's principal is the credential's unless Framework names
	// one.
	Credential *mesos.Credential
	// GiveUpAfter makes Run fail when no subscription succeeded for that
	// long (counted from Run's start or from the last time the stream
	// dropped); 0 retries forever, as Mesos' drivers do.
	GiveUpAfter time.Duration
}

// FatalError ends Run: the master refused the framework, by an ERROR event
// or by answering SUBSCRIBE with a client error (such as 400 for an invalid
// FrameworkInfo). Retrying would not help.
type FatalError struct {
	Message string
	// Err is the *httpapi.StatusError of a refused SUBSCRIBE; nil for an
	// ERROR event.
	Err error
}

func (e *FatalError) Error() string { return "framework refused by master: " + e.Message }
func (e *FatalError) Unwrap() error { return e.Err }

var (
	// ErrNotSubscribed is returned by calls made while the driver has no
	// subscription.
	ErrNotSubscribed = errors.New("scheduler driver is not subscribed")
	// ErrMissedHeartbeats ends a stream that stayed silent for
	// Config.MissedHeartbeats heartbeat intervals.
	ErrMissedHeartbeats = errors.New("missed heartbeats")
	// errStreamClosed is a stream the master ended cleanly.
	errStreamClosed = errors.New("master closed the event stream")
)

// HTTPDriver is a Driver over the v1 scheduler HTTP API. Create it with New,
// then call Run; it is good for one Run.
type HTTPDriver struct {
	cfg   Config
	sched Scheduler
	log   *slog.Logger
	home  string // the configured master's scheduler URL
	http  *http.Client

	// Only Run's goroutine touches these.
	url        string // where the next SUBSCRIBE goes
	registered bool

	mu          sync.Mutex
	client      *httpapi.Client // the current subscription; nil when none
	frameworkID *mesos.FrameworkID
	running     bool
	stopped     bool
	stop        chan struct{}
}

var _ Driver = (*HTTPDriver)(nil)

// New checks the configuration and returns a driver for sched.
func New(cfg Config, sched Scheduler) (*HTTPDriver, error) {
	if sched == nil {
		return nil, errors.New("scheduler driver: no Scheduler")
	}
	if cfg.Framework == nil {
		return nil, errors.New("scheduler driver: no FrameworkInfo")
	}
	home, err := schedulerURL(cfg.Master)
	if err != nil {
		return nil, fmt.Errorf("scheduler driver: master %q: %w", cfg.Master, err)
	}
	cfg.Framework = proto.Clone(cfg.Framework).(*mesos.FrameworkInfo)
	if cfg.Codec == nil {
		cfg.Codec = codec.JSON
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(30*time.Second, cfg.MinBackoff)
	}
	if cfg.MissedHeartbeats <= 0 {
		cfg.MissedHeartbeats = 3
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	var hc http.Client
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	}
	hc.Timeout = 0
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	d := &HTTPDriver{
		cfg:   cfg,
		sched: sched,
		log:   cfg.Log.With("component", "scheduler-driver"),
		home:  home,
		url:   home,
		http:  &hc,
		stop:  make(chan struct{}),
	}
	if cfg.Framework.GetId().GetValue() != "" {
		d.frameworkID = cfg.Framework.GetId()
	}
	return d, nil
}

// schedulerURL turns host:port or a URL into the scheduler endpoint's URL.
func schedulerURL(master string) (string, error) {
	if master == "" {
		return "", errors.New("empty address")
	}
	if !strings.Contains(master, "://") {
		master = "http://" + master
	}
	u, err := url.Parse(master)
	if err != nil {
		return "", err
	}
	if u.Host == "" {
		return "", errors.New("no host")
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/api/v1/scheduler"
	}
	return u.String(), nil
}

// FrameworkID returns the framework's ID, nil before the master assigned one.
func (d *HTTPDriver) FrameworkID() *mesos.FrameworkID {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.frameworkID
}

// Run subscribes and dispatches events to the Scheduler until Stop is
// called (it returns nil), ctx ends (ctx.Err()), the master refuses the
// framework (*FatalError) or Config.GiveUpAfter passes without a
// subscription. Ending ctx leaves the framework registered, like
// Stop(true).
func (d *HTTPDriver) Run(ctx context.Context) error {
	d.mu.Lock()
	if d.running {
		d.mu.Unlock()
		return errors.New("scheduler driver: Run called twice")
	}
	d.running = true
	d.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-d.stop:
			cancel()
		case <-ctx.Done():
		}
	}()

	backoff := d.cfg.MinBackoff
	lastGood := time.Now()
	redirects := 0
	for {
		subscribed, err := d.session(ctx)
		d.mu.Lock()
		d.client = nil
		d.mu.Unlock()
		if d.isStopped() {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if fatal := (*FatalError)(nil); errors.As(err, &fatal) {
			return err
		}
		if r := (*redirectError)(nil); errors.As(err, &r) && strings.HasPrefix(d.url, "https://") && strings.HasPrefix(r.location, "http://") {
			// Credentials and tasks must not follow a redirect to plain
			// HTTP; the configured master is asked again.
			d.log.Warn("refusing a redirect from https to plain HTTP", "from", d.url, "to", r.location)
			err = fmt.Errorf("redirect from %s to %s refused: plain HTTP", d.url, r.location)
		} else if errors.As(err, &r) && redirects < maxRedirects {
			// A non-leading master names the leader: go there at once.
			redirects++
			d.log.Info("master redirected to the leading master", "from", d.url, "to", r.location)
			d.url = r.location
			continue
		}
		redirects = 0
		if subscribed {
			lastGood, backoff = time.Now(), d.cfg.MinBackoff
			d.log.Warn("disconnected from master", "master", d.url, "err", err)
			d.sched.Disconnected(d)
			if d.isStopped() {
				return nil
			}
		} else if d.url != d.home {
			// The leader we were sent to is unreachable; ask the configured
			// master who leads now.
			d.url = d.home
		}
		if d.cfg.GiveUpAfter > 0 && time.Since(lastGood) > d.cfg.GiveUpAfter {
			return fmt.Errorf("no subscription to %s for %v: %w", d.home, d.cfg.GiveUpAfter, err)
		}
		wait := jitter(backoff)
		backoff = min(2*backoff, d.cfg.MaxBackoff)
		d.log.Warn("subscribing failed; retrying", "master", d.url, "err", err, "in", wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}
}

// maxRedirects bounds a chain of 307s so two masters that each name the
// other cannot spin Run without a backoff.
const maxRedirects = 5

type redirectError struct{ location string }

func (e *redirectError) Error() string { return "redirected to " + e.location }

// jitter spreads a delay over [d/2, d) so that many frameworks dropped at
// once do not come back at once.
func jitter(d time.Duration) time.Duration {
	if d < 2 {
		return d
	}
	return d/2 + rand.N(d/2)
}

func (d *HTTPDriver) isStopped() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stopped
}

// session makes one subscription and dispatches its events until it ends.
// subscribed reports whether SUBSCRIBED arrived.
func (d *HTTPDriver) session(ctx context.Context) (subscribed bool, err error) {
	client := &httpapi.Client{URL: d.url, Codec: d.cfg.Codec, HTTP: d.http}
	if c := d.cfg.Credential; c != nil {
		client.Header = auth.BasicHeader(c.GetPrincipal(), c.GetSecret())
	}
	info := proto.Clone(d.cfg.Framework).(*mesos.FrameworkInfo)
	call := &scheduler.Call{Type: scheduler.Call_SUBSCRIBE.Enum(), Subscribe: &scheduler.Call_Subscribe{FrameworkInfo: info}}
	if id := d.FrameworkID(); id != nil {
		info.Id = id
		call.FrameworkId = id
	}
	if _, err := d.cfg.Codec.Marshal(call); err != nil {
		// A FrameworkInfo without its required fields cannot even be sent;
		// no retry will change that.
		msg := fmt.Sprintf("invalid SUBSCRIBE call: %v", err)
		d.sched.Error(d, msg)
		return false, &FatalError{Message: msg, Err: err}
	}
	// The request's context must outlive SUBSCRIBE's answer (it governs the
	// stream), so a master that never answers is cut off by a timer
	// instead of a deadline.
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	timer := time.AfterFunc(d.cfg.CallTimeout, cancel)
	sub, err := client.Subscribe(subCtx, call, 0)
	if !timer.Stop() && ctx.Err() == nil {
		if sub != nil {
			sub.Close()
		}
		return false, fmt.Errorf("subscribing to %s: no answer within %v", d.url, d.cfg.CallTimeout)
	}
	if err != nil {
		return false, d.subscribeError(err)
	}
	box := newMailbox()
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		d.read(sub, box)
	}()
	defer func() {
		sub.Close()
		<-readerDone
	}()
	for {
		ev, err := box.next(ctx)
		if err != nil {
			return subscribed, err
		}
		// Nothing is delivered after Stop, even events already read. The
		// stream stays open until Stop's TEARDOWN is out (Stop then ends
		// ctx): closed first, the master would take it for a disconnect and
		// could remove a framework without failover_timeout before the
		// TEARDOWN arrives, which it would then refuse (400, framework not found).
		if d.isStopped() {
			<-ctx.Done()
			return subscribed, nil
		}
		if err := d.dispatch(ctx, client, ev, &subscribed); err != nil {
			return subscribed, err
		}
	}
}

// subscribeError sorts a failed SUBSCRIBE into a redirect, a refusal
// (fatal) or something worth retrying.
func (d *HTTPDriver) subscribeError(err error) error {
	var se *httpapi.StatusError
	if !errors.As(err, &se) {
		return fmt.Errorf("subscribing to %s: %w", d.url, err)
	}
	switch {
	case se.Code == http.StatusTemporaryRedirect && se.Location != "":
		loc, lerr := resolveLocation(d.url, se.Location)
		if lerr != nil {
			return fmt.Errorf("subscribing to %s: bad redirect %q: %w", d.url, se.Location, lerr)
		}
		return &redirectError{location: loc}
	case se.Code >= 400 && se.Code < 500 && se.Code != http.StatusRequestTimeout && se.Code != http.StatusTooManyRequests:
		msg := se.Message
		if msg == "" {
			msg = http.StatusText(se.Code)
		}
		d.log.Error("master refused subscription", "master", d.url, "status", se.Code, "message", msg)
		d.sched.Error(d, msg)
		return &FatalError{Message: msg, Err: se}
	}
	return fmt.Errorf("subscribing to %s: %w", d.url, err)
}

// resolveLocation resolves a 307's Location; Mesos sends the scheme-relative
// "//host:port/api/v1/scheduler".
func resolveLocation(base, location string) (string, error) {
	b, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	l, err := url.Parse(location)
	if err != nil {
		return "", err
	}
	u := b.ResolveReference(l)
	if u.Path == "" || u.Path == "/" {
		u.Path = b.Path
	}
	return u.String(), nil
}

// read moves events from the stream into box until the stream ends. It runs
// apart from dispatching so that a slow callback is not mistaken for a
// silent master: heartbeats are counted as they arrive.
func (d *HTTPDriver) read(sub *httpapi.Subscription, box *mailbox) {
	// Until SUBSCRIBED tells the interval, assume Mesos' 15 s.
	idle := d.deadAfter(15 * time.Second)
	var silent atomic.Bool
	watchdog := time.AfterFunc(idle, func() {
		silent.Store(true)
		sub.Close()
	})
	defer watchdog.Stop()
	for {
		ev := &scheduler.Event{}
		if err := sub.Next(ev); err != nil {
			switch {
			case silent.Load():
				err = fmt.Errorf("%w: nothing received for %v", ErrMissedHeartbeats, idle)
			case errors.Is(err, io.EOF):
				err = errStreamClosed
			default:
				err = fmt.Errorf("reading event stream: %w", err)
			}
			box.fail(err)
			return
		}
		if s := ev.GetSubscribed().GetHeartbeatIntervalSeconds(); ev.GetType() == scheduler.Event_SUBSCRIBED && s > 0 {
			idle = d.deadAfter(time.Duration(s * float64(time.Second)))
		}
		watchdog.Reset(idle)
		box.put(ev)
	}
}

// deadAfter is the silence after which a stream with the given heartbeat
// interval counts as dead; the extra half interval absorbs scheduling and
// network jitter.
func (d *HTTPDriver) deadAfter(interval time.Duration) time.Duration {
	return time.Duration(d.cfg.MissedHeartbeats)*interval + interval/2
}

// dispatch hands one event to the Scheduler. An error ends the session.
func (d *HTTPDriver) dispatch(ctx context.Context, client *httpapi.Client, ev *scheduler.Event, subscribed *bool) error {
	switch ev.GetType() {
	case scheduler.Event_SUBSCRIBED:
		s := ev.GetSubscribed()
		d.mu.Lock()
		d.frameworkID, d.client = s.GetFrameworkId(), client
		d.mu.Unlock()
		*subscribed = true
		d.log.Info("subscribed", "framework", s.GetFrameworkId().GetValue(), "master", d.url,
			"heartbeat_interval_seconds", s.GetHeartbeatIntervalSeconds())
		if d.registered {
			d.sched.Reregistered(d, s.GetMasterInfo())
		} else {
			d.registered = true
			d.sched.Registered(d, s.GetFrameworkId(), s.GetMasterInfo())
		}
	case scheduler.Event_OFFERS:
		d.sched.ResourceOffers(d, ev.GetOffers().GetOffers())
	case scheduler.Event_RESCIND:
		d.sched.OfferRescinded(d, ev.GetRescind().GetOfferId())
	case scheduler.Event_UPDATE:
		status := ev.GetUpdate().GetStatus()
		d.sched.StatusUpdate(d, status)
		if !d.cfg.ExplicitAcks && !d.isStopped() {
			actx, cancel := context.WithTimeout(ctx, d.cfg.CallTimeout)
			// A lost acknowledgement is not fatal: the agent resends the
			// update until one arrives.
			if err := d.acknowledge(actx, status); err != nil && ctx.Err() == nil {
				d.log.Warn("acknowledging status update", "task", status.GetTaskId().GetValue(), "state", status.GetState(), "err", err)
			}
			cancel()
		}
	case scheduler.Event_MESSAGE:
		m := ev.GetMessage()
		d.sched.FrameworkMessage(d, m.GetExecutorId(), m.GetAgentId(), m.GetData())
	case scheduler.Event_FAILURE:
		f := ev.GetFailure()
		if f.ExecutorId != nil {
			status := -1
			if f.Status != nil {
				status = int(f.GetStatus())
			}
			d.sched.ExecutorLost(d, f.GetExecutorId(), f.GetAgentId(), status)
		} else if f.AgentId != nil {
			d.sched.AgentLost(d, f.GetAgentId())
		}
	case scheduler.Event_ERROR:
		msg := ev.GetError().GetMessage()
		d.log.Error("master sent ERROR", "message", msg)
		d.sched.Error(d, msg)
		return &FatalError{Message: msg}
	case scheduler.Event_HEARTBEAT:
	default:
		d.log.Debug("ignoring event", "type", ev.GetType().String())
	}
	return nil
}

// mailbox is an unbounded FIFO of events between the stream reader and the
// dispatcher: the reader must never wait on a callback.
type mailbox struct {
	mu     sync.Mutex
	events []*scheduler.Event
	err    error
	ready  chan struct{}
}

func newMailbox() *mailbox { return &mailbox{ready: make(chan struct{}, 1)} }

func (m *mailbox) put(ev *scheduler.Event) {
	m.mu.Lock()
	m.events = append(m.events, ev)
	m.mu.Unlock()
	m.poke()
}

func (m *mailbox) fail(err error) {
	m.mu.Lock()
	m.err = err
	m.mu.Unlock()
	m.poke()
}

func (m *mailbox) poke() {
	select {
	case m.ready <- struct{}{}:
	default:
	}
}

// next returns the next event, or the stream's error once every event
// before it was taken.
func (m *mailbox) next(ctx context.Context) (*scheduler.Event, error) {
	for {
		m.mu.Lock()
		if len(m.events) > 0 {
			ev := m.events[0]
			m.events[0] = nil
			m.events = m.events[1:]
			m.mu.Unlock()
			return ev, nil
		}
		err := m.err
		m.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-m.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
