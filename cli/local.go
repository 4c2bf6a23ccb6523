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
	cmd := &cobra.Command{
		Use:   "local",
		Short: "Run a master and an agent in one process: a one-node cluster on embedded defaults",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := envFlags(cmd); err != nil {
				return err
			}
			log, err := newLogger(logging)
			if err != nil {
				return err
			}
			if workDir == "" {
				workDir = filepath.Join(os.TempDir(), "corral-local")
			}
			mcfg, err := mf.config(cmd, log)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			wait, err := serveMaster(ctx, mcfg)
			if err != nil {
				return err
			}
			af.master = net.JoinHostPort(mf.ip, strconv.Itoa(mf.port))
			af.workDir, af.ip, af.port, af.hostname = workDir, mf.ip, 0, mf.hostname
			a, err := agent.New(af.config(cmd, log))
			if err != nil {
				cancel()
				return fmt.Errorf("agent: %w", err)
			}
			agentErr := make(chan error, 1)
			go func() { agentErr <- a.Run(ctx) }()
			fmt.Fprintf(os.Stderr, "corral local: master at http://%s, agent at http://%s, work_dir %s\n", af.master, a.Endpoint(), workDir)
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
	cmd.Flags().StringVar(&workDir, "work_dir", "", "agent work directory (default $TMPDIR/corral-local)")
	cmd.Flags().StringVar(&logging, "logging_level", "INFO", "DEBUG, INFO, WARNING or ERROR")
	return cmd
}

func init() { register(newLocalCommand) }
