// Package master is Corral's master: it keeps the frameworks, agents, tasks
// and offers, serves the v1 scheduler API to frameworks and the internal
// API to agents, and offers agents' unused resources to frameworks.
package master

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/corral/corral/api/auth"
	"github.com/corral/corral/api/authz"
	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/tlsconfig"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/ids"
	"github.com/corral/corral/internal/version"
	"google.golang.org/protobuf/proto"
)

// Config is the master's configuration (its flags).
type Config struct {
	// Address is host:port the master listens on; the master advertises it.
	Address  string
	Hostname string
	// HeartbeatInterval is how often an idle event stream carries a
	// HEARTBEAT (Mesos: 15 s).
	HeartbeatInterval time.Duration
	// AllocationInterval is the period of the batch allocation that catches
	// expired filters (Mesos: 1 s); events also trigger allocation.
	AllocationInterval time.Duration
	// AgentReregisterTimeout is how long a disconnected agent's tasks are
	// kept before they are reported lost.
	AgentReregisterTimeout time.Duration
	// MaxCompletedTasksPerFramework bounds the completed tasks kept for
	// /state.
	MaxCompletedTasksPerFramework int
	// FrameworkCredentials, when set, are the principals and secrets
	// frameworks must authenticate with (HTTP basic) on every scheduler
	// API call (--authenticate_http_frameworks with --credentials).
	FrameworkCredentials auth.Credentials
	// AgentCredentials, when set, are those agents must authenticate with
	// (HTTP basic) on the agent link (--authenticate_agents); an agent ID
	// is then its registering principal's.
	AgentCredentials auth.Credentials
	// ReadonlyCredentials, when set, are those the read-only endpoints
	// and the operator API want (--authenticate_http_readonly with
	// --http_credentials).
	ReadonlyCredentials auth.Credentials
	// ReadwriteCredentials, when set, are those the endpoints that change
	// the cluster want (/teardown; --authenticate_http_readwrite with
	// --http_credentials).
	ReadwriteCredentials auth.Credentials
	// TLS, when set, is what the master serves (--tls_cert_file,
	// --tls_key_file); the caller wraps the listener with it. With a CA
	// (ClientCAs, --tls_ca_file) the agent link wants a client certificate
	// that CA signed: agents are mutually authenticated.
	TLS *tls.Config
	// VerifyPeer (--tls_verify_peer) wants such a certificate on every
	// endpoint but /health.
	VerifyPeer bool
	// ACLs (--acls) decide which principal may subscribe with which roles,
	// run tasks as which users and see which frameworks, tasks and
	// executors; nil allows everything.
	ACLs *authz.ACLs
	// Flags are echoed by /flags.
	Flags map[string]string
	Log   *slog.Logger
}

func (c *Config) defaults() {
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 15 * time.Second
	}
	if c.AllocationInterval <= 0 {
		c.AllocationInterval = time.Second
	}
	if c.AgentReregisterTimeout <= 0 {
		c.AgentReregisterTimeout = 10 * time.Minute
	}
	if c.MaxCompletedTasksPerFramework <= 0 {
		c.MaxCompletedTasksPerFramework = 1000
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Hostname == "" {
		c.Hostname, _ = os.Hostname()
	}
}

// Master is the master's state. One mutex guards it all: the master does
// bookkeeping only, and every network write happens outside the lock
// through the streams' queues.
type Master struct {
	cfg   Config
	log   *slog.Logger
	info  *mesos.MasterInfo
	start time.Time

	frameworkIDs *ids.Sequence
	agentIDs     *ids.Sequence
	offerIDs     *ids.Sequence

	kick chan struct{}

	mu                  sync.Mutex
	frameworks          map[string]*framework
	completedFrameworks []*framework
	// ended counts tasks by terminal state since the master started, for
	// /metrics/snapshot (the completed lists are bounded, these are not).
	ended  map[mesos.TaskState]int64
	agents map[string]*agent
	offers map[string]*offer
	// connected and total are the allocator's view of the cluster
	// (accounting.go), taken again when clusterStale.
	connected    []*agent
	total        holdings
	clusterStale bool
	// unreachable are the agents removed for not re-registering in time,
	// with when (Mesos' unreachable agents, counted in /state); bounded by
	// maxUnreachableAgents.
	unreachable map[string]time.Time
}

// maxUnreachableAgents bounds the unreachable agents remembered; the oldest
// are forgotten first, as Mesos' registry_max_agent_count does.
const maxUnreachableAgents = 1000

type framework struct {
	id        string
	info      *mesos.FrameworkInfo
	stream    *httpapi.Stream
	streamID  string
	active    bool
	suppress  map[string]bool // roles
	filters   offerFilters
	offers    map[string]*offer
	tasks     map[string]*task
	completed []*task
	// executors this framework runs, per agent, for resource accounting.
	executors map[string]*executor
	// allocated is what it holds: its live tasks', its executors' and its
	// offers' resources (accounting.go), its dominant share's numerator.
	allocated      holdings
	registeredTime time.Time
	// reregisteredTime is the last SUBSCRIBE (registeredTime at first);
	// unregisteredTime when it was torn down (zero while it lives).
	reregisteredTime time.Time
	unregisteredTime time.Time
	// recovered: known only from an agent's report of its tasks (the
	// master restarted) and not subscribed since, Mesos' RECOVERED state.
	recovered     bool
	failoverTimer *time.Timer
}

