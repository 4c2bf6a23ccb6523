package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envFlags lets every flag be given as CORRAL_<FLAG> (upper case), as
// DESIGN.md promises; a flag on the command line wins.
func envFlags(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := "CORRAL_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if serr := cmd.Flags().Set(f.Name, v); serr != nil {
				err = fmt.Errorf("environment variable %s for --%s: %w", name, f.Name, serr)
			}
		}
	})
	return err
}

// flagValues lists every flag's value for /flags.
func flagValues(cmd *cobra.Command) map[string]string {
	out := map[string]string{}
	cmd.Flags().VisitAll(func(f *pflag.Flag) { out[f.Name] = f.Value.String() })
	return out
}

// newLogger writes text logs to stderr at the --logging_level (Mesos' names:
// INFO, WARNING, ERROR; DEBUG too).
func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	switch strings.ToUpper(level) {
	case "DEBUG":
		l = slog.LevelDebug
	case "", "INFO":
		l = slog.LevelInfo
	case "WARNING", "WARN":
		l = slog.LevelWarn
	case "ERROR":
		l = slog.LevelError
	default:
		return nil, fmt.Errorf("--logging_level: %q is not one of DEBUG, INFO, WARNING, ERROR", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

// signalContext is cancelled by SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}
