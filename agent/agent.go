package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/corral/corral/agent/containerizer"
	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/version"
	"google.golang.org/protobuf/proto"
)

// Agent is one node's agent.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	total resources.Resources
	cz    *containerizer.Containerizer
	ln    net.Listener
	start time.Time

	master  *httpapi.Client
	updates *updateManager

	mu         sync.Mutex
	agentID    string
	masterInfo *mesos.MasterInfo
	connected  bool
	frameworks map[string]*framework
	// completed keeps recently ended executors for /state.
	completed []*executor
}

// New validates the configuration, builds the containerizer and binds the
// agent's listener (so Port 0 resolves before registration).
func New(cfg Config) (*Agent, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	total, err := totalResources(cfg.Resources, cfg.WorkDir)
	if err != nil {
		return nil, err
	}
	cz, err := buildContainerizer(&cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.IP, strconv.Itoa(cfg.Port)))
	if err != nil {
		return nil, fmt.Errorf("--ip/--port: %w", err)
	}
	cfg.Port = ln.Addr().(*net.TCPAddr).Port
	a := &Agent{
		cfg: cfg, log: cfg.Log.With("component", "agent"), total: total, cz: cz, ln: ln, start: time.Now(),
		frameworks: map[string]*framework{},
		master: &httpapi.Client{
			URL:   "http://" + cfg.Master + "/internal/v1/agent",
			Codec: codec.Protobuf,
		},
	}
	a.updates = newUpdateManager(a.log, cfg.StatusUpdateRetryMin, cfg.StatusUpdateRetryMax, a.forwardUpdate, a.updateAcknowledged)
	return a, nil
}

func buildContainerizer(cfg *Config) (*containerizer.Containerizer, error) {
	opts := cfg.containerOptions()
	l, err := containerizer.NewLauncher(cfg.Launcher, opts)
	if err != nil {
		return nil, fmt.Errorf("--launcher: %w", err)
	}
	var isos []containerizer.Isolator
	seen := map[string]bool{}
	for _, name := range strings.Split(cfg.Isolation, ",") {
		name = strings.TrimSpace(name)
		if name == "" || seen[name] {
			continue
		}
		seen[name] = true
		iso, err := containerizer.NewIsolator(name, opts)
		if err != nil {
			return nil, fmt.Errorf("--isolation: %w", err)
		}
		isos = append(isos, iso)
	}
	return containerizer.New(l, isos, filepath.Join(cfg.LauncherDir, "corral-init"), cfg.RuntimeDir, cfg.Log)
}

// Endpoint is host:port of the agent's HTTP API.
func (a *Agent) Endpoint() string { return net.JoinHostPort(a.cfg.IP, strconv.Itoa(a.cfg.Port)) }

// ID is the agent ID the master gave, empty before registration.
func (a *Agent) ID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.agentID
}

// Run serves the agent's HTTP API and keeps it registered with the master
// until ctx ends; then it destroys its containers.
func (a *Agent) Run(ctx context.Context) error {
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(a.ln) }()
	a.log.Info("agent listening", "endpoint", a.Endpoint(), "master", a.cfg.Master, "resources", a.total.String(),
		"launcher", a.cfg.Launcher, "isolation", a.cfg.Isolation)
	go a.masterLoop(ctx)
	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("agent HTTP server: %w", err)
	}
	a.shutdownAll()
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutCtx)
	return nil
}

// Handler is the agent's HTTP API.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/executor", a.serveExecutor)
	mux.HandleFunc("/health", httpapi.Health)
	mux.HandleFunc("/version", httpapi.Version)
	mux.HandleFunc("/flags", httpapi.Flags(a.cfg.Flags))
	mux.HandleFunc("/state", a.serveState)
	mux.HandleFunc("/state.json", a.serveState)
	mux.HandleFunc("/slave(1)/state", a.serveState)
	mux.HandleFunc("/monitor/statistics", a.serveStatistics)
	mux.HandleFunc("/monitor/statistics.json", a.serveStatistics)
	return mux
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
			a.mu.Lock()
			a.agentID = s.GetAgentId().GetValue()
			a.masterInfo = s.GetMasterInfo()
			a.mu.Unlock()
			a.log.Info("registered with master", "agent", s.GetAgentId().GetValue(), "master", s.GetMasterInfo().GetId())
			a.setConnected(true)
		case cluster.Event_HEARTBEAT:
		case cluster.Event_ERROR:
			return fmt.Errorf("master: %s", ev.GetError().GetMessage())
		default:
			a.handleMasterEvent(ev)
		}
	}
}

func (a *Agent) subscribeCall() *cluster.Call {
	a.mu.Lock()
	defer a.mu.Unlock()
	info := &mesos.AgentInfo{
		Hostname:  proto.String(a.cfg.Hostname),
		Port:      proto.Int32(int32(a.cfg.Port)),
		Resources: a.total,
	}
	call := &cluster.Call{
		Type: cluster.Call_SUBSCRIBE.Enum(),
		Subscribe: &cluster.Call_Subscribe{
			AgentInfo: info,
			Endpoint: &mesos.URL{
				Scheme:  proto.String("http"),
				Address: &mesos.Address{Hostname: proto.String(a.cfg.Hostname), Ip: proto.String(a.cfg.IP), Port: proto.Int32(int32(a.cfg.Port))},
				Path:    proto.String("/slave(1)"),
			},
			Version: proto.String(version.Version),
		},
	}
	if a.agentID != "" {
		call.AgentId = &mesos.AgentID{Value: proto.String(a.agentID)}
		info.Id = call.AgentId
	}
	for _, fw := range a.frameworks {
		call.Subscribe.Frameworks = append(call.Subscribe.Frameworks, fw.info)
		for _, ex := range fw.executors {
			if ex.kind == httpExecutor {
				call.Subscribe.Executors = append(call.Subscribe.Executors, ex.info)
			}
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
		ack := ev.GetAcknowledge()
		a.updates.Acknowledge(ack.GetFrameworkId().GetValue(), ack.GetTaskId().GetValue(), ack.GetUuid())
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

// shutdownAll destroys every container when the agent stops. (Keeping
// tasks across agent restarts is the checkpointing work's.)
func (a *Agent) shutdownAll() {
	a.mu.Lock()
	var all []*executor
	for _, fw := range a.frameworks {
		for _, ex := range fw.executors {
			all = append(all, ex)
		}
	}
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, ex := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, id := range ex.containerIDs() {
				_, err := a.cz.Destroy(context.Background(), id)
				if err != nil && !errors.Is(err, os.ErrNotExist) {
					a.log.Warn("destroying container at shutdown", "container", id, "err", err)
				}
			}
		}()
	}
	wg.Wait()
}
