package e2e

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/tlsconfig"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/testsupport"
)

// TestTLS runs a cluster on mutual TLS with --tls_verify_peer: the agent
// registers presenting its certificate, a framework subscribes over https,
// a custom executor reaches its agent with only the CA it is given
// (LIBPROCESS_SSL_*), and what does not hold a certificate of the cluster's
// CA is refused: plain HTTP, a client without a certificate, one with
// another CA's certificate, one that trusts another CA.
func TestTLS(t *testing.T) {
	prefix := rootTest(t)
	bin := testExecutorBin(t)
	ca := testsupport.NewCA(t, prefix+"ca")
	// libprocess-based executors want a pair of their own: the agent hands
	// out this one, never its own.
	exCert, exKey := ca.Issue(t, "executors")
	c := startTLSCluster(t, prefix, ca, "--tls_verify_peer", "--executor_tls_cert_file", exCert, "--executor_tls_key_file", exKey)

	f := newFramework(t, c, "e2e-tls", codec.JSON)
	exec := &mesos.ExecutorInfo{
		ExecutorId: &mesos.ExecutorID{Value: proto.String(prefix + "tls-executor")},
		Type:       mesos.ExecutorInfo_CUSTOM.Enum(),
		Command:    &mesos.CommandInfo{Value: proto.String(bin), Shell: proto.Bool(false)},
		Resources:  mustResources(t, "cpus:0.1;mem:64"),
	}
	custom, env := prefix+"tls-custom", prefix+"tls-env"
	f.launch(&mesos.TaskInfo{
		Name: proto.String(custom), TaskId: &mesos.TaskID{Value: proto.String(custom)},
		Resources: mustResources(t, "cpus:0.1;mem:32"), Executor: exec, Data: []byte("echo over-tls; env"),
	}, commandTask(t, env, "env"))
	for id, h := range f.awaitTerminal(t, custom, env) {
		if h.last.GetState() != mesos.TaskState_TASK_FINISHED {
			t.Errorf("%s went %v %q, want TASK_FINISHED", id, h, h.last.GetMessage())
		}
	}
	executorEnv := readFile(t, filepath.Join(c.sandbox(t, prefix+"tls-executor"), "stdout"))
	if !strings.Contains(executorEnv, "over-tls") {
		t.Errorf("the custom executor's task did not run: stdout %q", executorEnv)
	}
	// An executor learns the CA and the executors' pair, never the agent's
	// certificate or key: a task could pass for the agent with them.
	for _, want := range []string{"LIBPROCESS_SSL_ENABLED=true", "LIBPROCESS_SSL_CA_FILE=" + ca.CAFile, "LIBPROCESS_SSL_CERT_FILE=" + exCert, "LIBPROCESS_SSL_KEY_FILE=" + exKey} {
		if !strings.Contains(executorEnv, want) {
			t.Errorf("the executor's environment lacks %s:\n%s", want, executorEnv)
		}
	}
	if strings.Contains(executorEnv, "node.pem") || strings.Contains(executorEnv, "node-key.pem") {
		t.Errorf("the executor's environment names the agent's certificate or key:\n%s", executorEnv)
	}
	// A command task does not talk to the agent and is not told to speak
	// TLS (a libprocess program among its processes would not start).
	if taskEnv := readFile(t, filepath.Join(c.sandbox(t, env), "stdout")); strings.Contains(taskEnv, "LIBPROCESS_SSL") {
		t.Errorf("a command task's environment has LIBPROCESS_SSL_*:\n%s", taskEnv)
	}

	agentAddr := c.agentAddr(t)
	other := testsupport.NewCA(t, prefix+"intruder")
	otherCert, otherKey := other.Issue(t, "intruder")
	anonymous := ca.HTTPClient(t, "", "")
	// Presented whatever the server asks for (Go's own client would leave
	// out a certificate the server's CA list does not name).
	forgedCfg, err := tlsconfig.Files{CAFile: ca.CAFile, CertFile: otherCert, KeyFile: otherKey}.Client()
	if err != nil {
		t.Fatal(err)
	}
	forged := &http.Client{Transport: tlsconfig.Transport(forgedCfg)}
	for _, tc := range []struct {
		name   string
		client *http.Client
		url    string
		want   int // 0: no answer at all
	}{
		{"plain HTTP to the master", http.DefaultClient, "http://" + c.master + "/state", http.StatusBadRequest},
		{"plain HTTP to the agent", http.DefaultClient, "http://" + agentAddr + "/state", http.StatusBadRequest},
		{"no certificate, master state", anonymous, c.url("/state"), http.StatusForbidden},
		{"no certificate, agent link", anonymous, c.url("/internal/v1/agent"), http.StatusForbidden},
		{"no certificate, agent state", anonymous, "https://" + agentAddr + "/state", http.StatusForbidden},
		{"no certificate, agent files", anonymous, "https://" + agentAddr + "/files/browse?path=/", http.StatusForbidden},
		{"no certificate, master health", anonymous, c.url("/health"), http.StatusOK},
		{"no certificate, agent health", anonymous, "https://" + agentAddr + "/slave(1)/health", http.StatusOK},
		{"no certificate, agent slave(1)/state", anonymous, "https://" + agentAddr + "/slave(1)/state", http.StatusForbidden},
		{"another CA's certificate, master", forged, c.url("/state"), 0},
		{"another CA's certificate, agent", forged, "https://" + agentAddr + "/state", 0},
		{"trusting another CA, master", other.HTTPClient(t, "", ""), c.url("/health"), 0},
		{"with the CA's certificate, agent state", c.http, "https://" + agentAddr + "/state", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := status(tc.client, tc.url)
			if got != tc.want {
				t.Errorf("GET %s: got %d (%v), want %d", tc.url, got, err, tc.want)
			}
			// Refused for the certificate, not by some other layer.
			if tc.want == http.StatusForbidden && !strings.Contains(fmt.Sprint(err), "client certificate") {
				t.Errorf("GET %s: refused with %v, want the certificate named", tc.url, err)
			}
		})
	}
}

// status is the HTTP status of a GET of url, 0 when there is none.
func status(hc *http.Client, url string) (int, error) {
	resp, err := hc.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return resp.StatusCode, fmt.Errorf("%s", strings.TrimSpace(string(b)))
}
