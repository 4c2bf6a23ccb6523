package tlsconfig

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/corral/corral/internal/testsupport"
)

// serve runs a TLS server with f whose /private needs a verified client
// certificate; it returns the server's URL.
func serve(t *testing.T, f Files) string {
	t.Helper()
	cfg, err := f.Server()
	if err != nil {
		t.Fatal(err)
	}
	h := RequirePeer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}), func(p string) bool { return f.VerifyPeer || p == "/private" })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(tls.NewListener(ln, cfg))
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String()
}

func get(t *testing.T, f Files, url string) (int, error) {
	t.Helper()
	cfg, err := f.Client()
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: Transport(cfg), Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// TestPeers: who gets through a server with a CA, per path and client.
func TestPeers(t *testing.T) {
	ca, other := testsupport.NewCA(t, "corral"), testsupport.NewCA(t, "intruder")
	serverCert, serverKey := ca.Issue(t, "server")
	clientCert, clientKey := ca.Issue(t, "client")
	badCert, badKey := other.Issue(t, "client")
	fakeServerCert, fakeServerKey := other.Issue(t, "server")
	server := Files{CertFile: serverCert, KeyFile: serverKey, CAFile: ca.CAFile}
	strict := server
	strict.VerifyPeer = true
	good := Files{CertFile: clientCert, KeyFile: clientKey, CAFile: ca.CAFile}
	anonymous := Files{CAFile: ca.CAFile}
	forged := Files{CertFile: badCert, KeyFile: badKey, CAFile: ca.CAFile}
	for _, tc := range []struct {
		name   string
		server Files
		client Files
		path   string
		want   int    // 0: the connection fails
		errHas string // for want 0
	}{
		{"a verified client reaches a private path", server, good, "/private", 200, ""},
		{"an anonymous client reaches a public path", server, anonymous, "/public", 200, ""},
		{"an anonymous client is refused a private path", server, anonymous, "/private", 403, ""},
		{"a certificate of another CA fails the handshake", server, forged, "/public", 0, "certificate"},
		{"verify_peer refuses an anonymous client everywhere", strict, anonymous, "/public", 403, ""},
		{"verify_peer takes a verified client", strict, good, "/public", 200, ""},
		{"a client without the CA refuses the server", server, Files{On: true}, "/public", 0, "certificate"},
		{"a client refuses a server of another CA", Files{CertFile: fakeServerCert, KeyFile: fakeServerKey}, good, "/public", 0, "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, err := get(t, tc.client, serve(t, tc.server)+tc.path)
			switch {
			case tc.want == 0 && err == nil:
				t.Fatalf("got HTTP %d, want the connection refused", code)
			case tc.want == 0 && !strings.Contains(err.Error(), tc.errHas):
				t.Fatalf("error %q does not mention %q", err, tc.errHas)
			case tc.want != 0 && err != nil:
				t.Fatalf("want HTTP %d, got %v", tc.want, err)
			case code != tc.want:
				t.Fatalf("got HTTP %d, want %d", code, tc.want)
			}
		})
	}
}

