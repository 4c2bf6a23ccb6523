package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/corral/corral/internal/testsupport"
)

// A task that fails shows why: corral run prints the end of its stderr,
// read through the agent's /files/read, found from the offer (here with the
// agent a process of its own, as on another host).
func TestRunShowsStderrOfFailedTask(t *testing.T) {
	prefix := rootTest(t)
	c := startCluster(t, prefix, clusterOpts{split: true})
	cases := []struct {
		name, command string
		stdout        []string // in stdout
		stderr        []string // in stderr
	}{
		{name: "missing-command", command: "no-such-command-" + prefix,
			stdout: []string{"TASK_FAILED", "exited with status 127"},
			stderr: []string{"Last line of the task's stderr (through http://", "no-such-command-" + prefix + ": not found"}},
		// Only the last ten lines: line 1..5 are gone, 6..15 shown.
		{name: "long-stderr", command: "for i in $(seq 1 15); do echo line-$i >&2; done; exit 4",
			stdout: []string{"TASK_FAILED", "status 4"},
			stderr: []string{"Last 10 lines of the task's stderr", "  line-6\n", "  line-15\n"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := corral(t, nil, "run", "--master", c.master, "--name", tc.name, "--command", tc.command)
			if r.code != 1 {
				t.Fatalf("corral run of a failing task: want exit 1, got %v", r)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(r.stdout, s) {
					t.Errorf("stdout lacks %q: %v", s, r)
				}
			}
			for _, s := range tc.stderr {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr lacks %q: %v", s, r)
				}
			}
			if strings.Contains(r.stderr, "line-5\n") {
				t.Errorf("stderr shows more than the last ten lines: %v", r)
			}
		})
	}
	// A task that finishes prints no stderr of its own.
	if r := corral(t, nil, "run", "--master", c.master, "--name", "ok", "--command", "echo fine >&2"); r.code != 0 || strings.Contains(r.stderr, "stderr") {
		t.Errorf("a finished task: want exit 0 and no stderr shown, got %v", r)
	}
}

// A task that asks for more than the cluster has is told what the cluster
// offers — once while the offers stay the same — and --timeout ends the
// wait with a clear message and exit 1.
func TestRunSaysWhatTheClusterOffers(t *testing.T) {
	prefix := rootTest(t)
	c := startCluster(t, prefix, clusterOpts{})
	cases := []struct {
		name, resources string
		offers          string // in the note
	}{
		{"cpus", "cpus:100;mem:32", "offers vm-host: cpus:2;mem:1024; still waiting (up to --timeout 3s)"},
		{"gpus", "cpus:0.1;mem:32;gpus:1", "cpus:2;mem:1024, no gpus"},
	}
	host := regexp.MustCompile(`offers [^:;]+: `)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := corral(t, nil, "run", "--master", c.master, "--name", tc.name, "--command", "true", "--resources", tc.resources, "--timeout", "3s")
			if r.code != 1 {
				t.Fatalf("want exit 1 at --timeout, got %v", r)
			}
			note := "Waiting for an offer with " + tc.resources + "; the cluster offers"
			if n := strings.Count(r.stderr, note); n != 1 {
				t.Errorf("stderr has %q %d times, want once (the offers do not change): %v", note, n, r)
			}
			got := host.ReplaceAllString(r.stderr, "offers vm-host: ")
			if !strings.Contains(got, tc.offers) {
				t.Errorf("stderr lacks %q: %v", tc.offers, r)
			}
			if !strings.Contains(r.stderr, "corral: --timeout 3s passed before an offer with "+tc.resources+" arrived (the cluster offers") {
				t.Errorf("stderr lacks the timeout's reason: %v", r)
			}
		})
	}
}

