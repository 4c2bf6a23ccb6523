package cli

import (
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/corral/corral/agent"
	"github.com/corral/corral/agent/gc"
	"github.com/corral/corral/api/tlsconfig"
	"github.com/corral/corral/container"
)

type agentFlags struct {
	master, workDir, runtimeDir, ip, hostname, resources, isolation, launcher, launcherDir, cgroupsRoot string
	cgroupsHierarchy                                                                                    string
	port                                                                                                int
	switchUser, hostPrivileges, authenticateExecutors, authenticateReadonly                             bool
	jwtSecretKey, credential, httpCredentials                                                           string
	execRegTimeout, execGrace, regBackoff                                                               time.Duration
	recover, bootIDPath                                                                                 string
	strict                                                                                              bool
	execReregTimeout, recoveryTimeout, updateRetryMin, updateRetryMax                                   time.Duration
	gcDelay, diskWatchInterval                                                                          time.Duration
	gcDiskHeadroom, gcInodeThreshold                                                                    float64
	gcMaxSandboxes, gcParallelism                                                                       int
	tls                                                                                                 tlsconfig.Files
	acls                                                                                                string
	executorTLSCert, executorTLSKey                                                                     string
	// settings are the launchers' and isolators' own flags.
	settings container.SettingsSet
}

func (f *agentFlags) bind(cmd *cobra.Command, withMaster bool) {
	fl := cmd.Flags()
	if withMaster {
		fl.StringVar(&f.master, "master", "", "host:port of the master (required)")
		fl.StringVar(&f.workDir, "work_dir", "", "directory for sandboxes and checkpoints (required)")
		fl.StringVar(&f.ip, "ip", "127.0.0.1", "IP address the agent listens on and advertises")
		fl.IntVar(&f.port, "port", 5051, "port of the agent's HTTP API (0 picks a free one)")
		fl.StringVar(&f.hostname, "hostname", "", "hostname to advertise (default: the system's)")
		// corral local takes these from its master's flags of the same
		// names.
		fl.BoolVar(&f.authenticateReadonly, "authenticate_http_readonly", false, "the read-only endpoints (/state, /flags, /metrics/snapshot, /monitor/statistics, /containers, /files) want HTTP basic credentials from --http_credentials")
		fl.StringVar(&f.httpCredentials, "http_credentials", "", "file of the principals and secrets of the HTTP endpoints (the --credentials format)")
		bindTLS(fl, &f.tls, "agent")
		fl.StringVar(&f.acls, "acls", "", `Mesos' local authorizer ACLs, as JSON or the path of a file holding it (file:// allowed): whose sandboxes each principal of --http_credentials may read through /files (access_sandboxes)`)
	}
	fl.StringVar(&f.runtimeDir, "runtime_dir", "", "directory for per-container runtime state (default <work_dir>/run)")
	fl.StringVar(&f.resources, "resources", "", "resources to offer, e.g. 'cpus:4;mem:8192;ports:[31000-32000]' or JSON; what is left out is detected")
	fl.StringVar(&f.isolation, "isolation", agent.DefaultIsolation, "comma-separated isolators, e.g. cgroups/cpu,cgroups/mem")
	fl.StringVar(&f.launcher, "launcher", "", "container launcher: linux (a cgroup per container, namespaces) or posix (a session per container); default linux when running as root with cgroups mounted, else posix")
	fl.StringVar(&f.launcherDir, "launcher_dir", "", "directory holding corral-init (default: the corral binary's)")
	fl.StringVar(&f.cgroupsRoot, "cgroups_root", "corral", "cgroup under each hierarchy that holds the containers")
	fl.StringVar(&f.cgroupsHierarchy, "cgroups_hierarchy", "/sys/fs/cgroup", "where cgroups are mounted: a cgroup2 mount, or the folder of the v1 hierarchies")
	fl.BoolVar(&f.switchUser, "switch_user", true, "run tasks as their framework's user when the agent is root")
	fl.BoolVar(&f.hostPrivileges, "host_privileges", false, "run tasks with the agent's full privileges: no capability bound, no_new_privs, seccomp filter, cgroup namespace or masked /proc, /sys, /dev and work_dir, and a writable host root under filesystem/linux (unsafe; for trusted workloads only)")
	fl.StringVar(&f.executorTLSCert, "executor_tls_cert_file", "", "with --tls_cert_file: a PEM certificate custom executors get as LIBPROCESS_SSL_CERT_FILE (libprocess-based executors will not start with TLS on and no pair of their own); never the agent's, which a task could read")
	fl.StringVar(&f.executorTLSKey, "executor_tls_key_file", "", "the key of --executor_tls_cert_file (LIBPROCESS_SSL_KEY_FILE); readable by the executors' users")
	fl.StringVar(&f.credential, "credential", "", `file of the principal and secret the agent authenticates to the master with: JSON {"principal":"...","secret":"..."} or "principal secret"`)
	fl.BoolVar(&f.authenticateExecutors, "authenticate_http_executors", false, "custom executors must authenticate on the executor API with the token the agent gives each (MESOS_EXECUTOR_AUTHENTICATION_TOKEN), and may speak only for themselves")
	fl.StringVar(&f.jwtSecretKey, "jwt_secret_key", "", "file of the key that signs the executors' tokens (HS256); needed by --authenticate_http_executors")
	fl.DurationVar(&f.execRegTimeout, "executor_registration_timeout", time.Minute, "how long a custom executor may take to subscribe")
	fl.DurationVar(&f.execGrace, "executor_shutdown_grace_period", 5*time.Second, "time an executor gets to shut down")
	fl.DurationVar(&f.regBackoff, "registration_backoff_factor", time.Second, "initial backoff of (re-)registration with the master")
	fl.StringVar(&f.recover, "recover", agent.RecoverReconnect, "after a restart: reconnect (re-attach the containers of frameworks that checkpoint) or cleanup (destroy them, report their tasks gone; a stopping agent then destroys every container)")
	fl.BoolVar(&f.strict, "strict", true, "refuse to start on a damaged checkpoint (false: log it, skip it and recover the rest)")
	fl.DurationVar(&f.execReregTimeout, "executor_reregistration_timeout", 2*time.Second, "how long a custom executor may take to re-subscribe after an agent restart before it is destroyed")
	fl.DurationVar(&f.recoveryTimeout, "recovery_timeout", 15*time.Minute, "bound on the agent's recovery, and how long checkpointing executors keep trying to re-subscribe to a restarting agent")
	fl.DurationVar(&f.updateRetryMin, "status_update_retry_interval_min", 10*time.Second, "first resend interval of an unacknowledged status update (doubling up to the max)")
	fl.DurationVar(&f.updateRetryMax, "status_update_retry_interval_max", 10*time.Minute, "longest resend interval of an unacknowledged status update")
	fl.DurationVar(&f.gcDelay, "gc_delay", gc.DefaultDelay, "how long the sandbox of an ended executor run is kept when the disk has room")
	fl.DurationVar(&f.diskWatchInterval, "disk_watch_interval", gc.DefaultDiskWatchInterval, "how often the work_dir's file system is measured to remove sandboxes early as it fills")
	fl.Float64Var(&f.gcDiskHeadroom, "gc_disk_headroom", gc.DefaultDiskHeadroom, "free-disk headroom in [0, 1]: a sandbox is kept at most gc_delay * max(0, 1 - gc_disk_headroom - disk usage)")
	fl.Float64Var(&f.gcInodeThreshold, "gc_inode_threshold", 0, "while more than this fraction of the work_dir's inodes is in use, the oldest sandboxes go first (0: off)")
	fl.IntVar(&f.gcMaxSandboxes, "gc_max_sandboxes", 0, "keep at most this many finished sandboxes, the oldest go first (0: no limit)")
	fl.IntVar(&f.gcParallelism, "gc_parallelism", gc.DefaultParallelism, "sandbox removals running at once")
	// The launchers' and isolators' flags are theirs (container.Settings):
	// whatever is linked in declares its own.
	f.settings = container.NewSettings()
	f.settings.Flags(fl)
	fl.StringVar(&f.bootIDPath, "boot_id_path", "", "file holding the boot id (default /proc/sys/kernel/random/boot_id); tests simulate reboots with it")
	_ = fl.MarkHidden("boot_id_path")
	_ = fl.MarkHidden("status_update_retry_interval_min")
	_ = fl.MarkHidden("status_update_retry_interval_max")
}

