// Package agent is Corral's node agent: it registers with the master, runs
// tasks in containers, serves the v1 executor API and forwards status updates
// until the scheduler acknowledges them.
package agent

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral/corral/agent/gc"
	"github.com/corral/corral/api/auth"
	"github.com/corral/corral/api/authz"
	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/tlsconfig"
	"github.com/corral/corral/container"
)

// Config is the agent's configuration (its flags, Mesos names in comments).
type Config struct {
	// Master is host:port of the master (--master).
	Master string
	// WorkDir holds sandboxes and checkpoints (--work_dir).
	WorkDir string
	// RuntimeDir holds per-container runtime state (--runtime_dir); tmpfs.
	RuntimeDir string
	// IP and Port are where the agent's HTTP API listens (--ip, --port);
	// Port 0 picks a free one.
	IP   string
	Port int
	// Hostname is advertised in AgentInfo (--hostname).
	Hostname string
	// Resources is the --resources text or JSON; what it leaves out (cpus,
	// mem, disk, ports) is detected from the host.
	Resources string
	// Isolation is the comma-separated isolator list (--isolation).
	Isolation string
	// Launcher is posix or linux (--launcher); empty picks linux when it is
	// compiled in and usable (root, cgroups mounted), else posix, as Mesos
	// does.
	Launcher string
	// LauncherDir holds corral-init (--launcher_dir).
	LauncherDir string
	// CgroupsRoot names the agent's cgroup under each hierarchy
	// (--cgroups_root).
	CgroupsRoot string
	// CgroupsHierarchy is where cgroups are mounted (--cgroups_hierarchy,
	// default /sys/fs/cgroup): a cgroup2 mount, or the folder of the v1
	// hierarchies.
	CgroupsHierarchy string
	// SwitchUser runs tasks as their framework's (or command's) user when
	// the agent is root (--switch_user).
	SwitchUser bool
	// HostPrivileges (--host_privileges) runs tasks with the agent's full
	// privileges: no containment isolators are added to --isolation and
	// filesystem/linux leaves the host root writable. An explicit operator
	// choice; off by default.
	HostPrivileges bool
	// Settings are the launchers' and isolators' own flags, each family's
	// declared by its package (container.RegisterSettings); a zero set is
	// every family at its defaults.
	Settings container.SettingsSet
	// AuthenticateHTTPReadonly makes the read-only endpoints (/state,
	// /flags, /metrics/snapshot, /monitor/statistics, /containers,
	// /files) want HTTP basic credentials from HTTPCredentialsFile
	// (--authenticate_http_readonly, --http_credentials).
	AuthenticateHTTPReadonly bool
	HTTPCredentialsFile      string
	readonlyCredentials      auth.Credentials
	// TLS (--tls_cert_file, --tls_key_file, --tls_ca_file,
	// --tls_verify_peer): with a certificate the agent serves https, reaches
	// its master over https presenting the same certificate (the mutual TLS
	// a master with a CA wants on the agent link), and tells executors to
	// speak TLS (LIBPROCESS_SSL_*). VerifyPeer wants a client certificate on
	// every endpoint but the executor API, whose callers prove who they are
	// with their token.
	TLS tlsconfig.Files
	// ExecutorTLSCertFile and ExecutorTLSKeyFile (--executor_tls_cert_file,
	// --executor_tls_key_file) are a certificate and key for custom
	// executors (LIBPROCESS_SSL_CERT_FILE, _KEY_FILE): libprocess-based
	// executors refuse to start with TLS on and no key of their own. Not
	// the agent's pair: a task could read these.
	ExecutorTLSCertFile, ExecutorTLSKeyFile string
	// ACLs (--acls, Mesos' local authorizer JSON or its file) decide whose
	// sandboxes a principal of --http_credentials may read through /files
	// (access_sandboxes).
	ACLs      string
	acls      *authz.ACLs
	serverTLS *tls.Config
	clientTLS *tls.Config
	// masterURL is --master as a base URL, with the scheme TLS wants.
	masterURL string
	// CredentialFile (--credential) holds the principal and secret the
	// agent authenticates to the master with (a master with
	// --authenticate_agents).
	CredentialFile string
	credential     *auth.Credential
	// AuthenticateHTTPExecutors makes custom executors authenticate with
	// the token the agent gives each (--authenticate_http_executors;
	// executor_auth.go), signed with the key in JWTSecretKeyFile
	// (--jwt_secret_key).
	AuthenticateHTTPExecutors bool
	JWTSecretKeyFile          string
	// executorKey is the key read from JWTSecretKeyFile (nil: executors do
	// not authenticate).
	executorKey []byte
	// ExecutorRegistrationTimeout bounds how long a custom executor may take
	// to subscribe (--executor_registration_timeout).
	ExecutorRegistrationTimeout time.Duration
	// ExecutorShutdownGracePeriod is given to executors to shut down
	// (--executor_shutdown_grace_period).
	ExecutorShutdownGracePeriod time.Duration
	// ExecutorReregistrationTimeout bounds how long a custom executor that
	// was running when the agent restarted may take to re-subscribe
	// (--executor_reregistration_timeout, default 2s as Mesos); after it,
	// the executor is destroyed and its tasks become TASK_GONE (partition-
	// aware frameworks) or TASK_LOST with
	// REASON_EXECUTOR_REREGISTRATION_TIMEOUT.
	ExecutorReregistrationTimeout time.Duration
	// Recover is --recover: "reconnect" (the default) re-attaches the
	// containers the checkpoints name after a restart; "cleanup" destroys
	// them at start-up (their tasks are reported TASK_GONE/TASK_LOST) and
	// makes a stopping agent destroy every container, as before an
	// incompatible upgrade.
	Recover string
	// NonStrict is --strict=false: a damaged checkpoint is logged, counted
	// and skipped (with what depends on it) instead of stopping the agent.
	NonStrict bool
	// RecoveryTimeout is --recovery_timeout (default 15 minutes): the bound
	// on the agent's own recovery, and how long checkpointing executors keep
	// trying to re-subscribe to a restarting agent (MESOS_RECOVERY_TIMEOUT).
	RecoveryTimeout time.Duration
	// BootIDPath overrides /proc/sys/kernel/random/boot_id (tests simulate
	// a reboot by changing the file it names).
	BootIDPath string
	// StatusUpdateRetryMin/Max bound the status update resend backoff
	// (Mesos: 10 s doubling to 10 min).
	StatusUpdateRetryMin time.Duration
	StatusUpdateRetryMax time.Duration
	// RegistrationBackoffFactor seeds the (re-)registration backoff
	// (--registration_backoff_factor).
	RegistrationBackoffFactor time.Duration
	// HeartbeatInterval is how often idle executor streams get a HEARTBEAT.
	HeartbeatInterval time.Duration

	// GCDelay is --gc_delay (default 1 week): how long the sandbox of an
	// ended executor run is kept when the disk has room.
	GCDelay time.Duration
	// DiskWatchInterval is --disk_watch_interval (default 1 minute): how
	// often the work_dir's file system is measured to prune sandboxes
	// early.
	DiskWatchInterval time.Duration
	// GCDiskHeadroom is --gc_disk_headroom, in [0, 1]; nil is Mesos'
	// default 0.1. A pointer because zero is a value the flag may take.
	GCDiskHeadroom *float64
	// GCInodeThreshold is --gc_inode_threshold, in [0, 1]: while a larger
	// fraction of the work_dir's inodes is in use, the oldest scheduled
	// sandboxes go first. 0 turns it off.
	GCInodeThreshold float64
	// GCMaxSandboxes is --gc_max_sandboxes: at most this many finished
	// sandboxes are kept, the oldest go first. 0 turns it off.
	GCMaxSandboxes int
	// GCParallelism is --gc_parallelism (default 4): sandbox removals
	// running at once.
	GCParallelism int
	// Flags are echoed by /flags.
	Flags map[string]string
	Log   *slog.Logger
}