type agent struct {
	id       string
	info     *mesos.AgentInfo
	endpoint *mesos.URL
	total    resources.Resources
	// used and offered change only through the master's accounting
	// (accounting.go), which keeps free, their remainder, with them.
	used      resources.Resources
	offered   resources.Resources
	free      resources.Resources
	freeStale bool
	stream    *httpapi.Stream
	streamID  string
	connected bool
	// principal is the one the agent authenticated as ("" without agent
	// authentication): only it may subscribe the agent again.
	principal string
	tasks     map[string]*task // by framework/task key
	executors map[string]*executor
	regTime   time.Time
	reregTime time.Time // last re-registration; zero if none
	removal   *time.Timer
	version   string
}

type task struct {
	fw        *framework
	agent     *agent
	id        string
	role      string // the role its resources are allocated to
	info      *mesos.TaskInfo
	executor  string
	resources resources.Resources
	state     mesos.TaskState
	statuses  []*mesos.TaskStatus
	// lastStatus is the latest status forwarded to the framework.
	lastStatus *mesos.TaskStatus
}

type executor struct {
	fw        *framework
	agent     *agent
	role      string
	info      *mesos.ExecutorInfo
	resources resources.Resources
}

type offer struct {
	id    string
	fw    *framework
	agent *agent
	// role is the role the resources are allocated to; refusals of the
	// offer are kept under it.
	role      string
	resources resources.Resources
}

// New builds a master.
func New(cfg Config) *Master {
	cfg.defaults()
	id := ids.String()
	m := &Master{
		cfg:          cfg,
		log:          cfg.Log.With("component", "master"),
		start:        time.Now(),
		frameworkIDs: ids.NewSequence(id+"-", "%04d"),
		agentIDs:     ids.NewSequence(id+"-S", "%d"),
		offerIDs:     ids.NewSequence(id+"-O", "%d"),
		kick:         make(chan struct{}, 1),
		frameworks:   map[string]*framework{},
		ended:        map[mesos.TaskState]int64{},
		agents:       map[string]*agent{},
		offers:       map[string]*offer{},
		unreachable:  map[string]time.Time{},
	}
	m.info = masterInfo(id, cfg.Address, cfg.Hostname)
	if w := m.exposure(); w != "" {
		m.log.Warn("the master listens beyond loopback: "+w, "address", cfg.Address)
	}
	return m
}

func masterInfo(id, address, hostname string) *mesos.MasterInfo {
	host, portStr, _ := net.SplitHostPort(address)
	port, _ := strconv.Atoi(portStr)
	ip := net.ParseIP(host).To4()
	var ipNum uint32
	if ip != nil {
		// MasterInfo.ip is the IPv4 address in network byte order read as a
		// little-endian integer, as Mesos writes it.
		ipNum = uint32(ip[0]) | uint32(ip[1])<<8 | uint32(ip[2])<<16 | uint32(ip[3])<<24
	}
	return &mesos.MasterInfo{
		Id:       proto.String(id),
		Ip:       proto.Uint32(ipNum),
		Port:     proto.Uint32(uint32(port)),
		Pid:      proto.String("master@" + address),
		Hostname: proto.String(hostname),
		Version:  proto.String(version.Version),
		// AGENT_UPDATE: an agent may come back with other resources and
		// attributes; the master takes what it reports.
		Capabilities: []*mesos.MasterInfo_Capability{{Type: mesos.MasterInfo_Capability_AGENT_UPDATE.Enum()}},
		Address: &mesos.Address{
			Hostname: proto.String(hostname),
			Ip:       proto.String(host),
			Port:     proto.Int32(int32(port)),
		},
	}
}

// Handler returns the master's HTTP API.
func (m *Master) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/scheduler", m.serveScheduler)
	mux.HandleFunc("/internal/v1/agent", m.serveAgent)
	// The operator API answers only GET_* calls so far: read-only.
	mux.HandleFunc("/api/v1", auth.Require(m.cfg.ReadonlyCredentials, readonlyRealm, m.serveOperator))
	m.registerEndpoints(mux)
	if m.cfg.TLS == nil || m.cfg.TLS.ClientCAs == nil {
		return mux
	}
	return tlsconfig.RequirePeer(mux, func(path string) bool {
		if path == "/internal/v1/agent" {
			return true
		}
		return m.cfg.VerifyPeer && path != "/health" && path != "/master/health"
	})
}

// Run allocates until ctx ends.
func (m *Master) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.AllocationInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			m.shutdown()
			return
		case <-t.C:
		case <-m.kick:
		}
		m.mu.Lock()
		m.allocate()
		m.mu.Unlock()
	}
}

// requestAllocation asks the allocation loop to run soon; many requests
// coalesce into one run.
func (m *Master) requestAllocation() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

func (m *Master) shutdown() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, fw := range m.frameworks {
		if fw.stream != nil {
			fw.stream.Close()
		}
	}
	for _, a := range m.agents {
		if a.stream != nil {
			a.stream.Close()
		}
	}
}

func (fw *framework) hasCapability(c mesos.FrameworkInfo_Capability_Type) bool {
	for _, cap := range fw.info.GetCapabilities() {
		if cap.GetType() == c {
			return true
		}
	}
	return false
}

func (fw *framework) partitionAware() bool {
	return fw.hasCapability(mesos.FrameworkInfo_Capability_PARTITION_AWARE)
}

// roles lists the framework's roles: FrameworkInfo.roles for multi-role
// frameworks, else the single (deprecated) role.
func (fw *framework) roles() []string { return frameworkRoles(fw.info) }

func taskKey(fwID, taskID string) string { return fwID + "/" + taskID }

// allocationRole is the role of resources an agent reported without one
// (tasks and executors adopted after a master restart): the allocation info
// they carry, else the framework's first role.
func allocationRole(fw *framework, list []*mesos.Resource) string {
	for _, r := range list {
		if role := r.GetAllocationInfo().GetRole(); role != "" {
			return role
		}
	}
	if roles := fw.roles(); len(roles) > 0 {
		return roles[0]
	}
	return "*"
}
