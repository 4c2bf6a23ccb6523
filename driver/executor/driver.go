package executor

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/duration"
	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/tlsconfig"
	executorapi "github.com/corral/corral/api/v1/executor"
	"github.com/corral/corral/api/v1/mesos"
)

// Option configures an HTTPDriver.
type Option func(*HTTPDriver)

// WithLogger sets the driver's logger (slog.Default otherwise).
func WithLogger(l *slog.Logger) Option { return func(d *HTTPDriver) { d.log = l } }

// WithCodec overrides the media type of calls and events chosen by Config.
func WithCodec(c codec.Codec) Option { return func(d *HTTPDriver) { d.cfg.Codec = c } }

// WithHeartbeatTimeout sets the least silence after which an event stream is
// declared dead (default 5s); the actual limit is three heartbeat intervals
// when that is longer. It applies only once the agent has sent a HEARTBEAT,
// since the executor API does not announce an interval and an agent that
// never heartbeats must not look dead. 0 turns detection off.
func WithHeartbeatTimeout(d time.Duration) Option {
	return func(dr *HTTPDriver) { dr.heartbeatFloor = d }
}

// WithSubscribeTimeout bounds how long the first subscription is retried
// (default 1 minute, Mesos' executor registration timeout).
func WithSubscribeTimeout(d time.Duration) Option {
	return func(dr *HTTPDriver) { dr.subscribeTimeout = d }
}

// WithHTTPClient sets the HTTP client for calls and the event stream. It
// must not have a Timeout: the stream is long-lived.
func WithHTTPClient(c *http.Client) Option { return func(d *HTTPDriver) { d.client.HTTP = c } }

// attemptTimeout bounds one SUBSCRIBE waiting for its response headers, so a
// hung agent is retried rather than waited on forever.
const attemptTimeout = 10 * time.Second

// minAttempt is the least an attempt to subscribe is given, however close
// the deadline.
const minAttempt = 100 * time.Millisecond

// HTTPDriver runs an Executor against the agent's v1 executor API.
type HTTPDriver struct {
	cfg              Config
	exec             Executor
	log              *slog.Logger
	client           *httpapi.Client
	heartbeatFloor   time.Duration
	subscribeTimeout time.Duration

	mu           sync.Mutex
	ledger       ledger
	stream       *stream // current subscription, nil while (re)subscribing
	registered   bool    // a SUBSCRIBED has been delivered
	shuttingDown bool
	running      bool
	stopped      bool
	cancel       context.CancelCauseFunc
	graceTimer   *time.Timer
	// acked is closed and replaced whenever an update leaves the ledger,
	// waking WaitAcknowledged.
	acked chan struct{}
}

var _ Driver = (*HTTPDriver)(nil)

// New returns a driver for exec, typically with the Config from FromEnv.
func New(exec Executor, cfg Config, opts ...Option) (*HTTPDriver, error) {
	switch {
	case exec == nil:
		return nil, errors.New("executor: nil Executor")
	case cfg.FrameworkID == "", cfg.ExecutorID == "":
		return nil, errors.New("executor: Config needs FrameworkID and ExecutorID")
	}
	if err := checkEndpoint(cfg.AgentEndpoint); err != nil {
		return nil, fmt.Errorf("executor: agent endpoint: %w", err)
	}
	if cfg.ShutdownGracePeriod <= 0 {
		cfg.ShutdownGracePeriod = DefaultShutdownGracePeriod
	}
	if cfg.RecoveryTimeout <= 0 {
		cfg.RecoveryTimeout = DefaultRecoveryTimeout
	}
	if cfg.SubscriptionBackoffMax <= 0 {
		cfg.SubscriptionBackoffMax = DefaultSubscriptionBackoffMax
	}
	tlsCfg, err := cfg.TLS.Client()
	if err != nil {
		return nil, fmt.Errorf("executor: %w", err)
	}
	client := &httpapi.Client{URL: cfg.TLS.Scheme() + "://" + cfg.AgentEndpoint + "/api/v1/executor", Header: bearer(cfg.AuthenticationToken)}
	if tlsCfg != nil {
		client.HTTP = &http.Client{Transport: tlsconfig.Transport(tlsCfg), CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	d := &HTTPDriver{
		cfg:              cfg,
		exec:             exec,
		log:              slog.Default(),
		client:           client,
		heartbeatFloor:   5 * time.Second,
		subscribeTimeout: time.Minute,
		acked:            make(chan struct{}),
	}
	for _, o := range opts {
		o(d)
	}
	if d.cfg.Codec == nil {
		d.cfg.Codec = codec.JSON
	}
	d.client.Codec = eventCodec{d.cfg.Codec}
	d.log = d.log.With("framework_id", cfg.FrameworkID, "executor_id", cfg.ExecutorID)
	return d, nil
}

// Config returns the driver's configuration.
func (d *HTTPDriver) Config() Config { return d.cfg }

// Unacknowledged returns copies of the pending status updates and of the
// launched tasks the agent has not acknowledged any update for.
func (d *HTTPDriver) Unacknowledged() ([]*mesos.TaskStatus, []*mesos.TaskInfo) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var us []*mesos.TaskStatus
	for _, s := range d.ledger.updates {
		us = append(us, proto.CloneOf(s))
	}
	var ts []*mesos.TaskInfo
	for _, t := range d.ledger.tasks {
		ts = append(ts, proto.CloneOf(t))
	}
	return us, ts
}

// Run subscribes and delivers events until Stop is called or ctx ends (both
// return nil), or the executor has to end: see ErrDisconnected,
// ErrRecoveryTimeout and ErrShutdownGraceExpired. A first subscription that
// fails returns its error without calling the Executor.
func (d *HTTPDriver) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	d.mu.Lock()
	if d.running {
		d.mu.Unlock()
		return errors.New("executor: Run called twice")
	}
	d.running, d.cancel = true, cancel
	stopped := d.stopped
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		if d.graceTimer != nil {
			d.graceTimer.Stop()
		}
		d.stopped = true
		d.mu.Unlock()
	}()
	if stopped {
		return nil
	}
	return d.run(ctx)
}

