package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/corral/corral/internal/testsupport"
)

// The command line as a new user meets it: versions, a wrong flag or
// subcommand, a bad environment value, each with one exit code across
// subcommands (0 ok, 1 runtime failure, 2 usage error).
func TestUsage(t *testing.T) {
	version := regexp.MustCompile(`^corral \S+ \(Mesos API 1\.\d+\.\d+; go\S+ \w+/\w+\)\n$`)
	cases := []struct {
		name   string
		env    []string
		args   []string
		code   int
		stdout *regexp.Regexp
		stderr []string
		not    string // not in stderr
	}{
		{name: "version", args: []string{"version"}, stdout: version},
		{name: "--version", args: []string{"--version"}, stdout: version},
		{name: "no subcommand", args: nil, code: 2, stderr: []string{"a subcommand is required", "Run 'corral --help' for usage."}},
		{name: "unknown subcommand", args: []string{"lokal"}, code: 2, stderr: []string{`unknown command "lokal"`, "Run 'corral --help' for usage."}},
		{name: "unknown flag run", args: []string{"run", "--bogus"}, code: 2, stderr: []string{"unknown flag: --bogus", "Run 'corral run --help' for usage."}},
		{name: "unknown flag master", args: []string{"master", "--bogus"}, code: 2, stderr: []string{"unknown flag: --bogus", "Run 'corral master --help' for usage."}},
		{name: "unknown flag agent", args: []string{"agent", "--bogus"}, code: 2, stderr: []string{"Run 'corral agent --help' for usage."}},
		{name: "unknown flag local", args: []string{"local", "--bogus"}, code: 2, stderr: []string{"Run 'corral local --help' for usage."}},
		{name: "unknown flag version", args: []string{"version", "--bogus"}, code: 2, stderr: []string{"Run 'corral version --help' for usage."}},
		{name: "stray argument", args: []string{"master", "extra"}, code: 2, stderr: []string{`unknown command "extra"`}},
		{name: "bad flag value", args: []string{"master", "--port", "abc"}, code: 2, stderr: []string{`invalid argument "abc" for "--port"`}},
		{name: "bad checked value", args: []string{"master", "--logging_level", "bogus"}, code: 2, stderr: []string{`--logging_level: "bogus" is not one of`}},
		{name: "missing flag run", args: []string{"run", "--name", "x", "--command", "true"}, code: 2, stderr: []string{"--master is required"}},
		{name: "missing flag agent", args: []string{"agent"}, code: 2, stderr: []string{"--master is required"}},
		{name: "bad agent port", args: []string{"local", "--agent_port", "70000"}, code: 2, stderr: []string{"--agent_port: 70000 is out of range"}},
		{name: "principal without secret", args: []string{"run", "--master", "127.0.0.1:1", "--name", "x", "--command", "true", "--principal", "p"}, code: 2,
			stderr: []string{"--principal needs --secret (or CORRAL_SECRET)"}},
		{name: "executor authentication without a key", args: []string{"agent", "--master", "127.0.0.1:1", "--work_dir", "/nonexistent", "--authenticate_http_executors"}, code: 2,
			stderr: []string{"--authenticate_http_executors needs --jwt_secret_key"}},
		{name: "readonly authentication without credentials", args: []string{"master", "--authenticate_http_readonly"}, code: 2,
			stderr: []string{"--authenticate_http_readonly needs --http_credentials"}},
		{name: "authentication without credentials", args: []string{"master", "--authenticate_http_frameworks"}, code: 2,
			stderr: []string{"--authenticate_http_frameworks needs --credentials"}},
		{name: "missing credentials file", args: []string{"master", "--authenticate_frameworks", "--credentials", "/nonexistent/creds"}, code: 2,
			stderr: []string{"--credentials: ", "/nonexistent/creds"}},
		{name: "certificate without key", args: []string{"master", "--tls_cert_file", "/nonexistent/cert.pem"}, code: 2,
			stderr: []string{"--tls_cert_file needs --tls_key_file"}},
		{name: "CA without certificate", args: []string{"master", "--tls_ca_file", "/nonexistent/ca.pem"}, code: 2,
			stderr: []string{"--tls_ca_file needs --tls_cert_file and --tls_key_file"}},
		{name: "verify peer without CA", args: []string{"local", "--tls_verify_peer"}, code: 2,
			stderr: []string{"--tls_verify_peer needs --tls_ca_file"}},
		{name: "missing certificate agent", args: []string{"agent", "--master", "127.0.0.1:1", "--work_dir", "/nonexistent", "--tls_cert_file", "/nonexistent/c.pem", "--tls_key_file", "/nonexistent/k.pem"}, code: 2,
			stderr: []string{"--tls_cert_file", "/nonexistent/c.pem"}},
		{name: "missing CA run", args: []string{"run", "--master", "127.0.0.1:1", "--name", "x", "--command", "true", "--tls_ca_file", "/nonexistent/ca.pem"}, code: 2,
			stderr: []string{"--tls_ca_file", "/nonexistent/ca.pem"}},
		{name: "verify peer alone agent", args: []string{"agent", "--master", "127.0.0.1:1", "--work_dir", "/nonexistent", "--tls_verify_peer"}, code: 2,
			stderr: []string{"--tls_verify_peer needs --tls_ca_file"}},
		{name: "executor pair without TLS", args: []string{"agent", "--master", "127.0.0.1:1", "--work_dir", "/nonexistent", "--executor_tls_cert_file", "/e.pem", "--executor_tls_key_file", "/k.pem"}, code: 2,
			stderr: []string{"--executor_tls_cert_file and --executor_tls_key_file need --tls_cert_file"}},
		{name: "plain master with TLS run", args: []string{"run", "--master", "http://127.0.0.1:1", "--name", "x", "--command", "true", "--tls_ca_file", "/nonexistent/ca.pem"}, code: 2,
			stderr: []string{"--master http://127.0.0.1:1 is plain HTTP"}},
		// Environment values: the error names the variable.
		{name: "env logging level master", env: []string{"CORRAL_LOGGING_LEVEL=bogus"}, args: []string{"master"}, code: 2,
			stderr: []string{"CORRAL_LOGGING_LEVEL", "--logging_level"}},
		{name: "env logging level run", env: []string{"CORRAL_LOGGING_LEVEL=bogus"}, args: []string{"run", "--master", "127.0.0.1:1", "--name", "x", "--command", "true"}, code: 2,
			stderr: []string{"CORRAL_LOGGING_LEVEL"}},
		{name: "env logging level local", env: []string{"CORRAL_LOGGING_LEVEL=bogus"}, args: []string{"local"}, code: 2,
			stderr: []string{"CORRAL_LOGGING_LEVEL"}},
		{name: "env logging level agent", env: []string{"CORRAL_LOGGING_LEVEL=bogus"}, args: []string{"agent", "--master", "127.0.0.1:1", "--work_dir", "/nonexistent"}, code: 2,
			stderr: []string{"CORRAL_LOGGING_LEVEL"}},
		{name: "env unparsable", env: []string{"CORRAL_PORT=abc"}, args: []string{"master"}, code: 2, stderr: []string{"CORRAL_PORT", "--port"}},
		{name: "env master", env: []string{"CORRAL_MASTER=nohostport"}, args: []string{"run", "--name", "x", "--command", "true"}, code: 2,
			stderr: []string{"CORRAL_MASTER", "--master"}},
		{name: "env agent value", env: []string{"CORRAL_CGROUPS_BLKIO_WEIGHT=5"}, args: []string{"agent", "--master", "127.0.0.1:1", "--work_dir", "/nonexistent"}, code: 2,
			stderr: []string{"--cgroups_blkio_weight", "CORRAL_CGROUPS_BLKIO_WEIGHT"}},
		// The command line wins over the environment, and an error about
		// the command line's value blames no variable.
		{name: "flag over env", env: []string{"CORRAL_PORT=abc"}, args: []string{"master", "--port", "0"}, code: 2,
			stderr: []string{"--port: 0 is out of range"}, not: "CORRAL_PORT"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := corral(t, tc.env, tc.args...)
			if r.code != tc.code {
				t.Fatalf("corral %q (env %q): want exit %d, got %v", tc.args, tc.env, tc.code, r)
			}
			if tc.stdout != nil && !tc.stdout.MatchString(r.stdout) {
				t.Errorf("stdout does not match %v: %v", tc.stdout, r)
			}
			for _, s := range tc.stderr {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr lacks %q: %v", s, r)
				}
			}
			if tc.not != "" && strings.Contains(r.stderr, tc.not) {
				t.Errorf("stderr has %q: %v", tc.not, r)
			}
			if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
				t.Errorf("crashed: %v", r)
			}
		})
	}
}

