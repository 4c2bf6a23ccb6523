// Package mastertest runs a real Corral master on a loopback listener, for
// the tests of its clients (agent, drivers): no fake, the master itself.
package mastertest

import (
	"context"
	"crypto/tls"
	"net/http/httptest"
	"testing"

	"github.com/corral/corral/master"
)

// Start runs a master with cfg (its Address filled in) until the test ends
// and returns its address and server.
func Start(tb testing.TB, cfg master.Config) (string, *httptest.Server) {
	tb.Helper()
	srv := httptest.NewUnstartedServer(nil)
	addr := srv.Listener.Addr().String()
	cfg.Address = addr
	m := master.New(cfg)
	srv.Config.Handler = m.Handler()
	if cfg.TLS != nil {
		// Not StartTLS: it would replace the master's certificates.
		srv.Listener = tls.NewListener(srv.Listener, cfg.TLS)
	}
	srv.Start()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	tb.Cleanup(func() {
		cancel()
		<-done
		// Event streams never end on their own; Close would wait for them.
		srv.CloseClientConnections()
		srv.Close()
	})
	return addr, srv
}