func (d *HTTPDriver) run(ctx context.Context) error {
	deadline := time.Now().Add(d.subscribeTimeout)
	subscribedOnce := false
	for {
		st, err := d.subscribe(ctx, deadline)
		if err != nil {
			if ctx.Err() != nil {
				return d.ended(ctx, nil)
			}
			if !subscribedOnce {
				return fmt.Errorf("executor: subscribing to agent at %s: %w", d.cfg.AgentEndpoint, err)
			}
			if se := (*httpapi.StatusError)(nil); errors.As(err, &se) && se.Code < 500 {
				return d.shutdownSelf(ctx, fmt.Errorf("%w: agent refused re-subscription: %w", ErrDisconnected, err))
			}
			return d.shutdownSelf(ctx, fmt.Errorf("%w (%s): %w", ErrRecoveryTimeout, duration.Format(d.cfg.RecoveryTimeout), err))
		}
		subscribedOnce = true
		err = d.consume(ctx, st)
		d.mu.Lock()
		d.stream = nil
		registered, shuttingDown := d.registered, d.shuttingDown
		d.mu.Unlock()
		st.close()
		if ctx.Err() != nil {
			return d.ended(ctx, nil)
		}
		if shuttingDown {
			// The agent ends the stream once it is done with us; what is
			// left is the executor finishing its shutdown.
			d.log.Info("event stream ended during shutdown", "err", err)
			<-ctx.Done()
			return d.ended(ctx, nil)
		}
		d.log.Warn("lost the agent's event stream", "err", err, "checkpoint", d.cfg.Checkpoint)
		if registered {
			d.exec.Disconnected(d)
		}
		if !d.cfg.Checkpoint {
			return d.shutdownSelf(ctx, fmt.Errorf("%w: %w", ErrDisconnected, err))
		}
		deadline = time.Now().Add(d.cfg.RecoveryTimeout)
	}
}

// ended turns the reason the run loop stopped into Run's result.
func (d *HTTPDriver) ended(ctx context.Context, reason error) error {
	if errors.Is(context.Cause(ctx), ErrShutdownGraceExpired) {
		if reason != nil {
			return fmt.Errorf("%w; %w", reason, ErrShutdownGraceExpired)
		}
		return ErrShutdownGraceExpired
	}
	return reason
}

// shutdownSelf shuts the executor down on the driver's own initiative, as
// Mesos' library does when the agent is gone for good, and waits for Stop.
func (d *HTTPDriver) shutdownSelf(ctx context.Context, reason error) error {
	d.log.Warn("shutting down: agent is gone", "err", reason)
	d.beginShutdown()
	<-ctx.Done()
	return d.ended(ctx, reason)
}