func (f *agentFlags) config(cmd *cobra.Command, log *slog.Logger) agent.Config {
	return agent.Config{
		Master: f.master, WorkDir: f.workDir, RuntimeDir: f.runtimeDir, IP: f.ip, Port: f.port,
		Hostname: f.hostname, Resources: f.resources, Isolation: f.isolation, Launcher: f.launcher,
		LauncherDir: f.launcherDir, CgroupsRoot: f.cgroupsRoot, SwitchUser: f.switchUser,
		HostPrivileges: f.hostPrivileges, CgroupsHierarchy: f.cgroupsHierarchy, Settings: f.settings,
		AuthenticateHTTPExecutors: f.authenticateExecutors, JWTSecretKeyFile: f.jwtSecretKey, CredentialFile: f.credential,
		AuthenticateHTTPReadonly: f.authenticateReadonly, HTTPCredentialsFile: f.httpCredentials, TLS: f.tls, ACLs: f.acls,
		ExecutorTLSCertFile: f.executorTLSCert, ExecutorTLSKeyFile: f.executorTLSKey,
		ExecutorRegistrationTimeout: f.execRegTimeout, ExecutorShutdownGracePeriod: f.execGrace,
		RegistrationBackoffFactor: f.regBackoff, Flags: flagValues(cmd), Log: log,
		Recover: f.recover, NonStrict: !f.strict, ExecutorReregistrationTimeout: f.execReregTimeout,
		RecoveryTimeout: f.recoveryTimeout, BootIDPath: f.bootIDPath,
		StatusUpdateRetryMin: f.updateRetryMin, StatusUpdateRetryMax: f.updateRetryMax,
		GCDelay: f.gcDelay, DiskWatchInterval: f.diskWatchInterval, GCDiskHeadroom: &f.gcDiskHeadroom,
		GCInodeThreshold: f.gcInodeThreshold, GCMaxSandboxes: f.gcMaxSandboxes, GCParallelism: f.gcParallelism,
	}
}

func newAgentCommand() *cobra.Command {
	var f agentFlags
	var logging string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: containers, isolation, the v1 executor API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := envFlags(cmd); err != nil {
				return err
			}
			log, err := newLogger(logging)
			if err != nil {
				return usageError(cmd, err)
			}
			a, err := agent.New(f.config(cmd, log))
			if err != nil {
				return startError(cmd, err)
			}
			ctx, cancel := signalContext()
			defer cancel()
			return a.Run(ctx)
		},
	}
	f.bind(cmd, true)
	cmd.Flags().StringVar(&logging, "logging_level", "INFO", "DEBUG, INFO, WARNING or ERROR")
	return cmd
}

func init() { register(newAgentCommand) }
