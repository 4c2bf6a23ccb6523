// Package cli holds the corral command's subcommands and their flags.
package cli

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/corral/corral/internal/version"
	"github.com/spf13/cobra"
)

// Exit codes, the same for every subcommand.
const (
	exitOK      = 0
	exitFailure = 1 // a runtime error; for corral run also a task that did not finish
	exitUsage   = 2 // a bad subcommand, flag, argument or CORRAL_* environment value
)

// exitCodesHelp ends every command's help.
const exitCodesHelp = `Exit status:
  0  success (corral run: the task ended in TASK_FINISHED)
  1  runtime failure (corral run: the task ended otherwise, or the run failed)
  2  usage error: an unknown subcommand or flag, a bad flag value or a bad
     CORRAL_<FLAG> environment value`

// Main runs the corral command line and returns the process exit code.
func Main(args []string) int {
	survivePipeClose()
	root := newRoot()
	root.SetArgs(args)
	// Whether a subcommand's RunE was reached: errors before it are cobra's
	// parsing (unknown subcommand, flag or argument), i.e. usage errors.
	ran := false
	for _, c := range root.Commands() {
		if run := c.RunE; run != nil {
			c.RunE = func(cmd *cobra.Command, a []string) error {
				ran = true
				return run(cmd, a)
			}
		}
	}
	cmd, err := root.ExecuteC()
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	var ee *exitError
	if !ran && !errors.As(err, &ee) {
		code = exitUsage
	}
	fmt.Fprintln(os.Stderr, "corral:", err)
	if code == exitUsage {
		if cmd == nil {
			cmd = root
		}
		fmt.Fprintf(os.Stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return code
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "corral",
		Short: "Corral runs and isolates workloads on Linux nodes (Mesos v1 API compatible)",
		Long: "Corral runs and isolates workloads on Linux nodes (Mesos v1 API compatible).\n\n" +
			"Every flag can also be given as the environment variable CORRAL_<FLAG>\n" +
			"(upper case, e.g. CORRAL_LOGGING_LEVEL=DEBUG); a flag on the command line wins.\n\n" +
			exitCodesHelp,
		Version:       versionLine(),
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		// Without a subcommand there is nothing to do: that is a usage
		// error, not a success, and the help says what there is.
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			_ = cmd.Help()
			return &exitError{code: exitUsage, err: errors.New("a subcommand is required")}
		},
	}
	root.SetVersionTemplate("corral {{.Version}}\n")
	// Every flag error (unknown, malformed) is a usage error; the hint to
	// --help is added by Main.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: err}
	})
	for _, sub := range subcommands {
		c := sub()
		if c.Long == "" {
			c.Long = c.Short + "."
		}
		c.Long += "\n\n" + exitCodesHelp
		root.AddCommand(c)
	}
	return root
}

// versionLine is what `corral version` and `corral --version` print after
// "corral ".
func versionLine() string {
	return fmt.Sprintf("%s (Mesos API %s; %s %s/%s)", version.Version, version.MesosCompat, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// survivePipeClose keeps the process alive when stdout or stderr is a pipe
// whose reader went away (`corral local | tee log`, then Ctrl-C kills tee
// first). Go's runtime kills a process that gets EPIPE on fd 1 or 2 by
// SIGPIPE unless SIGPIPE is notified; with it notified the write only fails,
// which logging ignores, so a shutdown under way finishes: the agent
// destroys its containers instead of dying between a freeze and a thaw.
// Notify, not Ignore: an ignored SIGPIPE would be inherited by the tasks
// across exec, a notified one is reset to the default for them.
func survivePipeClose() {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
}

// exitError carries a specific exit code out of a subcommand.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return exitFailure
}

// usageError marks err, a bad flag or environment value found by a
// subcommand's own checks, as a usage error, naming the environment
// variable when the flag came from one.
func usageError(cmd *cobra.Command, err error) error {
	return &exitError{code: exitUsage, err: explainEnv(cmd, err)}
}

// startError sorts an error of starting the agent or master: one that
// begins with a flag's name is that flag's bad value (the agent's and
// master's convention: "--resources: ..."), a usage error; anything else
// (a port in use, a cgroup that cannot be made) is a runtime failure.
func startError(cmd *cobra.Command, err error) error {
	if strings.HasPrefix(err.Error(), "--") {
		return usageError(cmd, err)
	}
	return &exitError{code: exitFailure, err: explainEnv(cmd, err)}
}

// subcommands are added by each subcommand's file in its init, so each
// lives in its own file.
var subcommands []func() *cobra.Command

func register(sub func() *cobra.Command) { subcommands = append(subcommands, sub) }
