package testsupport

import (
	"testing"
	"time"
)

// PollInterval is how often Eventually checks its condition.
const PollInterval = 20 * time.Millisecond

// Eventually polls cond until it holds and fails the test, naming what it
// waited for, when it still does not after limit. The limit is there only
// to turn a hang into a failure: it is no timed assertion, so give it ample
// room (a loaded machine may be slow, never wrong).
func Eventually(tb testing.TB, what string, limit time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("still waiting for %s after %v", what, limit)
		}
		time.Sleep(PollInterval)
	}
}
