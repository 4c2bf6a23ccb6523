package conformance

import (
	"os"
	"path/filepath"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/apierrors"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
)

// TestBasicAuthentication: against a master with
// --authenticate_http_frameworks, mesos-go's client authenticates with HTTP
// basic (httpcli.BasicAuth), gets offers and launches as usual, and takes
// its principal; without credentials its SUBSCRIBE is refused as
// mesos-go's CodeNotAuthenticated (401).
func TestBasicAuthentication(t *testing.T) {
	creds := filepath.Join(t.TempDir(), "credentials")
	if err := os.WriteFile(creds, []byte(`{"credentials":[{"principal":"conformance","secret":"pw"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startCorral(t, "--authenticate_http_frameworks", "--credentials", creds)
	forEachCodec(t, func(t *testing.T, cc codecCase) {
		ctx := testContext(t)
		withAuth := append(append([]httpcli.ConfigOpt(nil), httpcli.DefaultConfigOpt...), httpcli.BasicAuth("conformance", "pw"))
		s := subscribeVia(ctx, t, c, cc, []httpcli.Opt{httpcli.Do(httpcli.With(withAuth...))})
		offer, res := s.awaitOffer(ctx, commandTaskWants())
		taskID := "conformance-auth-" + cc.name
		s.launch(ctx, offer, res, taskID, "true")
		updates := s.awaitTaskState(ctx, taskID, isTerminal)
		if last := updates[len(updates)-1]; last.GetState() != mesos.TASK_FINISHED {
			t.Fatalf("task ended %s (%q), want TASK_FINISHED", last.GetState(), last.GetMessage())
		}
		s.teardown(ctx)

		resp, err := newHTTPClient(c, cc).Send(clientRequest(calls.Subscribe(&mesos.FrameworkInfo{User: "root", Name: "conformance-anonymous"})), clientAuto)
		if resp != nil {
			resp.Close()
		}
		if !apierrors.CodeNotAuthenticated.Matches(err) {
			t.Fatalf("SUBSCRIBE without credentials: %v, want CodeNotAuthenticated", err)
		}
	})
}
