package cli

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/corral/corral/api/auth"
	"github.com/corral/corral/api/authz"
	"github.com/corral/corral/api/tlsconfig"
	"github.com/corral/corral/internal/sdnotify"
	"github.com/corral/corral/master"
	"github.com/spf13/cobra"
)

type masterFlags struct {
	ip                string
	port              int
	hostname          string
	heartbeat         time.Duration
	allocation        time.Duration
	agentReregTimeout time.Duration
	logging           string
	// authenticateFrameworks and authenticateHTTPFrameworks are Mesos'
	// two names; Corral's frameworks all speak HTTP, so either makes them
	// authenticate.
	authenticateFrameworks     bool
	authenticateHTTPFrameworks bool
	authenticateAgents         bool
	credentials                string
	authenticateReadonly       bool
	authenticateReadwrite      bool
	httpCredentials            string
	tls                        tlsconfig.Files
	acls                       string
}

func (f *masterFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.ip, "ip", "127.0.0.1", "IP address to listen on")
	cmd.Flags().IntVar(&f.port, "port", 5050, "port to listen on")
	cmd.Flags().StringVar(&f.hostname, "hostname", "", "hostname to advertise (default: the system's)")
	cmd.Flags().DurationVar(&f.heartbeat, "heartbeat_interval", 15*time.Second, "interval of HEARTBEAT events on idle event streams")
	cmd.Flags().DurationVar(&f.allocation, "allocation_interval", time.Second, "period of batch allocation")
	cmd.Flags().DurationVar(&f.agentReregTimeout, "agent_reregister_timeout", 10*time.Minute, "how long a disconnected agent's tasks are kept before they are reported lost")
	cmd.Flags().BoolVar(&f.authenticateHTTPFrameworks, "authenticate_http_frameworks", false, "frameworks must authenticate (HTTP basic, against --credentials) on every scheduler API call, and act only as their own principal")
	cmd.Flags().BoolVar(&f.authenticateFrameworks, "authenticate_frameworks", false, "the same as --authenticate_http_frameworks (Mesos' name for its older frameworks)")
	cmd.Flags().BoolVar(&f.authenticateAgents, "authenticate_agents", false, "agents must authenticate (HTTP basic, against --credentials) on the agent link; an agent ID can then be subscribed again only by the principal that registered it")
	cmd.Flags().BoolVar(&f.authenticateReadonly, "authenticate_http_readonly", false, "the read-only endpoints and the operator API (/state, /frameworks, /slaves, /tasks, /roles, /flags, /metrics/snapshot, /api/v1) want HTTP basic credentials from --http_credentials")
	cmd.Flags().BoolVar(&f.authenticateReadwrite, "authenticate_http_readwrite", false, "the endpoints that change the cluster (/teardown) want HTTP basic credentials from --http_credentials")
	cmd.Flags().StringVar(&f.httpCredentials, "http_credentials", "", "file of the principals and secrets of the HTTP endpoints (the --credentials format)")
	bindTLS(cmd.Flags(), &f.tls, "master")
	cmd.Flags().StringVar(&f.acls, "acls", "", `Mesos' local authorizer ACLs, as JSON or the path of a file holding it (file:// allowed): which principal may subscribe with which roles (register_frameworks), run tasks as which users (run_tasks) and see which frameworks, tasks, executors and flags (view_*)`)
	cmd.Flags().StringVar(&f.credentials, "credentials", "", `file of the principals and secrets frameworks and agents authenticate with: JSON {"credentials":[{"principal":"...","secret":"..."}]} or "principal secret" lines`)
}

