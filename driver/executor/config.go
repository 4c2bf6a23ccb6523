package executor

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/duration"
	"github.com/corral/corral/api/tlsconfig"
)

// Defaults Mesos uses when the agent leaves a setting out.
const (
	DefaultShutdownGracePeriod    = 5 * time.Second
	DefaultRecoveryTimeout        = 15 * time.Minute
	DefaultSubscriptionBackoffMax = 2 * time.Second
)

// Config is what an executor learns from the agent through its environment.
type Config struct {
	FrameworkID string // MESOS_FRAMEWORK_ID
	ExecutorID  string // MESOS_EXECUTOR_ID
	Directory   string // MESOS_DIRECTORY: the sandbox as the agent sees it
	// Sandbox is MESOS_SANDBOX: the sandbox as the executor sees it (they
	// differ when the container has its own root file system). It defaults
	// to Directory.
	Sandbox string
	// AgentEndpoint is MESOS_AGENT_ENDPOINT, host:port of the agent's API.
	AgentEndpoint string
	// ShutdownGracePeriod is MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD: how long
	// the agent waits after SHUTDOWN before it kills the executor.
	ShutdownGracePeriod time.Duration
	// Checkpoint is MESOS_CHECKPOINT: whether the executor outlives an agent
	// restart. Without it a lost connection means shutting down.
	Checkpoint bool
	// RecoveryTimeout (MESOS_RECOVERY_TIMEOUT) bounds how long a
	// checkpointing executor tries to re-subscribe after losing its agent.
	RecoveryTimeout time.Duration
	// SubscriptionBackoffMax (MESOS_SUBSCRIPTION_BACKOFF_MAX) caps the delay
	// between re-subscription attempts.
	SubscriptionBackoffMax time.Duration
	// AuthenticationToken is MESOS_EXECUTOR_AUTHENTICATION_TOKEN: sent as
	// `Authorization: Bearer` on every call to an agent that wants its
	// executors authenticated. FromEnv removes it from the environment,
	// as Mesos' executor library does, so the executor's children do not
	// inherit it.
	AuthenticationToken string
	// Codec encodes calls and events; JSON when nil. CORRAL_EXECUTOR_CODEC
	// (json or protobuf) sets it from the environment so tests can run an
	// unmodified executor in either media type.
	Codec codec.Codec
	// TLS is read from LIBPROCESS_SSL_ENABLED, _CA_FILE, _CERT_FILE and
	// _KEY_FILE: with it on the driver speaks https to the agent, trusting
	// the CA file (else the system's roots).
	TLS tlsconfig.Files
}

// FromEnv reads the Config from the MESOS_* variables the agent sets for an
// executor. An error names the variable that is missing or invalid.
func FromEnv() (Config, error) {
	c, err := configFrom(os.LookupEnv)
	if err == nil {
		_ = os.Unsetenv(tokenEnv)
	}
	return c, err
}

// tokenEnv carries the executor's authentication token.
const tokenEnv = "MESOS_EXECUTOR_AUTHENTICATION_TOKEN"

func configFrom(lookup func(string) (string, bool)) (Config, error) {
	var c Config
	required := func(name string, dst *string) error {
		v, ok := lookup(name)
		if !ok || v == "" {
			return fmt.Errorf("executor environment: %s is not set", name)
		}
		*dst = v
		return nil
	}
	duration := func(name string, def time.Duration, must bool, dst *time.Duration) error {
		v, ok := lookup(name)
		if !ok || v == "" {
			if must {
				return fmt.Errorf("executor environment: %s is not set", name)
			}
			*dst = def
			return nil
		}
		d, err := duration.Parse(v)
		if err != nil {
			return fmt.Errorf("executor environment: %s: %w", name, err)
		}
		*dst = d
		return nil
	}
	for _, r := range []struct {
		name string
		dst  *string
	}{
		{"MESOS_FRAMEWORK_ID", &c.FrameworkID},
		{"MESOS_EXECUTOR_ID", &c.ExecutorID},
		{"MESOS_DIRECTORY", &c.Directory},
		{"MESOS_AGENT_ENDPOINT", &c.AgentEndpoint},
	} {
		if err := required(r.name, r.dst); err != nil {
			return Config{}, err
		}
	}
	if err := checkEndpoint(c.AgentEndpoint); err != nil {
		return Config{}, fmt.Errorf("executor environment: MESOS_AGENT_ENDPOINT: %w", err)
	}
	c.Sandbox = c.Directory
	if v, ok := lookup("MESOS_SANDBOX"); ok && v != "" {
		c.Sandbox = v
	}
	c.AuthenticationToken, _ = lookup(tokenEnv)
	if err := duration("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", DefaultShutdownGracePeriod, false, &c.ShutdownGracePeriod); err != nil {
		return Config{}, err
	}
	switch v, _ := lookup("MESOS_CHECKPOINT"); v {
	case "1", "true":
		c.Checkpoint = true
	case "", "0", "false":
	default:
		return Config{}, fmt.Errorf("executor environment: MESOS_CHECKPOINT: want 1 or 0, got %q", v)
	}
	// Mesos' own executor library insists on these two when checkpointing:
	// an agent that forgets them has a bug worth surfacing at once.
	c.RecoveryTimeout, c.SubscriptionBackoffMax = DefaultRecoveryTimeout, DefaultSubscriptionBackoffMax
	if c.Checkpoint {
		if err := duration("MESOS_RECOVERY_TIMEOUT", 0, true, &c.RecoveryTimeout); err != nil {
			return Config{}, err
		}
		if err := duration("MESOS_SUBSCRIPTION_BACKOFF_MAX", 0, true, &c.SubscriptionBackoffMax); err != nil {
			return Config{}, err
		}
	}
	tlsFiles, err := tlsconfig.FromEnv(lookup)
	if err != nil {
		return Config{}, fmt.Errorf("executor environment: %w", err)
	}
	c.TLS = tlsFiles
	switch v, _ := lookup("CORRAL_EXECUTOR_CODEC"); strings.ToLower(v) {
	case "", "json", codec.MediaTypeJSON:
		c.Codec = codec.JSON
	case "protobuf", "proto", codec.MediaTypeProtobuf:
		c.Codec = codec.Protobuf
	default:
		return Config{}, fmt.Errorf("executor environment: CORRAL_EXECUTOR_CODEC: want json or protobuf, got %q", v)
	}
	return c, nil
}

func checkEndpoint(ep string) error {
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		return fmt.Errorf("want host:port, got %q: %w", ep, err)
	}
	if host == "" {
		return fmt.Errorf("want host:port, got %q: missing host", ep)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("want host:port, got %q: bad port", ep)
	}
	return nil
}