// Every command's help documents the exit codes, and corral local's shows
// where its work_dir is unless told.
func TestHelp(t *testing.T) {
	for _, sub := range []string{"", "run", "local", "master", "agent", "version"} {
		args := []string{"--help"}
		if sub != "" {
			args = []string{sub, "--help"}
		}
		r := corral(t, nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Exit status:") || !strings.Contains(r.stdout, "2  usage error") {
			t.Errorf("corral %s --help: want exit 0 and the exit codes documented, got %v", sub, r)
		}
	}
	r := corral(t, nil, "local", "--help")
	want := `(default "` + filepath.Join(os.TempDir(), "corral-local") + `")`
	if !regexp.MustCompile(`--work_dir string .*` + regexp.QuoteMeta(want)).MatchString(r.stdout) {
		t.Errorf("corral local --help does not show the --work_dir default %s: %v", want, r)
	}
	if !strings.Contains(r.stdout, "--agent_port") {
		t.Errorf("corral local --help lacks --agent_port: %v", r)
	}
}

// corral run against a master that is not there says so once, plainly,
// after the first failures (not a WARN line per retry for ever), and
// --timeout ends it with exit 1.
func TestRunUnreachableMaster(t *testing.T) {
	master := "127.0.0.1:" + itoa(testsupport.FreePort(t)) // nothing listens there now
	start := time.Now()
	r := corral(t, nil, "run", "--master", master, "--name", "x", "--command", "true", "--timeout", "6s")
	if r.code != 1 {
		t.Fatalf("want exit 1 at --timeout, got %v", r)
	}
	note := "The master at " + master + " is unreachable (connect: connection refused); still retrying (up to --timeout 6s)"
	if n := strings.Count(r.stderr, note); n != 1 {
		t.Errorf("stderr has %q %d times, want once: %v", note, n, r)
	}
	// The driver's retry warnings stop once the user has been told.
	if _, after, ok := strings.Cut(r.stderr, note); ok && strings.Contains(after, "subscribing failed; retrying") {
		t.Errorf("retry warnings after the plain note, want them quiet: %v", r)
	}
	if !strings.Contains(r.stderr, "corral: --timeout 6s passed before the master "+master+" accepted the framework: it is unreachable") {
		t.Errorf("stderr lacks the timeout's reason: %v", r)
	}
	if time.Since(start) > time.Minute {
		t.Errorf("corral run took %v to give up after --timeout 6s", time.Since(start))
	}
}