func (f *masterFlags) config(cmd *cobra.Command, log *slog.Logger) (master.Config, error) {
	if net.ParseIP(f.ip) == nil {
		return master.Config{}, fmt.Errorf("--ip: %q is not an IP address", f.ip)
	}
	if f.port <= 0 || f.port > 65535 {
		return master.Config{}, fmt.Errorf("--port: %d is out of range", f.port)
	}
	if f.heartbeat <= 0 {
		return master.Config{}, fmt.Errorf("--heartbeat_interval must be positive")
	}
	frameworks := f.authenticateFrameworks || f.authenticateHTTPFrameworks
	flag := "--authenticate_http_frameworks"
	if !frameworks {
		flag = "--authenticate_agents"
	}
	creds, err := auth.LoadRequired(frameworks || f.authenticateAgents, flag, "--credentials", f.credentials)
	if err != nil {
		return master.Config{}, err
	}
	readonly, err := auth.LoadRequired(f.authenticateReadonly, "--authenticate_http_readonly", "--http_credentials", f.httpCredentials)
	if err != nil {
		return master.Config{}, err
	}
	readwrite, err := auth.LoadRequired(f.authenticateReadwrite, "--authenticate_http_readwrite", "--http_credentials", f.httpCredentials)
	if err != nil {
		return master.Config{}, err
	}
	serverTLS, err := f.tls.Server()
	if err != nil {
		return master.Config{}, err
	}
	acls, err := authz.Load(f.acls)
	if err != nil {
		return master.Config{}, err
	}
	if un := acls.Unenforced(); len(un) > 0 {
		log.Warn("--acls has rules for actions Corral has no operation for yet; they decide nothing", "actions", un)
	}
	var frameworkCreds, agentCreds auth.Credentials
	if frameworks {
		frameworkCreds = creds
	}
	if f.authenticateAgents {
		agentCreds = creds
	}
	return master.Config{
		Address: net.JoinHostPort(f.ip, strconv.Itoa(f.port)), Hostname: f.hostname,
		HeartbeatInterval: f.heartbeat, AllocationInterval: f.allocation, AgentReregisterTimeout: f.agentReregTimeout,
		FrameworkCredentials: frameworkCreds, AgentCredentials: agentCreds, ReadonlyCredentials: readonly,
		ReadwriteCredentials: readwrite,
		TLS:                  serverTLS, VerifyPeer: f.tls.VerifyPeer, ACLs: acls,
		Flags: flagValues(cmd), Log: log,
	}, nil
}

// serveMaster runs the master on its address until ctx ends.
func serveMaster(ctx context.Context, cfg master.Config) (func() error, error) {
	ln, err := net.Listen("tcp", cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("master listen: %w", err)
	}
	scheme := "http"
	if cfg.TLS != nil {
		ln, scheme = tls.NewListener(ln, cfg.TLS), "https"
	}
	m := master.New(cfg)
	// Broken-off TLS handshakes (port scans, TCP health checks) are debug
	// noise.
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(cfg.Log.Handler(), slog.LevelDebug)}
	go m.Run(ctx)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	cfg.Log.Info("master listening", "address", cfg.Address, "scheme", scheme)
	return func() error {
		select {
		case <-ctx.Done():
		case err := <-errc:
			return err
		}
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	}, nil
}

func newMasterCommand() *cobra.Command {
	var f masterFlags
	cmd := &cobra.Command{
		Use:   "master",
		Short: "Run the master: frameworks, agents, offers (v1 scheduler and operator APIs)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := envFlags(cmd); err != nil {
				return err
			}
			log, err := newLogger(f.logging)
			if err != nil {
				return usageError(cmd, err)
			}
			cfg, err := f.config(cmd, log)
			if err != nil {
				return usageError(cmd, err)
			}
			ctx, cancel := signalContext()
			defer cancel()
			wait, err := serveMaster(ctx, cfg)
			if err != nil {
				return err
			}
			// The unit is Type=notify: systemd holds `systemctl start` until
			// the master listens.
			if err := sdnotify.Ready(); err != nil {
				log.Warn("sd_notify READY", "err", err)
			}
			err = wait()
			if nerr := sdnotify.Stopping(); nerr != nil {
				log.Warn("sd_notify STOPPING", "err", nerr)
			}
			return err
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVar(&f.logging, "logging_level", "INFO", "DEBUG, INFO, WARNING or ERROR")
	return cmd
}

func init() { register(newMasterCommand) }
