package cli

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/corral/corral/agent"
	"github.com/spf13/cobra"
)

func newLocalCommand() *cobra.Command {
	var mf masterFlags
	var af agentFlags
	var workDir, logging string
	var agentPort int
	cmd := &cobra.Command{
		Use:   "local",
		Short: "Run a master and an agent in one process: a one-node cluster on embedded defaults",
		Long: `Run a master and an agent in one process: a one-node cluster on embedded
defaults. The master listens on --ip:--port, the agent on --ip:--agent_port;
both stop on SIGINT or SIGTERM, the agent destroying its containers first
(those of checkpointing frameworks are kept for the next start).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := envFlags(cmd); err != nil {
				return err
			}
			log, err := newLogger(logging)
			if err != nil {
				return usageError(cmd, err)
			}
			if agentPort < 0 || agentPort > 65535 {
				return usageError(cmd, fmt.Errorf("--agent_port: %d is out of range (0 picks a free port)", agentPort))
			}
			if agentPort != 0 && agentPort == mf.port {
				return usageError(cmd, fmt.Errorf("--agent_port %d is also the master's --port", agentPort))
			}
			if workDir == "" {
				return usageError(cmd, fmt.Errorf("--work_dir must not be empty"))
			}
			mcfg, err := mf.config(cmd, log)
			if err != nil {
				return usageError(cmd, err)
			}
			ctx, cancel := signalContext()
			defer cancel()
			wait, err := serveMaster(ctx, mcfg)
			if err != nil {
				return err
			}
			af.master = net.JoinHostPort(mf.ip, strconv.Itoa(mf.port))
			af.workDir, af.ip, af.port, af.hostname = workDir, mf.ip, agentPort, mf.hostname
			af.authenticateReadonly, af.httpCredentials = mf.authenticateReadonly, mf.httpCredentials
			// One certificate for both: the agent serves it and presents
			// it to the master, which the same CA verifies.
			af.tls = mf.tls
			af.acls = mf.acls
			a, err := agent.New(af.config(cmd, log))
			if err != nil {
				cancel()
				_ = wait()
				return startError(cmd, fmt.Errorf("%w (agent)", err))
			}
			agentErr := make(chan error, 1)
			go func() { agentErr <- a.Run(ctx) }()
			scheme := mf.tls.Scheme()
			fmt.Fprintf(os.Stderr, "corral local: master at %s://%s, agent at %s://%s, work_dir %s\n", scheme, af.master, scheme, a.Endpoint(), workDir)
			err = wait()
			cancel()
			if aerr := <-agentErr; err == nil {
				err = aerr
			}
			return err
		},
	}
	mf.bind(cmd)
	af.bind(cmd, false)
	cmd.Flags().IntVar(&agentPort, "agent_port", 0, "port of the agent's HTTP API (0 picks a free one)")
	cmd.Flags().StringVar(&workDir, "work_dir", filepath.Join(os.TempDir(), "corral-local"), "agent work directory: sandboxes and checkpoints")
	cmd.Flags().StringVar(&logging, "logging_level", "INFO", "DEBUG, INFO, WARNING or ERROR")
	return cmd
}

func init() { register(newLocalCommand) }