func TestFlagErrors(t *testing.T) {
	ca := testsupport.NewCA(t, "corral")
	cert, key := ca.Issue(t, "server")
	garbage := t.TempDir() + "/garbage.pem"
	if err := os.WriteFile(garbage, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		f      Files
		server bool
		want   string
	}{
		{"cert without key", Files{CertFile: cert}, true, "--tls_cert_file needs --tls_key_file"},
		{"key without cert", Files{KeyFile: key}, false, "--tls_key_file needs --tls_cert_file"},
		{"verify_peer without CA", Files{CertFile: cert, KeyFile: key, VerifyPeer: true}, true, "--tls_verify_peer needs --tls_ca_file"},
		{"a server's CA without a certificate", Files{CAFile: ca.CAFile}, true, "--tls_ca_file needs --tls_cert_file"},
		{"a CA file without PEM", Files{CAFile: garbage}, false, "--tls_ca_file " + garbage + ": no PEM"},
		{"a missing CA file", Files{CAFile: garbage + ".gone"}, false, "--tls_ca_file: open"},
		{"a key that is not the certificate's", Files{CertFile: cert, KeyFile: garbage}, true, "--tls_cert_file " + cert},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.server {
				_, err = tc.f.Server()
			} else {
				_, err = tc.f.Client()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestRotation: a server presents the new certificate once its files are
// replaced, and keeps the old one while the new pair is half written.
func TestRotation(t *testing.T) {
	ca := testsupport.NewCA(t, "corral")
	cert, key := ca.Issue(t, "server")
	kp, err := loadKeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := kp.get()
	newCert, newKey := ca.Issue(t, "server-next")
	copyFile(t, newCert, cert) // the key does not match yet
	future := time.Now().Add(time.Minute)
	if err := os.Chtimes(cert, future, future); err != nil {
		t.Fatal(err)
	}
	kp.checked = time.Time{}
	if got, _ := kp.get(); got != first {
		t.Fatal("a half-rotated pair replaced the good one")
	}
	copyFile(t, newKey, key)
	if err := os.Chtimes(key, future, future); err != nil {
		t.Fatal(err)
	}
	kp.checked = time.Time{}
	got, err := kp.get()
	if err != nil || got == first {
		t.Fatalf("the rotated pair is not served: %v", err)
	}
	if leaf, _ := x509Leaf(got); leaf != "server-next" {
		t.Fatalf("serving %q, want server-next", leaf)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func x509Leaf(c *tls.Certificate) (string, error) {
	if c.Leaf != nil {
		return c.Leaf.Subject.CommonName, nil
	}
	return "", nil
}

func TestFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    Files
		wantErr string
	}{
		{"off", map[string]string{}, Files{}, ""},
		{"off by name", map[string]string{EnvEnabled: "false", EnvCAFile: "/ca"}, Files{}, ""},
		{"on with a CA", map[string]string{EnvEnabled: "true", EnvCAFile: "/ca"}, Files{On: true, CAFile: "/ca"}, ""},
		{"on by 1 with a client certificate", map[string]string{EnvEnabled: "1", EnvCertFile: "/c", EnvKeyFile: "/k"}, Files{On: true, CertFile: "/c", KeyFile: "/k"}, ""},
		{"a bad switch", map[string]string{EnvEnabled: "yes"}, Files{}, EnvEnabled},
		{"a certificate without its key", map[string]string{EnvEnabled: "true", EnvCertFile: "/c"}, Files{}, EnvKeyFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FromEnv(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	agent := Files{CertFile: "/agent.pem", KeyFile: "/agent-key.pem", CAFile: "/ca.pem"}
	env := strings.Join(agent.ExecutorEnv("", ""), " ")
	if !strings.Contains(env, EnvEnabled+"=true") || !strings.Contains(env, EnvCAFile+"=/ca.pem") || strings.Contains(env, "agent") || strings.Contains(env, EnvKeyFile) {
		t.Fatalf("executor environment %q: want TLS on and the CA, never the agent's certificate or key", env)
	}
	env = strings.Join(agent.ExecutorEnv("/executor.pem", "/executor-key.pem"), " ")
	if !strings.Contains(env, EnvCertFile+"=/executor.pem") || !strings.Contains(env, EnvKeyFile+"=/executor-key.pem") || strings.Contains(env, "agent") {
		t.Fatalf("executor environment %q: want the executors' own pair, never the agent's", env)
	}
	if env := (Files{}).ExecutorEnv("/executor.pem", "/executor-key.pem"); env != nil {
		t.Fatalf("a plain agent's executors get %q", env)
	}
}

func TestURL(t *testing.T) {
	on := Files{CAFile: "/ca.pem"}
	for _, tc := range []struct {
		files               Files
		addr, want, wantErr string
	}{
		{Files{}, "127.0.0.1:5050", "http://127.0.0.1:5050", ""},
		{on, "127.0.0.1:5050", "https://127.0.0.1:5050", ""},
		{on, "https://m:5050/", "https://m:5050", ""},
		{Files{}, "http://m:5050", "http://m:5050", ""},
		{on, "http://m:5050", "", "--master http://m:5050 is plain HTTP"},
	} {
		got, err := tc.files.URL("--master", tc.addr)
		if got != tc.want || (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("URL(%q) with %+v = %q, %v; want %q, %q", tc.addr, tc.files, got, err, tc.want, tc.wantErr)
		}
	}
}