// Against a cluster whose frameworks and agents must authenticate (the
// agent with its --credential), corral run gets in with --principal and
// its secret (from CORRAL_SECRET, off the command line), and is refused
// with a clear message without them.
func TestRunAuthenticates(t *testing.T) {
	prefix := rootTest(t)
	dir := t.TempDir()
	creds, agentCred := filepath.Join(dir, "credentials"), filepath.Join(dir, "agent-credential")
	if err := os.WriteFile(creds, []byte(`{"credentials":[{"principal":"runner","secret":"s3cret"},{"principal":"agent","secret":"a-secret"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(agentCred, []byte("agent a-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, prefix, clusterOpts{extra: []string{"--authenticate_http_frameworks", "--authenticate_agents", "--credentials", creds, "--credential", agentCred,
		"--authenticate_http_readonly", "--http_credentials", creds}, http: testsupport.AsPrincipal("runner", "s3cret")})
	if r := corral(t, []string{"CORRAL_SECRET=s3cret"}, "run", "--master", c.master, "--name", "authed", "--principal", "runner", "--command", "true"); r.code != 0 || !strings.Contains(r.stdout, "TASK_FINISHED") {
		t.Fatalf("corral run with credentials: want TASK_FINISHED and exit 0, got %v", r)
	}
	// The agent's /files wants credentials too: corral run sends the
	// framework's to show a failed task's stderr.
	if r := corral(t, []string{"CORRAL_SECRET=s3cret"}, "run", "--master", c.master, "--name", "authed-fail", "--principal", "runner", "--command", "echo authed-stderr >&2; exit 3"); r.code != 1 || !strings.Contains(r.stderr, "authed-stderr") {
		t.Errorf("a failed task with credentials: want exit 1 and its stderr shown, got %v", r)
	}
	for name, env := range map[string][]string{"no credentials": nil, "wrong secret": {"CORRAL_SECRET=wrong"}} {
		args := []string{"run", "--master", c.master, "--name", "refused", "--command", "true", "--timeout", "20s"}
		if env != nil {
			args = append(args, "--principal", "runner")
		}
		if r := corral(t, env, args...); r.code == 0 || !strings.Contains(r.stderr, "401") || strings.Contains(r.stdout, "TASK_") {
			t.Errorf("corral run with %s: want a refusal naming 401 and no task, got %v", name, r)
		}
	}
}

// corral run speaks https to a TLS master and its agent with
// --tls_ca_file (a failed task's stderr comes through the agent's https
// /files/read), and gives up on a master whose certificate it cannot
// verify.
func TestRunTLS(t *testing.T) {
	prefix := rootTest(t)
	ca := testsupport.NewCA(t, prefix+"ca")
	c := startCluster(t, prefix, clusterOpts{split: true, tls: ca})
	if r := corral(t, nil, "run", "--master", c.master, "--tls_ca_file", ca.CAFile, "--name", "tls", "--command", "true"); r.code != 0 || !strings.Contains(r.stdout, "TASK_FINISHED") {
		t.Fatalf("corral run over TLS: want TASK_FINISHED and exit 0, got %v", r)
	}
	r := corral(t, nil, "run", "--master", c.master, "--tls_ca_file", ca.CAFile, "--name", "tls-fail", "--command", "echo tls-stderr >&2; exit 2")
	if r.code != 1 || !strings.Contains(r.stderr, "(through https://") || !strings.Contains(r.stderr, "tls-stderr") {
		t.Errorf("a failed task over TLS: want exit 1 and its stderr through https, got %v", r)
	}
	for name, tc := range map[string]struct {
		args []string
		says string // in stderr
	}{
		"plain http":      {[]string{"--master", "http://" + c.master}, "HTTP request to an HTTPS server"},
		"unknown CA":      {[]string{"--master", "https://" + c.master}, "failed to verify certificate"},
		"another CA file": {[]string{"--master", c.master, "--tls_ca_file", testsupport.NewCA(t, prefix+"other").CAFile}, "failed to verify certificate"},
	} {
		r := corral(t, nil, append([]string{"run", "--name", "refused", "--command", "true", "--timeout", "8s"}, tc.args...)...)
		if r.code == 0 || strings.Contains(r.stdout, "TASK_") || !strings.Contains(r.stderr, tc.says) {
			t.Errorf("corral run with %s: want a refusal saying %q and no task, got %v", name, tc.says, r)
		}
	}
}
