package executor

import (
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/tlsconfig"
)

func baseEnv() map[string]string {
	return map[string]string{
		"MESOS_FRAMEWORK_ID":                   "fw-1",
		"MESOS_EXECUTOR_ID":                    "ex-1",
		"MESOS_DIRECTORY":                      "/var/lib/corral/slaves/a/frameworks/fw-1/executors/ex-1/runs/c1",
		"MESOS_SANDBOX":                        "/mnt/mesos/sandbox",
		"MESOS_AGENT_ENDPOINT":                 "127.0.0.1:5051",
		"MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": "5secs",
		"MESOS_CHECKPOINT":                     "0",
	}
}

func lookupIn(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func TestFromEnv(t *testing.T) {
	env := baseEnv()
	env["MESOS_CHECKPOINT"] = "1"
	env["MESOS_RECOVERY_TIMEOUT"] = "15mins"
	env["MESOS_SUBSCRIPTION_BACKOFF_MAX"] = "2secs"
	env["CORRAL_EXECUTOR_CODEC"] = "protobuf"
	env["MESOS_EXECUTOR_AUTHENTICATION_TOKEN"] = "tok"
	env["LIBPROCESS_SSL_ENABLED"] = "true"
	env["LIBPROCESS_SSL_CA_FILE"] = "/etc/corral/ca.pem"
	got, err := configFrom(lookupIn(env))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		FrameworkID: "fw-1", ExecutorID: "ex-1",
		Directory: env["MESOS_DIRECTORY"], Sandbox: "/mnt/mesos/sandbox",
		AgentEndpoint: "127.0.0.1:5051", ShutdownGracePeriod: 5 * time.Second,
		Checkpoint: true, RecoveryTimeout: 15 * time.Minute, SubscriptionBackoffMax: 2 * time.Second,
		Codec: codec.Protobuf, AuthenticationToken: "tok",
		TLS: tlsconfig.Files{On: true, CAFile: "/etc/corral/ca.pem"},
	}
	if got != want {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestFromEnvDefaults(t *testing.T) {
	env := baseEnv()
	delete(env, "MESOS_SANDBOX")
	delete(env, "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD")
	delete(env, "MESOS_CHECKPOINT")
	got, err := configFrom(lookupIn(env))
	if err != nil {
		t.Fatal(err)
	}
	if got.Sandbox != got.Directory || got.ShutdownGracePeriod != DefaultShutdownGracePeriod ||
		got.Checkpoint || got.Codec != codec.JSON || got.RecoveryTimeout != DefaultRecoveryTimeout || got.TLS.Enabled() {
		t.Fatalf("defaults not applied: %+v", got)
	}
}

func TestFromEnvErrors(t *testing.T) {
	tests := []struct {
		name    string
		set     map[string]string
		unset   []string
		wantErr string
	}{
		{name: "no framework", unset: []string{"MESOS_FRAMEWORK_ID"}, wantErr: "MESOS_FRAMEWORK_ID is not set"},
		{name: "empty executor", set: map[string]string{"MESOS_EXECUTOR_ID": ""}, wantErr: "MESOS_EXECUTOR_ID is not set"},
		{name: "no directory", unset: []string{"MESOS_DIRECTORY"}, wantErr: "MESOS_DIRECTORY is not set"},
		{name: "no endpoint", unset: []string{"MESOS_AGENT_ENDPOINT"}, wantErr: "MESOS_AGENT_ENDPOINT is not set"},
		{name: "endpoint without port", set: map[string]string{"MESOS_AGENT_ENDPOINT": "127.0.0.1"}, wantErr: "MESOS_AGENT_ENDPOINT: want host:port"},
		{name: "endpoint as URL", set: map[string]string{"MESOS_AGENT_ENDPOINT": "http://127.0.0.1:5051"}, wantErr: "MESOS_AGENT_ENDPOINT: want host:port"},
		{name: "endpoint bad port", set: map[string]string{"MESOS_AGENT_ENDPOINT": "127.0.0.1:http"}, wantErr: "bad port"},
		{name: "go duration", set: map[string]string{"MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": "5s"}, wantErr: `MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD: invalid Mesos duration "5s"`},
		{name: "bad checkpoint", set: map[string]string{"MESOS_CHECKPOINT": "yes"}, wantErr: `MESOS_CHECKPOINT: want 1 or 0, got "yes"`},
		{name: "checkpoint without recovery timeout", set: map[string]string{"MESOS_CHECKPOINT": "1", "MESOS_SUBSCRIPTION_BACKOFF_MAX": "2secs"}, wantErr: "MESOS_RECOVERY_TIMEOUT is not set"},
		{name: "checkpoint without backoff", set: map[string]string{"MESOS_CHECKPOINT": "1", "MESOS_RECOVERY_TIMEOUT": "15mins"}, wantErr: "MESOS_SUBSCRIPTION_BACKOFF_MAX is not set"},
		{name: "bad recovery timeout", set: map[string]string{"MESOS_CHECKPOINT": "1", "MESOS_RECOVERY_TIMEOUT": "soon", "MESOS_SUBSCRIPTION_BACKOFF_MAX": "2secs"}, wantErr: "MESOS_RECOVERY_TIMEOUT: invalid Mesos duration"},
		{name: "bad TLS switch", set: map[string]string{"LIBPROCESS_SSL_ENABLED": "yes"}, wantErr: `LIBPROCESS_SSL_ENABLED: want true or false, got "yes"`},
		{name: "TLS certificate without key", set: map[string]string{"LIBPROCESS_SSL_ENABLED": "1", "LIBPROCESS_SSL_CERT_FILE": "/c.pem"}, wantErr: "LIBPROCESS_SSL_CERT_FILE and LIBPROCESS_SSL_KEY_FILE come together"},
		{name: "bad codec", set: map[string]string{"CORRAL_EXECUTOR_CODEC": "xml"}, wantErr: `CORRAL_EXECUTOR_CODEC: want json or protobuf, got "xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := baseEnv()
			maps.Copy(env, tt.set)
			for _, k := range tt.unset {
				delete(env, k)
			}
			_, err := configFrom(lookupIn(env))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v; want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// FromEnv reads the process environment.
func TestFromEnvProcess(t *testing.T) {
	for k, v := range baseEnv() {
		t.Setenv(k, v)
	}
	t.Setenv("CORRAL_EXECUTOR_CODEC", "")
	c, err := FromEnv()
	if err != nil || c.ExecutorID != "ex-1" {
		t.Fatalf("FromEnv() = %+v, %v", c, err)
	}
}

// FromEnv takes the token out of the environment: the executor's own
// children do not inherit it (as Mesos' executor library).
func TestFromEnvRemovesTheToken(t *testing.T) {
	for k, v := range baseEnv() {
		t.Setenv(k, v)
	}
	t.Setenv("MESOS_EXECUTOR_AUTHENTICATION_TOKEN", "tok")
	c, err := FromEnv()
	if err != nil || c.AuthenticationToken != "tok" {
		t.Fatalf("%+v %v", c, err)
	}
	if v, ok := os.LookupEnv("MESOS_EXECUTOR_AUTHENTICATION_TOKEN"); ok {
		t.Fatalf("the token is still in the environment: %q", v)
	}
}
