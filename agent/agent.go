package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/agent/checkpoint"
	"github.com/corral/corral/agent/gc"
	"github.com/corral/corral/api/auth"
	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/tlsconfig"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/metrics"
	"github.com/corral/corral/internal/sdnotify"
	"github.com/corral/corral/internal/version"
)

// Agent is one node's agent.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	total resources.Resources
	cz    containers
	ln    net.Listener
	start time.Time

	master  *httpapi.Client
	updates *updateManager
	// store holds the checkpoints under <work_dir>/meta: everything the
	// agent runs for frameworks with FrameworkInfo.checkpoint is written
	// there before it is acted on, and recovered after a restart.
	store *checkpoint.Store
	// fail stops Run with an error (a checkpoint that cannot be written:
	// the agent must not act on what it cannot record).
	fail context.CancelCauseFunc
	// sendSlots bounds the calls to the master in flight: after a restart
	// a thousand streams resend their heads at once, and as many
	// concurrent requests would each open a connection.
	sendSlots chan struct{}
	// gc removes the sandboxes of ended runs (sandbox_gc.go).
	gc *gc.GC
	// background is the work handed off its caller (acknowledgements off
	// the event loop, checkpoint removals off the lock): Run waits for it,
	// so nothing writes to the work_dir once it returns.
	background workGroup
	// counters are their own owner (atomics): counting takes no lock.
	counters counters

	mu         sync.Mutex
	agentID    string
	bootID     string
	masterInfo *mesos.MasterInfo
	connected  bool
	frameworks map[string]*framework
	// removing is, by framework, the last of its checkpoint removals
	// under way (removeCheckpointLocked).
	removing map[string]chan struct{}
	// completed keeps recently ended executors for /state.
	completed []*executor
	recovery  recoveryStats
}

// New validates the configuration, builds the containerizer and binds the
// agent's listener (so Port 0 resolves before registration).
func New(cfg Config) (_ *Agent, err error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	total, err := totalResources(cfg.Resources, cfg.WorkDir)
	if err != nil {
		return nil, err
	}
	store, err := checkpoint.Open(cfg.WorkDir, checkpoint.Options{Log: cfg.Log, BootIDPath: cfg.BootIDPath})
	if err != nil {
		return nil, fmt.Errorf("--work_dir: %w", err)
	}
	defer func() {
		if err != nil {
			_ = store.Close()
		}
	}()
	if _, err := store.CurrentBootID(); err != nil {
		return nil, err
	}
	collector, err := gc.New(cfg.gcConfig())
	if err != nil {
		return nil, err
	}
	cz, err := buildContainerizer(&cfg)
	if err != nil {
		return nil, err
	}
	ln, err := listen(cfg, store)
	if err != nil {
		cz.Close()
		return nil, err
	}
	cfg.Port = ln.Addr().(*net.TCPAddr).Port
	if cfg.serverTLS != nil {
		ln = tls.NewListener(ln, cfg.serverTLS)
	}
	if un := cfg.acls.Unenforced(); len(un) > 0 {
		cfg.Log.Warn("--acls has rules for actions the agent does not check; they decide nothing here", "actions", un)
	}
	if w := exposure(cfg); w != "" {
		cfg.Log.Warn("the agent listens beyond loopback: "+w, "ip", cfg.IP)
	}
	if cfg.serverTLS != nil && cfg.TLS.CAFile == "" {
		cfg.Log.Warn("serving TLS without --tls_ca_file: executors verify the agent's certificate against the system's roots, and fail to reach it if no root signed it")
	}
	if cfg.TLS.VerifyPeer && !cfg.AuthenticateHTTPExecutors {
		cfg.Log.Warn("--tls_verify_peer leaves the executor API to tokens, and without --authenticate_http_executors anyone who reaches the agent can speak for any executor")
	}
	a := &Agent{
		cfg: cfg, log: cfg.Log.With("component", "agent"), total: total, cz: cz, ln: ln, start: time.Now(),
		frameworks: map[string]*framework{}, removing: map[string]chan struct{}{}, store: store,
		master: &httpapi.Client{
			URL:   cfg.masterURL + "/internal/v1/agent",
			Codec: codec.Protobuf,
			HTTP:  masterHTTPClient(cfg.clientTLS),
		},
		sendSlots: make(chan struct{}, maxMasterCalls),
		gc:        collector,
	}
	if c := cfg.credential; c != nil {
		a.master.Header = c.Header()
	}
	a.updates = newUpdateManager(a.log, cfg.StatusUpdateRetryMin, cfg.StatusUpdateRetryMax, a.forwardUpdate, a.updateAcknowledged)
	a.updates.checkpointAck = a.checkpointAck
	return a, nil
}