// beginShutdown delivers SHUTDOWN once and starts the grace period, after
// which Run returns even if the executor never calls Stop.
func (d *HTTPDriver) beginShutdown() {
	d.mu.Lock()
	if d.shuttingDown {
		d.mu.Unlock()
		return
	}
	d.shuttingDown = true
	cancel := d.cancel
	d.graceTimer = time.AfterFunc(d.cfg.ShutdownGracePeriod, func() { cancel(ErrShutdownGraceExpired) })
	d.mu.Unlock()
	d.exec.Shutdown(d)
}

// stream is one subscription and what ends it.
type stream struct {
	sub    *httpapi.Subscription
	cancel context.CancelFunc
}

func (s *stream) close() {
	s.cancel()
	_ = s.sub.Close()
}

// subscribe sends SUBSCRIBE until it succeeds, the deadline passes, or the
// agent refuses (4xx: retrying cannot help).
func (d *HTTPDriver) subscribe(ctx context.Context, deadline time.Time) (*stream, error) {
	b := backoff{max: d.cfg.SubscriptionBackoffMax}
	for attempt := 1; ; attempt++ {
		d.mu.Lock()
		payload := d.ledger.subscribe()
		d.mu.Unlock()
		call := d.call(executorapi.Call_SUBSCRIBE)
		call.Subscribe = payload

		// An attempt that gets no answer ends with the deadline too: an
		// agent that takes the connection and never answers must not keep
		// a checkpointing executor past its recovery timeout.
		limit := min(attemptTimeout, max(time.Until(deadline), minAttempt))
		sctx, cancel := context.WithCancel(ctx)
		t := time.AfterFunc(limit, cancel)
		sub, err := d.client.Subscribe(sctx, call, 0)
		if !t.Stop() && err == nil {
			_ = sub.Close()
			err = fmt.Errorf("no answer within %s", limit)
		}
		if err == nil {
			st := &stream{sub: sub, cancel: cancel}
			d.subscribed(ctx, st, payload)
			return st, nil
		}
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var se *httpapi.StatusError
		if errors.As(err, &se) && se.Code >= 400 && se.Code < 500 {
			return nil, err
		}
		now := time.Now()
		if !now.Before(deadline) {
			return nil, fmt.Errorf("gave up after %d attempts: %w", attempt, err)
		}
		wait := min(b.next(), deadline.Sub(now))
		d.log.Info("subscription failed; retrying", "attempt", attempt, "retry_in", wait, "err", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// subscribed makes st the current stream and sends the updates the
// SUBSCRIBE did not carry, because they were sent while it was under way.
func (d *HTTPDriver) subscribed(ctx context.Context, st *stream, payload *executorapi.Call_Subscribe) {
	d.mu.Lock()
	d.stream = st
	late := d.ledger.updatesNotIn(payload)
	d.mu.Unlock()
	d.log.Info("subscribed to agent", "endpoint", d.cfg.AgentEndpoint, "codec", d.cfg.Codec.MediaType(),
		"unacknowledged_updates", len(payload.GetUnacknowledgedUpdates()), "unacknowledged_tasks", len(payload.GetUnacknowledgedTasks()))
	for _, s := range late {
		cctx, cancel := context.WithTimeout(ctx, attemptTimeout)
		if err := d.postUpdate(cctx, s); err != nil {
			d.log.Warn("sending queued status update", "task_id", s.GetTaskId().GetValue(), "err", err)
		}
		cancel()
	}
}

// consume reads events and dispatches them until the stream ends.
func (d *HTTPDriver) consume(ctx context.Context, st *stream) error {
	wd := &watchdog{floor: d.heartbeatFloor, last: time.Now(), onDead: st.close}
	defer wd.stop()
	for {
		var ev executorapi.Event
		if err := st.sub.Next(&ev); err != nil {
			var de *decodeError
			if errors.As(err, &de) {
				// The record was read whole, so the stream is intact; an
				// event from a newer agent is no reason to drop it.
				d.log.Warn("skipping an event that cannot be decoded", "err", de.err)
				continue
			}
			if wd.dead.Load() {
				return fmt.Errorf("no event for %s from an agent that heartbeats: %w", wd.timeout, err)
			}
			return fmt.Errorf("reading event stream: %w", err)
		}
		wd.saw(ev.GetType() == executorapi.Event_HEARTBEAT)
		d.dispatch(&ev)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func (d *HTTPDriver) dispatch(ev *executorapi.Event) {
	log := d.log.With("event", ev.GetType().String())
	switch ev.GetType() {
	case executorapi.Event_SUBSCRIBED:
		s := ev.GetSubscribed()
		d.mu.Lock()
		first := !d.registered
		d.registered = true
		d.mu.Unlock()
		log.Info("registered with agent", "agent_id", s.GetAgentInfo().GetId().GetValue(), "reregistered", !first)
		if first {
			d.exec.Registered(d, s.GetExecutorInfo(), s.GetFrameworkInfo(), s.GetAgentInfo())
		} else {
			d.exec.Reregistered(d, s.GetAgentInfo())
		}
	case executorapi.Event_LAUNCH:
		t := ev.GetLaunch().GetTask()
		if t == nil {
			log.Warn("ignoring LAUNCH without a task")
			return
		}
		d.mu.Lock()
		d.ledger.addTask(t)
		d.mu.Unlock()
		d.exec.LaunchTask(d, t)
	case executorapi.Event_LAUNCH_GROUP:
		g := ev.GetLaunchGroup().GetTaskGroup()
		if g == nil {
			log.Warn("ignoring LAUNCH_GROUP without a task group")
			return
		}
		d.mu.Lock()
		for _, t := range g.GetTasks() {
			d.ledger.addTask(t)
		}
		d.mu.Unlock()
		d.exec.LaunchTaskGroup(d, g)
	case executorapi.Event_KILL:
		if ev.GetKill().GetTaskId() == nil {
			log.Warn("ignoring KILL without a task_id")
			return
		}
		d.exec.KillTask(d, ev.GetKill().GetTaskId())
	case executorapi.Event_ACKNOWLEDGED:
		a := ev.GetAcknowledged()
		d.mu.Lock()
		known := d.ledger.acknowledge(a.GetTaskId().GetValue(), a.GetUuid())
		if known {
			d.signalAckedLocked()
		}
		d.mu.Unlock()
		if !known {
			log.Debug("acknowledgement for an update not pending", "task_id", a.GetTaskId().GetValue())
		}
	case executorapi.Event_MESSAGE:
		d.exec.FrameworkMessage(d, ev.GetMessage().GetData())
	case executorapi.Event_SHUTDOWN:
		log.Info("agent asked to shut down", "grace_period", d.cfg.ShutdownGracePeriod)
		d.beginShutdown()
	case executorapi.Event_ERROR:
		log.Warn("agent reported an error", "message", ev.GetError().GetMessage())
		d.exec.Error(d, ev.GetError().GetMessage())
	case executorapi.Event_HEARTBEAT:
	default:
		// Newer agents may send events this library does not know yet.
		log.Warn("ignoring unknown event")
	}
}

func (d *HTTPDriver) signalAckedLocked() {
	close(d.acked)
	d.acked = make(chan struct{})
}

func (d *HTTPDriver) call(t executorapi.Call_Type) *executorapi.Call {
	return &executorapi.Call{
		Type:        t.Enum(),
		ExecutorId:  &mesos.ExecutorID{Value: proto.String(d.cfg.ExecutorID)},
		FrameworkId: &mesos.FrameworkID{Value: proto.String(d.cfg.FrameworkID)},
	}
}

// eventCodec marks decoding failures so that consume can tell a bad event
// from a broken stream: httpapi.Subscription.Next returns both unchanged.
type eventCodec struct{ codec.Codec }

type decodeError struct{ err error }

func (e *decodeError) Error() string { return e.err.Error() }
func (e *decodeError) Unwrap() error { return e.err }

func (c eventCodec) Unmarshal(b []byte, m proto.Message) error {
	if err := c.Codec.Unmarshal(b, m); err != nil {
		return &decodeError{err}
	}
	return nil
}

// SendStatusUpdate implements Driver.
func (d *HTTPDriver) SendStatusUpdate(ctx context.Context, status *mesos.TaskStatus) error {
	switch {
	case status.GetTaskId().GetValue() == "":
		return errors.New("executor: status update without task_id")
	case status.State == nil:
		return errors.New("executor: status update without state")
	case status.GetState() == mesos.TaskState_TASK_STAGING:
		return errors.New("executor: executors may not send TASK_STAGING")
	}
	s := proto.CloneOf(status)
	s.Uuid = newUUID()
	s.Timestamp = proto.Float64(float64(time.Now().UnixNano()) / 1e9)
	s.ExecutorId = &mesos.ExecutorID{Value: proto.String(d.cfg.ExecutorID)}
	s.Source = mesos.TaskStatus_SOURCE_EXECUTOR.Enum()

	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return ErrStopped
	}
	// Into the ledger before it is sent: an acknowledgement can overtake
	// the 202 of the UPDATE that it acknowledges.
	d.ledger.addUpdate(s)
	connected := d.stream != nil
	d.mu.Unlock()
	if !connected {
		d.log.Info("status update queued until subscribed", "task_id", s.GetTaskId().GetValue(), "state", s.GetState().String())
		return nil
	}
	return d.postUpdate(ctx, s)
}

func (d *HTTPDriver) postUpdate(ctx context.Context, s *mesos.TaskStatus) error {
	call := d.call(executorapi.Call_UPDATE)
	call.Update = &executorapi.Call_Update{Status: s}
	err := d.client.Call(ctx, call, nil)
	if err == nil {
		d.log.Debug("status update sent", "task_id", s.GetTaskId().GetValue(), "state", s.GetState().String())
		return nil
	}
	var se *httpapi.StatusError
	rejected := errors.As(err, &se) && se.Code >= 400 && se.Code < 500
	if !rejected && d.cfg.Checkpoint {
		// A failed call means the link is broken even if the stream has not
		// noticed yet; re-subscribing hands the update over reliably.
		d.log.Warn("status update not sent; re-subscribing to hand it over", "task_id", s.GetTaskId().GetValue(), "err", err)
		d.dropStream()
		return nil
	}
	// Never acknowledged now: forgetting it keeps WaitAcknowledged honest.
	d.mu.Lock()
	if d.ledger.dropUpdate(s.GetUuid()) {
		d.signalAckedLocked()
	}
	d.mu.Unlock()
	return fmt.Errorf("executor: sending %s for task %s: %w", s.GetState(), s.GetTaskId().GetValue(), err)
}

// dropStream ends the current subscription; the run loop re-subscribes.
func (d *HTTPDriver) dropStream() {
	d.mu.Lock()
	st := d.stream
	d.mu.Unlock()
	if st != nil {
		st.close()
	}
}

// SendFrameworkMessage implements Driver.
func (d *HTTPDriver) SendFrameworkMessage(ctx context.Context, data []byte) error {
	d.mu.Lock()
	connected := d.stream != nil
	d.mu.Unlock()
	if !connected {
		return ErrNotConnected
	}
	call := d.call(executorapi.Call_MESSAGE)
	call.Message = &executorapi.Call_Message{Data: data}
	if err := d.client.Call(ctx, call, nil); err != nil {
		return fmt.Errorf("executor: sending framework message: %w", err)
	}
	return nil
}

// WaitAcknowledged implements Driver.
func (d *HTTPDriver) WaitAcknowledged(ctx context.Context) error {
	for {
		d.mu.Lock()
		n, ch := d.ledger.pendingUpdates(), d.acked
		d.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("executor: %d status updates still unacknowledged: %w", n, ctx.Err())
		}
	}
}

// Stop implements Driver.
func (d *HTTPDriver) Stop() {
	d.mu.Lock()
	d.stopped = true
	cancel := d.cancel
	d.mu.Unlock()
	if cancel != nil {
		cancel(ErrStopped)
	}
}

// newUUID returns a random (version 4) UUID as the 16 raw bytes Mesos puts
// in TaskStatus.uuid.
func newUUID() []byte {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand aborts the program instead)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return b
}

// backoff yields growing, jittered delays capped at max, so the executors of
// a restarted agent do not all knock at once.
type backoff struct {
	cur, max time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = min(100*time.Millisecond, b.max)
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur/2 + mrand.N(b.cur/2+1)
}

// watchdog closes a stream that stays silent although its agent heartbeats:
// a half-open TCP connection never fails a read by itself.
type watchdog struct {
	floor   time.Duration
	onDead  func()
	last    time.Time // previous heartbeat, or the subscription
	timeout time.Duration
	timer   *time.Timer
	dead    atomic.Bool
}

// saw notes an event; heartbeats (re)learn the interval.
func (w *watchdog) saw(heartbeat bool) {
	if w.floor <= 0 {
		return
	}
	if heartbeat {
		now := time.Now()
		w.timeout = max(w.floor, 3*now.Sub(w.last))
		w.last = now
	}
	if w.timeout == 0 {
		return
	}
	if w.timer == nil {
		w.timer = time.AfterFunc(w.timeout, func() { w.dead.Store(true); w.onDead() })
		return
	}
	w.timer.Reset(w.timeout)
}

func (w *watchdog) stop() {
	if w.timer != nil {
		w.timer.Stop()
	}
}

// bearer is the header that carries an authentication token (none: nil).
func bearer(token string) http.Header {
	if token == "" {
		return nil
	}
	return http.Header{"Authorization": {"Bearer " + token}}
}
