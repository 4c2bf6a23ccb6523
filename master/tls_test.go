package master_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/corral/corral/api/tlsconfig"
	"github.com/corral/corral/internal/testsupport"
	"github.com/corral/corral/master"
	"github.com/corral/corral/master/mastertest"
)

// TestTLSPeers: with a CA the agent link wants a client certificate that
// CA signed (an intruder cannot register as an agent and receive tasks),
// and --tls_verify_peer wants one everywhere but /health.
func TestTLSPeers(t *testing.T) {
	ca, other := testsupport.NewCA(t, "corral"), testsupport.NewCA(t, "intruder")
	cert, key := ca.Issue(t, "master")
	agentCert, agentKey := ca.Issue(t, "agent")
	badCert, badKey := other.Issue(t, "agent")
	good := tlsconfig.Files{CAFile: ca.CAFile, CertFile: agentCert, KeyFile: agentKey}
	anonymous := tlsconfig.Files{CAFile: ca.CAFile}
	forged := tlsconfig.Files{CAFile: ca.CAFile, CertFile: badCert, KeyFile: badKey}
	const (
		refused   = -1 // the handshake fails
		forbidden = http.StatusForbidden
		passed    = 0 // past the certificate check: any other answer
	)
	for _, tc := range []struct {
		name       string
		verifyPeer bool
		client     tlsconfig.Files
		path       string
		want       int
	}{
		{"agent link, agent certificate", false, good, "/internal/v1/agent", passed},
		{"agent link, no certificate", false, anonymous, "/internal/v1/agent", forbidden},
		{"agent link, another CA's certificate", false, forged, "/internal/v1/agent", refused},
		{"scheduler, no certificate", false, anonymous, "/api/v1/scheduler", passed},
		{"scheduler, no certificate, verify_peer", true, anonymous, "/api/v1/scheduler", forbidden},
		{"state, no certificate, verify_peer", true, anonymous, "/state", forbidden},
		{"state, certificate, verify_peer", true, good, "/state", passed},
		{"health, no certificate, verify_peer", true, anonymous, "/health", passed},
		{"master/health, no certificate, verify_peer", true, anonymous, "/master/health", passed},
		{"master/state, no certificate, verify_peer", true, anonymous, "/master/state", forbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, err := tlsconfig.Files{CertFile: cert, KeyFile: key, CAFile: ca.CAFile, VerifyPeer: tc.verifyPeer}.Server()
			if err != nil {
				t.Fatal(err)
			}
			addr, _ := mastertest.Start(t, master.Config{TLS: server, VerifyPeer: tc.verifyPeer, Log: quietLog()})
			clientCfg, err := tc.client.Client()
			if err != nil {
				t.Fatal(err)
			}
			c := &http.Client{Transport: tlsconfig.Transport(clientCfg), Timeout: 10 * time.Second}
			defer c.CloseIdleConnections()
			method := http.MethodGet
			if strings.HasPrefix(tc.path, "/internal/") || strings.HasPrefix(tc.path, "/api/") {
				method = http.MethodPost
			}
			req, _ := http.NewRequest(method, "https://"+addr+tc.path, strings.NewReader("{}"))
			req.Header.Set("Content-Type", "application/json")
			resp, err := c.Do(req)
			if tc.want == refused {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("a certificate of another CA got an answer: %s", resp.Status)
				}
				if !strings.Contains(err.Error(), "certificate") {
					t.Fatalf("refused for another reason than the certificate: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			// The agent link answers 403 of its own to a call before
			// SUBSCRIBE: the certificate check is told by its message.
			byCert := resp.StatusCode == forbidden && strings.Contains(string(body), "client certificate")
			switch {
			case tc.want == forbidden && !byCert:
				t.Fatalf("got %s (%s), want 403 for the missing certificate", resp.Status, body)
			case tc.want == passed && byCert:
				t.Fatalf("refused: %s", body)
			case tc.want == passed && method == http.MethodGet && resp.StatusCode != http.StatusOK:
				t.Fatalf("got %s (%s), want 200", resp.Status, body)
			}
		})
	}
	// Plain HTTP is not spoken at all.
	server, _ := tlsconfig.Files{CertFile: cert, KeyFile: key}.Server()
	addr, _ := mastertest.Start(t, master.Config{TLS: server, Log: quietLog()})
	resp, err := http.Get("http://" + addr + "/state")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("plain HTTP to a TLS master: %s, want 400", resp.Status)
	}
}