// --recover values.
const (
	RecoverReconnect = "reconnect"
	RecoverCleanup   = "cleanup"
)

// DefaultIsolation is what the agent runs with when --isolation is unset.
const DefaultIsolation = "posix/cpu,posix/mem"

// Containment is what every container gets in front of --isolation unless
// --host_privileges: the privilege bounds that need no namespace, and with
// the linux launcher its own cgroup namespace and the masked host view.
var (
	containmentPosix = []string{"linux/capabilities", "linux/nnp", "linux/seccomp"}
	containmentLinux = append([]string{"namespaces/cgroup", "filesystem/masking"}, containmentPosix...)
)

// isolators is the isolator list the agent builds: the containment ones
// first (their /dev comes before the other isolators' mounts), then
// --isolation in its order, each once.
func (c *Config) isolators() []string {
	var out []string
	seen := map[string]bool{}
	add := func(name string) {
		name = strings.TrimSpace(name)
		if name != "" && !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	if !c.HostPrivileges {
		contain := containmentPosix
		if c.Launcher != "posix" {
			contain = containmentLinux
		}
		for _, name := range contain {
			add(name)
		}
	}
	for _, name := range strings.Split(c.Isolation, ",") {
		add(name)
	}
	return out
}

// tlsDefaults checks the --tls_* flags and loads what they name.
func (c *Config) tlsDefaults() error {
	var err error
	if c.serverTLS, err = c.TLS.Server(); err != nil {
		return err
	}
	if c.serverTLS == nil {
		if c.ExecutorTLSCertFile != "" || c.ExecutorTLSKeyFile != "" {
			return fmt.Errorf("--executor_tls_cert_file and --executor_tls_key_file need --tls_cert_file and --tls_key_file")
		}
		return nil
	}
	if (c.ExecutorTLSCertFile == "") != (c.ExecutorTLSKeyFile == "") {
		return fmt.Errorf("--executor_tls_cert_file and --executor_tls_key_file come together")
	}
	for _, f := range []struct{ flag, path string }{{"--executor_tls_cert_file", c.ExecutorTLSCertFile}, {"--executor_tls_key_file", c.ExecutorTLSKeyFile}} {
		if f.path != "" {
			if _, err := os.Stat(f.path); err != nil {
				return fmt.Errorf("%s: %w", f.flag, err)
			}
		}
	}
	c.clientTLS, err = c.TLS.Client()
	return err
}

func (c *Config) defaults() error {
	if c.Master == "" {
		return fmt.Errorf("--master is required")
	}
	if c.WorkDir == "" {
		return fmt.Errorf("--work_dir is required")
	}
	abs, err := filepath.Abs(c.WorkDir)
	if err != nil {
		return fmt.Errorf("--work_dir: %w", err)
	}
	c.WorkDir = abs
	if c.readonlyCredentials == nil {
		if c.readonlyCredentials, err = auth.LoadRequired(c.AuthenticateHTTPReadonly, "--authenticate_http_readonly", "--http_credentials", c.HTTPCredentialsFile); err != nil {
			return err
		}
	}
	if c.acls == nil && c.ACLs != "" {
		if c.acls, err = authz.Load(c.ACLs); err != nil {
			return err
		}
	}
	if c.serverTLS == nil {
		if err := c.tlsDefaults(); err != nil {
			return err
		}
	}
	if c.masterURL, err = c.TLS.URL("--master", c.Master); err != nil {
		return err
	}
	if c.CredentialFile != "" && c.credential == nil {
		cred, err := auth.LoadCredential(c.CredentialFile)
		if err != nil {
			return fmt.Errorf("--credential: %w", err)
		}
		c.credential = &cred
	}
	if c.AuthenticateHTTPExecutors && c.executorKey == nil {
		if c.JWTSecretKeyFile == "" {
			return fmt.Errorf("--authenticate_http_executors needs --jwt_secret_key: the key that signs the executors' tokens")
		}
		key, err := auth.ReadSecretFile(c.JWTSecretKeyFile)
		if err != nil {
			return fmt.Errorf("--jwt_secret_key: %w", err)
		}
		if len(key) == 0 {
			return fmt.Errorf("--jwt_secret_key: %s is empty", c.JWTSecretKeyFile)
		}
		c.executorKey = key
	}
	if c.RuntimeDir == "" {
		c.RuntimeDir = filepath.Join(c.WorkDir, "run")
	}
	if c.IP == "" {
		c.IP = "127.0.0.1"
	}
	if net.ParseIP(c.IP) == nil {
		return fmt.Errorf("--ip: %q is not an IP address", c.IP)
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("--port: %d is out of range", c.Port)
	}
	if c.Hostname == "" {
		c.Hostname, _ = os.Hostname()
	}
	if c.LauncherDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("--launcher_dir: %w", err)
		}
		c.LauncherDir = filepath.Dir(exe)
	}
	if c.CgroupsRoot == "" {
		c.CgroupsRoot = "corral"
	}
	if err := c.checkCgroupFlags(); err != nil {
		return err
	}
	if c.ExecutorRegistrationTimeout <= 0 {
		c.ExecutorRegistrationTimeout = time.Minute
	}
	if c.ExecutorShutdownGracePeriod <= 0 {
		c.ExecutorShutdownGracePeriod = 5 * time.Second
	}
	if c.ExecutorReregistrationTimeout <= 0 {
		c.ExecutorReregistrationTimeout = 2 * time.Second
	}
	if c.RecoveryTimeout <= 0 {
		c.RecoveryTimeout = 15 * time.Minute
	}
	switch c.Recover {
	case "":
		c.Recover = RecoverReconnect
	case RecoverReconnect, RecoverCleanup:
	default:
		return fmt.Errorf("--recover: %q is neither %q nor %q", c.Recover, RecoverReconnect, RecoverCleanup)
	}
	if c.StatusUpdateRetryMin <= 0 {
		c.StatusUpdateRetryMin = 10 * time.Second
	}
	if c.StatusUpdateRetryMax <= 0 {
		c.StatusUpdateRetryMax = 10 * time.Minute
	}
	if c.StatusUpdateRetryMax < c.StatusUpdateRetryMin {
		return fmt.Errorf("--status_update_retry_interval_max (%s) is below --status_update_retry_interval_min (%s)", c.StatusUpdateRetryMax, c.StatusUpdateRetryMin)
	}
	if c.RegistrationBackoffFactor <= 0 {
		c.RegistrationBackoffFactor = time.Second
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 15 * time.Second
	}
	if err := c.diskDefaults(); err != nil {
		return err
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Launcher == "" {
		// Mesos' rule: the linux launcher when the agent can run it (root,
		// cgroups mounted), else posix.
		c.Launcher = "posix"
		if err := container.LauncherUsable("linux", c.containerOptions()); err != nil {
			c.Log.Info("using the posix launcher", "why not linux", err.Error())
		} else {
			c.Launcher = "linux"
		}
		// /flags shows what the agent runs with, not the empty default.
		if c.Flags != nil {
			c.Flags["launcher"] = c.Launcher
		}
	}
	return nil
}