// maxMasterCalls is how many calls to the master may be in flight at once.
const maxMasterCalls = 16

// masterHTTPClient keeps enough connections to the master alive for
// maxMasterCalls concurrent calls (the default transport keeps 2) and, like
// httpapi's default, follows no redirect. tlsCfg (nil: plain HTTP) is what
// it trusts and presents.
func masterHTTPClient(tlsCfg *tls.Config) *http.Client {
	tr := tlsconfig.Transport(tlsCfg)
	tr.MaxIdleConnsPerHost = maxMasterCalls + 2
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// listen binds the agent's API. With --port=0 an agent that ran here
// before takes its old port again when it is free: the executors it
// recovers find their agent at MESOS_AGENT_ENDPOINT, which names it.
func listen(cfg Config, store *checkpoint.Store) (net.Listener, error) {
	if cfg.Port == 0 {
		if info, err := store.ReadAgentInfo(); err == nil && info.GetPort() > 0 {
			ln, err := net.Listen("tcp", net.JoinHostPort(cfg.IP, strconv.Itoa(int(info.GetPort()))))
			if err == nil {
				return ln, nil
			}
			cfg.Log.Warn("the port of the agent's last run is taken; recovered executors will not find the agent", "port", info.GetPort(), "err", err)
		}
	}
	addr := net.JoinHostPort(cfg.IP, strconv.Itoa(cfg.Port))
	// A restarted agent's port can stay busy for a moment after its last
	// run died (the kernel still tearing down that run's sockets): retried
	// briefly rather than failing the restart.
	deadline := time.Now().Add(listenRetry)
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			return ln, nil
		}
		if cfg.Port == 0 || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return nil, fmt.Errorf("--ip/--port: %w", err)
		}
		time.Sleep(wait)
	}
}

// listenRetry bounds how long the agent waits for its port to be free.
const listenRetry = 10 * time.Second

// Endpoint is host:port of the agent's HTTP API.
func (a *Agent) Endpoint() string { return net.JoinHostPort(a.cfg.IP, strconv.Itoa(a.cfg.Port)) }

// ID is the agent ID the master gave, empty before registration.
func (a *Agent) ID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.agentID
}

