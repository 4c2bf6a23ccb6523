// Package cli holds the corral command's subcommands and their flags.
package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// Main runs the corral command line and returns the process exit code.
func Main(args []string) int {
	root := &cobra.Command{
		Use:           "corral",
		Short:         "Corral runs and isolates workloads on Linux nodes (Mesos v1 API compatible)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	for _, sub := range subcommands {
		root.AddCommand(sub())
	}
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "corral:", err)
		return exitCode(err)
	}
	return 0
}

// exitError carries a specific exit code out of a subcommand.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	if e, ok := err.(*exitError); ok {
		return e.code
	}
	return 1
}

// subcommands are added by each subcommand's file in its init, so each
// lives in its own file.
var subcommands []func() *cobra.Command

func register(sub func() *cobra.Command) { subcommands = append(subcommands, sub) }