// checkCgroupFlags validates the cgroups flags and every launcher's and
// isolator's settings whatever the isolation, so a
// bad value is refused at start-up with the flag's name.
func (c *Config) checkCgroupFlags() error {
	if c.CgroupsHierarchy != "" && !filepath.IsAbs(c.CgroupsHierarchy) {
		return fmt.Errorf("--cgroups_hierarchy: %q is not an absolute path", c.CgroupsHierarchy)
	}
	if r := c.CgroupsRoot; strings.HasPrefix(r, "/") || r == "." || r == ".." || strings.HasPrefix(r, "../") || strings.Contains(r, "/../") || strings.HasSuffix(r, "/..") {
		return fmt.Errorf("--cgroups_root: %q is not a relative cgroup path such as \"corral\"", r)
	}
	return c.Settings.Validate()
}

// orDefault refuses a negative flag value and puts def in place of zero
// (unset).
func orDefault[T int | time.Duration](v *T, def T, flag string) error {
	switch {
	case *v < 0:
		return fmt.Errorf("--%s: %v is negative", flag, *v)
	case *v == 0:
		*v = def
	}
	return nil
}

// diskDefaults fills and checks the GC and disk isolation flags, whatever
// the isolation, so a bad value is refused at start-up with its flag's
// name.
func (c *Config) diskDefaults() error {
	if err := orDefault(&c.GCDelay, gc.DefaultDelay, "gc_delay"); err != nil {
		return err
	}
	if err := orDefault(&c.DiskWatchInterval, gc.DefaultDiskWatchInterval, "disk_watch_interval"); err != nil {
		return err
	}
	if h := c.GCDiskHeadroom; h != nil && !(*h >= 0 && *h <= 1) {
		return fmt.Errorf("--gc_disk_headroom: %v is not in [0, 1]", *h)
	}
	if h := c.GCInodeThreshold; !(h >= 0 && h <= 1) {
		return fmt.Errorf("--gc_inode_threshold: %v is not in [0, 1]", h)
	}
	if c.GCMaxSandboxes < 0 {
		return fmt.Errorf("--gc_max_sandboxes: %d is negative", c.GCMaxSandboxes)
	}
	if err := orDefault(&c.GCParallelism, gc.DefaultParallelism, "gc_parallelism"); err != nil {
		return err
	}
	return nil
}

