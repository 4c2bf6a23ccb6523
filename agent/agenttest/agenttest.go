// Package agenttest runs a real Corral agent in the test's process, for
// tests of the agent from outside and of its clients: no fake, the agent
// itself.
package agenttest

import (
	"context"
	"testing"
	"time"

	"github.com/corral/corral/agent"
)

// Start builds the agent from cfg and runs it until the test ends; the
// cleanup stops it and waits (up to a minute) for it to finish, its
// containers destroyed.
func Start(tb testing.TB, cfg agent.Config) *agent.Agent {
	tb.Helper()
	a, err := agent.New(cfg)
	if err != nil {
		tb.Fatalf("agent.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("agent.Run: %v", err)
			}
		case <-time.After(time.Minute):
			tb.Errorf("agent did not stop within a minute")
		}
	})
	return a
}