// Run recovers what the agent's checkpoints hold, serves the agent's HTTP
// API and keeps it registered with the master until ctx ends. Containers of
// frameworks that checkpoint outlive it (a restarted agent re-attaches
// them); the others are destroyed on the way out, and with --recover=cleanup
// all of them are.
func (a *Agent) Run(ctx context.Context) error {
	// Last of all, when nothing writes checkpoints any more: the tree is
	// made durable and the journal retired, so the next start replays
	// nothing.
	defer func() {
		if err := a.store.Close(); err != nil {
			a.log.Error("closing the checkpoint store", "err", err)
		}
	}()
	ctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	a.mu.Lock()
	a.fail = fail
	a.mu.Unlock()
	// The isolators' background work (disk/du's walks and their cgroup)
	// ends with the agent; the containers of checkpointing frameworks
	// outlive it and are taken back by the next start's recovery.
	defer a.cz.Close()
	rctx, cancel := context.WithTimeout(ctx, a.cfg.RecoveryTimeout)
	err := a.recover(rctx)
	cancel()
	if err != nil {
		return err
	}
	gcDone := make(chan struct{})
	go func() {
		defer close(gcDone)
		a.gc.Run(ctx)
	}()
	// Removals under way finish before Run returns.
	defer func() { <-gcDone }()
	// The server's own complaints (a TLS handshake a port scan or a plain
	// TCP health check broke off) are debug noise, not errors.
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(a.ln) }()
	// Recovered executors re-subscribe from now on, within their timeout.
	a.startReregistrationTimers()
	a.log.Info("agent listening", "endpoint", a.Endpoint(), "master", a.cfg.Master, "resources", a.total.String(),
		"launcher", a.cfg.Launcher, "isolation", a.cfg.Isolation)
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		a.masterLoop(ctx)
	}()
	if err := sdnotify.Ready(); err != nil {
		a.log.Warn("telling systemd the agent is ready", "err", err)
	}
	go func() {
		if err := sdnotify.Watchdog(ctx, a.healthy); err != nil {
			a.log.Warn("systemd watchdog", "err", err)
		}
	}()
	var runErr error
	select {
	case <-ctx.Done():
		var fe *fatalError
		if errors.As(context.Cause(ctx), &fe) {
			runErr = fe
		}
	case err := <-errc:
		runErr = fmt.Errorf("agent HTTP server: %w", err)
	}
	if err := sdnotify.Stopping(); err != nil {
		a.log.Warn("telling systemd the agent is stopping", "err", err)
	}
	fail(nil) // the master link ends with the agent's HTTP server
	a.shutdownAll()
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutCtx)
	// Its last event handled (and checkpointed) before Run returns.
	<-loopDone
	a.background.Wait()
	return runErr
}

// fatalError is what stops the agent from inside: it can no longer keep
// its invariants (a checkpoint write failed).
type fatalError struct{ err error }

func (e *fatalError) Error() string { return "agent stopped: " + e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// fatal stops the agent as Mesos aborts on a failed checkpoint: nothing it
// cannot record may be acted on. Its containers keep running; a restarted
// agent recovers them from what was recorded.
func (a *Agent) fatal(err error) {
	a.log.Error("stopping the agent: a checkpoint could not be written", "err", err)
	a.mu.Lock()
	fail := a.fail
	a.mu.Unlock()
	if fail != nil {
		fail(&fatalError{err})
	}
}

// healthy is the systemd watchdog's check: the agent's state lock must be
// free within a few seconds (a deadlock withholds the ping).
func (a *Agent) healthy() error {
	got := make(chan struct{})
	go func() {
		a.mu.Lock()
		a.mu.Unlock() //nolint:staticcheck // an empty critical section is the probe
		close(got)
	}()
	select {
	case <-got:
		return nil
	case <-time.After(5 * time.Second):
		return errors.New("agent state lock held for more than 5s")
	}
}

// agentReadonlyRealm is the realm of the agent's read-only endpoints
// (Mesos' agent READONLY_HTTP_AUTHENTICATION_REALM).
const agentReadonlyRealm = "mesos-agent-readonly"

// Handler is the agent's HTTP API.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	// With --authenticate_http_readonly what shows the node needs
	// credentials, as in Mesos; /health and /version do not.
	readonly := func(h http.HandlerFunc) http.HandlerFunc {
		return auth.Require(a.cfg.readonlyCredentials, agentReadonlyRealm, h)
	}
	mux.HandleFunc("/api/v1/executor", a.serveExecutor)
	mux.HandleFunc("/version", httpapi.Version)
	// get_endpoints (--acls) guards what Mesos guards with it.
	endpoint := a.cfg.acls.Endpoint
	mux.HandleFunc("/metrics/snapshot", readonly(endpoint(metrics.Handler(a.metrics))))
	// The agent process's endpoints where Mesos serves them (under its
	// process name slave(1), with libprocess' .json aliases), and at the
	// root, where tools written for Corral look.
	for name, h := range map[string]http.HandlerFunc{
		"state":              readonly(a.serveState),
		"flags":              readonly(a.serveFlags),
		"health":             httpapi.HealthWarning(exposure(a.cfg)),
		"monitor/statistics": readonly(endpoint(a.serveStatistics)),
		"containers":         readonly(endpoint(a.serveContainers)),
	} {
		for _, prefix := range []string{"/", "/slave(1)/"} {
			mux.HandleFunc(prefix+name, h)
			mux.HandleFunc(prefix+name+".json", h)
		}
	}
	a.registerFiles(mux)
	if !a.cfg.TLS.VerifyPeer {
		return mux
	}
	// Executors prove who they are with their token, not a certificate
	// (they are given only the CA); load balancers probe /health.
	return tlsconfig.RequirePeer(mux, func(path string) bool {
		switch path {
		case "/api/v1/executor", "/health", "/health.json", "/slave(1)/health", "/slave(1)/health.json":
			return false
		}
		return true
	})
}