// gcConfig is the sandbox collector's configuration from the flags.
func (c *Config) gcConfig() gc.Config {
	cfg := gc.Config{
		WorkDir: c.WorkDir, Delay: c.GCDelay, DiskWatchInterval: c.DiskWatchInterval,
		InodeThreshold: c.GCInodeThreshold, MaxSandboxes: c.GCMaxSandboxes, Parallelism: c.GCParallelism,
		Logger: c.Log,
	}
	if c.GCDiskHeadroom != nil {
		cfg.DiskHeadroom, cfg.DiskHeadroomSet = *c.GCDiskHeadroom, true
	}
	return cfg
}

// containerOptions are what the launcher and isolators are built with.
func (c *Config) containerOptions() container.Options {
	return container.Options{
		RuntimeDir: c.RuntimeDir, CgroupsRoot: c.CgroupsRoot, CgroupsHierarchy: c.CgroupsHierarchy,
		WorkDir: c.WorkDir, LauncherDir: c.LauncherDir, HostPrivileges: c.HostPrivileges,
		Settings: c.Settings, Log: c.Log,
	}
}

// totalResources is --resources with cpus, mem, disk and ports filled from
// the host where not given, as Mesos does.
func totalResources(flag, workDir string) (resources.Resources, error) {
	list, err := resources.ParseList(flag)
	if err != nil {
		return nil, fmt.Errorf("--resources: %w", err)
	}
	has := map[string]bool{}
	for _, r := range list {
		has[r.GetName()] = true
		if (r.GetName() == "cpus" || r.GetName() == "mem") && r.GetScalar().GetValue() <= 0 {
			return nil, fmt.Errorf("--resources: %s must be positive", r.GetName())
		}
	}
	given, err := resources.New(list)
	if err != nil {
		return nil, fmt.Errorf("--resources: %w", err)
	}
	var detected []string
	if !has["cpus"] {
		detected = append(detected, fmt.Sprintf("cpus:%d", runtime.NumCPU()))
	}
	if !has["mem"] {
		mem, err := hostMemoryMB()
		if err != nil {
			return nil, err
		}
		detected = append(detected, fmt.Sprintf("mem:%d", mem))
	}
	if !has["disk"] {
		disk, err := hostDiskMB(workDir)
		if err != nil {
			return nil, err
		}
		detected = append(detected, fmt.Sprintf("disk:%d", disk))
	}
	if !has["ports"] {
		detected = append(detected, "ports:[31000-32000]")
	}
	extra, err := resources.Parse(strings.Join(detected, ";"))
	if err != nil {
		return nil, err
	}
	total := given.Plus(extra)
	for _, name := range []string{"cpus", "mem"} {
		if total.Scalar(name) <= 0 {
			return nil, fmt.Errorf("--resources: %s must be positive", name)
		}
	}
	return total, nil
}

// memoryLeftMB is what the agent offers of total MB: it leaves the system
// 1 GiB (or half when there is less than 2 GiB), Mesos' rule.
func memoryLeftMB(total uint64) uint64 {
	if total >= 2048 {
		return total - 1024
	}
	return total / 2
}

// hostDiskMB leaves 5 GiB of the work_dir's file system (or half when there
// is less than 10 GiB), Mesos' rule.
func hostDiskMB(dir string) (uint64, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("--work_dir: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("detecting disk of %s: %w", dir, err)
	}
	total := st.Blocks * uint64(st.Bsize) >> 20
	if total >= 10240 {
		return total - 5120, nil
	}
	return total / 2, nil
}
