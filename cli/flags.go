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

	"github.com/corral/corral/api/tlsconfig"
)

// envAnnotation marks, on a flag, the environment variable that set it.
const envAnnotation = "corral_env"

// envFlags lets every flag be given as CORRAL_<FLAG> (upper case), as
// DESIGN.md promises; a flag on the command line wins. Each flag set this
// way remembers its variable, so later checks can name it (explainEnv).
func envFlags(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := envName(f.Name)
		if v, ok := os.LookupEnv(name); ok {
			if serr := cmd.Flags().Set(f.Name, v); serr != nil {
				err = usageError(cmd, fmt.Errorf("environment variable %s=%q (for --%s): %w", name, v, f.Name, serr))
				return
			}
			if f.Annotations == nil {
				f.Annotations = map[string][]string{}
			}
			f.Annotations[envAnnotation] = []string{name}
		}
	})
	return err
}

func envName(flag string) string {
	return "CORRAL_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// explainEnv adds to err, a complaint about a flag's value that names the
// flag as --<name>, which environment variable gave that value: a user who
// never typed the flag must learn where it came from.
func explainEnv(cmd *cobra.Command, err error) error {
	if err == nil || cmd == nil {
		return err
	}
	msg := err.Error()
	var vars []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if v := f.Annotations[envAnnotation]; len(v) > 0 && namesFlag(msg, f.Name) && !strings.Contains(msg, v[0]) {
			vars = append(vars, fmt.Sprintf("--%s was set by the environment variable %s", f.Name, v[0]))
		}
	})
	if len(vars) == 0 {
		return err
	}
	return fmt.Errorf("%w (%s)", err, strings.Join(vars, "; "))
}

// namesFlag reports whether msg mentions --name as a whole flag name (not
// --name_suffix).
func namesFlag(msg, name string) bool {
	for rest := msg; ; {
		i := strings.Index(rest, "--"+name)
		if i < 0 {
			return false
		}
		rest = rest[i+2+len(name):]
		if rest == "" || !(rest[0] == '_' || rest[0] == '-' || isAlnum(rest[0])) {
			return true
		}
	}
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
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

// bindTLS declares the --tls_* flags of a server (the master, an agent):
// who names it in the help.
func bindTLS(fl *pflag.FlagSet, f *tlsconfig.Files, who string) {
	fl.StringVar(&f.CertFile, "tls_cert_file", "", "PEM certificate (chain) the "+who+" serves https with and presents to its peers; re-read when it changes")
	fl.StringVar(&f.KeyFile, "tls_key_file", "", "PEM private key of --tls_cert_file")
	caHelp := "PEM certificates of the authority that signs the peers: the servers the " + who + " trusts and the client certificates it verifies"
	if who == "master" {
		caHelp += " (the master then wants one from every agent)"
	}
	fl.StringVar(&f.CAFile, "tls_ca_file", "", caHelp)
	fl.BoolVar(&f.VerifyPeer, "tls_verify_peer", false, "want a client certificate signed by --tls_ca_file on every endpoint but /health (and an agent's executor API, whose executors hold tokens)")
}