// exposure says, when the agent listens beyond loopback without
// authenticating executors, that anyone can speak for them ("" else).
func exposure(cfg Config) string {
	if ip := net.ParseIP(cfg.IP); (ip != nil && ip.IsLoopback()) || cfg.AuthenticateHTTPExecutors {
		return ""
	}
	return "unauthenticated: anyone who reaches this agent can speak for any executor (--authenticate_http_executors)"
}

// serveFlags is /flags, for whom view_flags allows.
func (a *Agent) serveFlags(w http.ResponseWriter, r *http.Request) {
	if !a.viewerOf(r).Flags() {
		httpapi.Error(w, http.StatusForbidden, "Not authorized to view flags")
		return
	}
	httpapi.Flags(a.cfg.Flags)(w, r)
}

// masterLoop (re-)registers with the master and handles its events, backing
// off between attempts as Mesos' --registration_backoff_factor does.
func (a *Agent) masterLoop(ctx context.Context) {
	backoff := a.cfg.RegistrationBackoffFactor
	for ctx.Err() == nil {
		err := a.subscribe(ctx)
		a.setConnected(false)
		if ctx.Err() != nil {
			return
		}
		wait := time.Duration(rand.Int64N(int64(backoff)) + 1)
		a.log.Warn("master link down; retrying", "err", err, "in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(2*backoff, time.Minute)
	}
}

func (a *Agent) setConnected(up bool) {
	a.mu.Lock()
	a.connected = up
	a.mu.Unlock()
	a.updates.Connected(up)
}

func (a *Agent) subscribe(ctx context.Context) error {
	call := a.subscribeCall()
	sub, err := a.master.Subscribe(ctx, call, time.Minute)
	if se := (*httpapi.StatusError)(nil); errors.As(err, &se) && se.Code == http.StatusUnauthorized {
		return fmt.Errorf("subscribing: the master wants the agent authenticated and did not take its credential (--credential): %w", err)
	}
	if err != nil {
		return fmt.Errorf("subscribing: %w", err)
	}
	defer sub.Close()
	stop := context.AfterFunc(ctx, func() { sub.Close() })
	defer stop()
	for {
		ev := &cluster.Event{}
		if err := sub.Next(ev); err != nil {
			return fmt.Errorf("event stream: %w", err)
		}
		switch ev.GetType() {
		case cluster.Event_SUBSCRIBED:
			s := ev.GetSubscribed()
			if hb := s.GetHeartbeatIntervalSeconds(); hb > 0 {
				sub.SetIdle(time.Duration(3 * hb * float64(time.Second)))
			}
			id := s.GetAgentId().GetValue()
			a.mu.Lock()
			old := a.agentID
			a.agentID = id
			a.masterInfo = s.GetMasterInfo()
			info := a.agentInfoLocked()
			a.mu.Unlock()
			if old != "" && old != id {
				a.log.Error("the master gave this agent a new ID; what it recovered stays under the old one", "old", old, "new", id)
			}
			// The ID is durable before anything is launched under it.
			if err := a.store.WriteAgentInfo(ctx, info); err != nil {
				a.fatal(fmt.Errorf("checkpointing agent info: %w", err))
				return fmt.Errorf("checkpointing agent info: %w", err)
			}
			a.log.Info("registered with master", "agent", id, "master", s.GetMasterInfo().GetId(), "reregistered", old == id)
			a.setConnected(true)
		case cluster.Event_HEARTBEAT:
		case cluster.Event_ERROR:
			return fmt.Errorf("master: %s", ev.GetError().GetMessage())
		default:
			a.handleMasterEvent(ev)
		}
	}
}

func (a *Agent) agentInfoLocked() *mesos.AgentInfo {
	info := &mesos.AgentInfo{
		Hostname:  proto.String(a.cfg.Hostname),
		Port:      proto.Int32(int32(a.cfg.Port)),
		Resources: a.total,
	}
	if a.agentID != "" {
		info.Id = &mesos.AgentID{Value: proto.String(a.agentID)}
	}
	return info
}

// subscribeCall is the (re-)registration: with the agent ID of the last
// run, it carries every framework, custom executor and task the agent
// knows, tasks whose terminal updates are not yet acknowledged included, so
// the master can reconcile.
func (a *Agent) subscribeCall() *cluster.Call {
	a.mu.Lock()
	defer a.mu.Unlock()
	info := a.agentInfoLocked()
	call := &cluster.Call{
		Type: cluster.Call_SUBSCRIBE.Enum(),
		Subscribe: &cluster.Call_Subscribe{
			AgentInfo: info,
			Endpoint: &mesos.URL{
				Scheme:  proto.String(a.cfg.TLS.Scheme()),
				Address: &mesos.Address{Hostname: proto.String(a.cfg.Hostname), Ip: proto.String(a.cfg.IP), Port: proto.Int32(int32(a.cfg.Port))},
				Path:    proto.String("/slave(1)"),
			},
			Version: proto.String(version.Version),
		},
	}
	if a.agentID != "" {
		call.AgentId = &mesos.AgentID{Value: proto.String(a.agentID)}
	}
	for _, fw := range a.frameworks {
		call.Subscribe.Frameworks = append(call.Subscribe.Frameworks, fw.info)
		for _, ex := range fw.executors {
			if ex.runner.traits().reported {
				info := ex.info
				if info.FrameworkId == nil {
					// Checkpointed before the master filled it in: the
					// master owns a reported executor by this field.
					info = proto.Clone(info).(*mesos.ExecutorInfo)
					info.FrameworkId = &mesos.FrameworkID{Value: proto.String(fw.id)}
				}
				call.Subscribe.Executors = append(call.Subscribe.Executors, info)
			}
			for _, t := range ex.tasks {
				call.Subscribe.Tasks = append(call.Subscribe.Tasks, t.message(a.agentID, fw.id, ex))
			}
		}
		for _, ex := range fw.ended {
			for _, t := range ex.tasks {
				call.Subscribe.Tasks = append(call.Subscribe.Tasks, t.message(a.agentID, fw.id, ex))
			}
		}
	}
	return call
}

// callMaster posts a call on the current stream, without blocking the caller
// on the network.
func (a *Agent) callMaster(call *cluster.Call) {
	a.sendSlots <- struct{}{}
	defer func() { <-a.sendSlots }()
	a.mu.Lock()
	call.AgentId = &mesos.AgentID{Value: proto.String(a.agentID)}
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.master.Call(ctx, call, nil); err != nil {
		a.log.Warn("call to master failed", "type", call.GetType(), "err", err)
	}
}

// forwardUpdate is the update manager's way to the master.
func (a *Agent) forwardUpdate(u *cluster.StatusUpdate) {
	a.callMaster(&cluster.Call{Type: cluster.Call_STATUS_UPDATE.Enum(), StatusUpdate: u})
}

func (a *Agent) handleMasterEvent(ev *cluster.Event) {
	switch ev.GetType() {
	case cluster.Event_RUN_TASK:
		rt := ev.GetRunTask()
		a.runTasks(rt.GetFramework(), rt.GetTask().GetExecutor(), []*mesos.TaskInfo{rt.GetTask()}, false)
	case cluster.Event_RUN_TASK_GROUP:
		rg := ev.GetRunTaskGroup()
		a.runTasks(rg.GetFramework(), rg.GetExecutor(), rg.GetTaskGroup().GetTasks(), true)
	case cluster.Event_KILL_TASK:
		k := ev.GetKillTask()
		a.killTask(k.GetFrameworkId().GetValue(), k.GetTaskId().GetValue(), k.GetKillPolicy())
	case cluster.Event_ACKNOWLEDGE:
		// Off the event loop: checkpointing an ack is an fsync, and acks of
		// different tasks need not wait for each other. One task's acks
		// cannot overtake each other: only its stream's head is in flight.
		ack := ev.GetAcknowledge()
		a.background.Go(func() {
			a.updates.Acknowledge(ack.GetFrameworkId().GetValue(), ack.GetTaskId().GetValue(), ack.GetUuid())
		})
	case cluster.Event_SHUTDOWN_FRAMEWORK:
		a.shutdownFramework(ev.GetShutdownFramework().GetFrameworkId().GetValue())
	case cluster.Event_SHUTDOWN_EXECUTOR:
		se := ev.GetShutdownExecutor()
		a.mu.Lock()
		ex := a.executorLocked(se.GetFrameworkId().GetValue(), se.GetExecutorId().GetValue())
		a.mu.Unlock()
		if ex != nil {
			a.shutdownExecutor(ex)
		}
	case cluster.Event_FRAMEWORK_MESSAGE:
		a.frameworkMessage(ev.GetFrameworkMessage())
	default:
		a.log.Warn("unknown event from master ignored", "type", ev.GetType())
	}
}

func (a *Agent) executorLocked(fwID, exID string) *executor {
	if fw := a.frameworks[fwID]; fw != nil {
		return fw.executors[exID]
	}
	return nil
}

// shutdownAll runs when the agent stops. Containers of frameworks that
// checkpoint keep running for the next agent to re-attach; the others
// cannot be recovered and are destroyed, as are all of them with
// --recover=cleanup.
func (a *Agent) shutdownAll() {
	a.mu.Lock()
	var all []*executor
	kept := 0
	for _, fw := range a.frameworks {
		for _, ex := range fw.executors {
			if fw.info.GetCheckpoint() && a.cfg.Recover != RecoverCleanup {
				kept++
				continue
			}
			all = append(all, ex)
		}
	}
	a.mu.Unlock()
	a.log.Info("agent stopping", "destroying_executors", len(all), "keeping_executors", kept)
	var wg sync.WaitGroup
	for _, ex := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.mu.Lock()
			cids := ex.containerIDs()
			a.mu.Unlock()
			for _, id := range cids {
				_, err := a.cz.Destroy(context.Background(), id)
				if err != nil && !errors.Is(err, os.ErrNotExist) {
					a.log.Warn("destroying container at shutdown", "container", id, "err", err)
				}
				// Nothing will recover it: its runtime record goes now, not
				// when its end is reported (the agent is going away).
				a.cz.Forget(id)
			}
		}()
	}
	wg.Wait()
}

// workGroup is work run in the background and waited for. Unlike a
// sync.WaitGroup it may be given more while it is waited for (a checkpoint
// removal that an acknowledgement being waited for starts); Wait returns
// when none is left.
type workGroup struct {
	mu   sync.Mutex
	n    int
	idle sync.Cond
}

func (g *workGroup) Go(f func()) {
	g.mu.Lock()
	g.n++
	g.mu.Unlock()
	go func() {
		defer g.done()
		f()
	}()
}

func (g *workGroup) done() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n--; g.n == 0 && g.idle.L != nil {
		g.idle.Broadcast()
	}
}

func (g *workGroup) Wait() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.idle.L == nil {
		g.idle.L = &g.mu
	}
	for g.n > 0 {
		g.idle.Wait()
	}
}
