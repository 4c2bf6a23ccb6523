// Package tlsconfig turns the --tls_* flags of the master, the agent and
// corral run into TLS configurations, and carries what an executor needs
// to reach a TLS agent in Mesos' LIBPROCESS_SSL_* environment.
//
// Corral is stricter than libprocess by default: a client always verifies
// the server's certificate (against --tls_ca_file, else the system's
// roots), a certificate a client presents is always verified, and nothing
// downgrades to plain HTTP.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Files are the --tls_* flags.
type Files struct {
	// CertFile and KeyFile are the PEM certificate (chain) and key a
	// server serves and a client presents.
	CertFile, KeyFile string
	// CAFile holds the PEM certificates that sign the peers: the servers a
	// client trusts and the clients a server accepts.
	CAFile string
	// VerifyPeer makes a server want a client certificate signed by
	// CAFile on every endpoint (Mesos' LIBPROCESS_SSL_REQUIRE_CERT).
	VerifyPeer bool
	// On makes a client speak TLS without any file (trusting the system's
	// roots), as LIBPROCESS_SSL_ENABLED alone does.
	On bool
}

// Serving says whether a server speaks TLS.
func (f Files) Serving() bool { return f.CertFile != "" || f.KeyFile != "" }

// Enabled says whether any TLS flag was given: a client then speaks https.
func (f Files) Enabled() bool { return f.On || f.Serving() || f.CAFile != "" }

// check validates the combination; errors name the flags.
func (f Files) check() error {
	switch {
	case f.CertFile != "" && f.KeyFile == "":
		return errors.New("--tls_cert_file needs --tls_key_file")
	case f.KeyFile != "" && f.CertFile == "":
		return errors.New("--tls_key_file needs --tls_cert_file")
	case f.VerifyPeer && f.CAFile == "":
		return errors.New("--tls_verify_peer needs --tls_ca_file: the authority that signs the clients' certificates")
	}
	return nil
}

// Server is the configuration of a TLS listener, nil when no certificate
// is configured. With a CA file a client's certificate is asked for and,
// when one is presented, verified (a bad one fails the handshake);
// whether an endpoint needs one is RequirePeer's.
func (f Files) Server() (*tls.Config, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	if !f.Serving() {
		if f.CAFile != "" {
			return nil, errors.New("--tls_ca_file needs --tls_cert_file and --tls_key_file: the certificate this server presents")
		}
		return nil, nil
	}
	kp, err := loadKeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// HTTP/1.1 as over plain TCP: event streams and calls behave the
		// same with and without TLS, and Mesos' clients speak nothing else.
		NextProtos:     []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.get() },
	}
	if f.CAFile != "" {
		pool, err := loadPool(f.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// Client is the configuration of a client of Corral's servers: it trusts
// CAFile (the system's roots without one) and presents CertFile when
// given. nil when no TLS flag is set.
func (f Files) Client() (*tls.Config, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	if !f.Enabled() {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.CAFile != "" {
		pool, err := loadPool(f.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if f.CertFile != "" {
		kp, err := loadKeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.get() }
	}
	return cfg, nil
}

// Scheme is the URL scheme a client of a server with these files speaks.
func (f Files) Scheme() string {
	if f.Enabled() {
		return "https"
	}
	return "http"
}

// URL is the base URL a client with these files reaches addr (host:port
// or a URL, named by flag in errors) at: a bare address with Scheme, a
// URL as given, but never plain HTTP once a TLS flag is set, which would
// send credentials in the clear.
func (f Files) URL(flag, addr string) (string, error) {
	if !strings.Contains(addr, "://") {
		return f.Scheme() + "://" + addr, nil
	}
	if f.Enabled() && strings.HasPrefix(addr, "http://") {
		return "", fmt.Errorf("%s %s is plain HTTP, and a --tls_* flag wants TLS: give https:// or host:port", flag, addr)
	}
	return strings.TrimSuffix(addr, "/"), nil
}

// Transport is a clone of http.DefaultTransport speaking cfg (nil: plain).
func Transport(cfg *tls.Config) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg != nil {
		tr.TLSClientConfig = cfg
		// The client follows the server: HTTP/1.1 only (see Server).
		tr.ForceAttemptHTTP2 = false
	}
	return tr
}

// PeerVerified says whether r came with a client certificate that the
// server's CA verified.
func PeerVerified(r *http.Request) bool { return r.TLS != nil && len(r.TLS.VerifiedChains) > 0 }

// RequirePeer answers 403 to requests without a verified client
// certificate on the paths need selects.
func RequirePeer(h http.Handler, need func(path string) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if need(r.URL.Path) && !PeerVerified(r) {
			http.Error(w, "a client certificate signed by the server's --tls_ca_file is required", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func loadPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--tls_ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("--tls_ca_file %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// keyPair is a certificate and key read again when either file changes, so
// that an operator rotates them without a restart.
type keyPair struct {
	certPath, keyPath string

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]fileStamp
	checked time.Time
	// failed is the stamp of a change that did not load, logged once.
	failed [2]fileStamp
}

// fileStamp tells a file's versions apart: a file renamed into place has
// another inode, one rewritten in place another size or time (times alone
// miss a copy that keeps them, as cp -p and rsync -t do).
type fileStamp struct {
	ino, size int64
	mtime     time.Time
}

// keyPairRecheck bounds how often the files are looked at.
const keyPairRecheck = time.Second

func loadKeyPair(certPath, keyPath string) (*keyPair, error) {
	kp := &keyPair{certPath: certPath, keyPath: keyPath}
	if _, err := kp.get(); err != nil {
		return nil, err
	}
	return kp, nil
}

// get returns the current pair. A pair that fails to load after a change
// (a rotation half done) leaves the last good one in use, and says so once.
func (kp *keyPair) get() (*tls.Certificate, error) {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	now := time.Now()
	if kp.cert != nil && now.Sub(kp.checked) < keyPairRecheck {
		return kp.cert, nil
	}
	kp.checked = now
	var stamp [2]fileStamp
	for i, p := range []string{kp.certPath, kp.keyPath} {
		st, err := os.Stat(p)
		if err != nil {
			return kp.keep(stamp, fmt.Errorf("--tls_cert_file/--tls_key_file: %w", err))
		}
		stamp[i] = fileStamp{size: st.Size(), mtime: st.ModTime()}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			stamp[i].ino = int64(sys.Ino)
		}
	}
	if kp.cert != nil && stamp == kp.stamp {
		return kp.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(kp.certPath, kp.keyPath)
	if err != nil {
		return kp.keep(stamp, fmt.Errorf("--tls_cert_file %s / --tls_key_file %s: %w", kp.certPath, kp.keyPath, err))
	}
	if kp.cert != nil {
		slog.Info("TLS certificate reloaded", "cert", kp.certPath)
	}
	kp.cert, kp.stamp = &cert, stamp
	return kp.cert, nil
}

// keep answers a failed (re)load: the last good pair when there is one,
// the error at start.
func (kp *keyPair) keep(stamp [2]fileStamp, err error) (*tls.Certificate, error) {
	if kp.cert == nil {
		return nil, err
	}
	if stamp != kp.failed {
		kp.failed = stamp
		slog.Warn("the changed TLS certificate or key does not load; serving the last good pair", "err", err)
	}
	return kp.cert, nil
}
