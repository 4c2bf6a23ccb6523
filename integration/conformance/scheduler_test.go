package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/encoding"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/apierrors"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
)

// TestLaunchCommandTask: SUBSCRIBE, OFFERS, ACCEPT with one LAUNCH of a
// command task, UPDATEs acknowledged through TASK_FINISHED, TEARDOWN.
func TestLaunchCommandTask(t *testing.T) {
	forEachCodec(t, func(t *testing.T, cc codecCase) {
		c := startCorral(t)
		ctx := testContext(t)
		s := subscribe(ctx, t, c, cc)

		offer, res := s.awaitOffer(ctx, commandTaskWants())
		taskID := "conformance-" + cc.name + "-echo"
		s.launch(ctx, offer, res, taskID, "echo conformance-ok")

		updates := s.awaitTaskState(ctx, taskID, isTerminal)
		t.Logf("%s: status sequence %s", cc.name, stateNames(updates))
		last := updates[len(updates)-1]
		if last.GetState() != mesos.TASK_FINISHED {
			t.Fatalf("task ended %s (reason %s, source %s, message %q), want TASK_FINISHED; sequence %s",
				last.GetState(), last.GetReason(), last.GetSource(), last.GetMessage(), stateNames(updates))
		}
		checkOrder(t, updates, mesos.TASK_STARTING, mesos.TASK_RUNNING, mesos.TASK_FINISHED)
		for _, st := range updates {
			if len(st.UUID) == 0 {
				t.Errorf("%s update from the executor has no uuid (it must be acknowledged)", st.GetState())
			}
			if st.GetAgentID().GetValue() != offer.AgentID.Value {
				t.Errorf("%s update agent_id = %q, want %q", st.GetState(), st.GetAgentID().GetValue(), offer.AgentID.Value)
			}
		}
		checkSandboxOutput(t, c, s.FrameworkID, "conformance-ok")

		s.teardown(ctx)
		checkCompletedFramework(t, c, s.FrameworkID)
	})
}

// TestReconcile: with a running task, an implicit and an explicit RECONCILE
// each answer with an UPDATE that carries no uuid (nothing to
// acknowledge); then KILL ends the task as TASK_KILLED.
func TestReconcile(t *testing.T) {
	forEachCodec(t, func(t *testing.T, cc codecCase) {
		c := startCorral(t)
		ctx := testContext(t)
		s := subscribe(ctx, t, c, cc)

		offer, res := s.awaitOffer(ctx, commandTaskWants())
		taskID := "conformance-" + cc.name + "-sleep"
		s.launch(ctx, offer, res, taskID, "sleep 50")
		updates := s.awaitTaskState(ctx, taskID, func(st mesos.TaskState) bool {
			return st == mesos.TASK_RUNNING || isTerminal(st)
		})
		if st := updates[len(updates)-1]; st.GetState() != mesos.TASK_RUNNING {
			t.Fatalf("task is %s (reason %s, message %q), want TASK_RUNNING; sequence %s",
				st.GetState(), st.GetReason(), st.GetMessage(), stateNames(updates))
		}

		// The leftover check in cleanup must be able to see a running task,
		// or it would pass vacuously.
		if procs := leftoverProcesses(c.WorkDir, c.cmd.Process.Pid); len(procs) == 0 {
			t.Errorf("no process mentions work_dir %s while the task runs: the leftover check cannot see tasks", c.WorkDir)
		} else {
			t.Logf("processes under work_dir while the task runs: %v", procs)
		}

		for _, rc := range []struct {
			name string
			call *scheduler.Call
		}{
			{"implicit", calls.Reconcile()},
			{"explicit", calls.Reconcile(calls.ReconcileTasks(map[string]string{taskID: offer.AgentID.Value}))},
		} {
			s.mustCall(ctx, rc.call)
			got := s.awaitTaskState(ctx, taskID, func(mesos.TaskState) bool { return true })
			st := got[0]
			t.Logf("%s: %s RECONCILE answered %s reason=%s uuid=%x", cc.name, rc.name, st.GetState(), st.GetReason(), st.UUID)
			if st.GetState() != mesos.TASK_RUNNING {
				t.Errorf("%s RECONCILE: state %s, want TASK_RUNNING", rc.name, st.GetState())
			}
			if len(st.UUID) != 0 {
				t.Errorf("%s RECONCILE: update carries uuid %x, want none (COMPAT: reconciliation answers carry no uuid)", rc.name, st.UUID)
			}
			if st.GetReason() != mesos.REASON_RECONCILIATION {
				t.Errorf("%s RECONCILE: reason %s, want REASON_RECONCILIATION (as Mesos sets)", rc.name, st.GetReason())
			}
		}

		s.mustCall(ctx, calls.Kill(taskID, offer.AgentID.Value))
		updates = s.awaitTaskState(ctx, taskID, isTerminal)
		t.Logf("%s: after KILL: %s", cc.name, stateNames(updates))
		if st := updates[len(updates)-1]; st.GetState() != mesos.TASK_KILLED {
			t.Errorf("killed task ended %s (reason %s, message %q), want TASK_KILLED", st.GetState(), st.GetReason(), st.GetMessage())
		}

		s.teardown(ctx)
	})
}

// TestHeartbeat: SUBSCRIBED announces the interval and HEARTBEAT events
// follow at about that pace.
func TestHeartbeat(t *testing.T) {
	forEachCodec(t, func(t *testing.T, cc codecCase) {
		c := startCorral(t, "--heartbeat_interval", "1s")
		ctx := testContext(t)
		s := subscribe(ctx, t, c, cc)
		if hb := s.Subscribed.GetHeartbeatIntervalSeconds(); hb != 1 {
			t.Errorf("heartbeat_interval_seconds = %v with --heartbeat_interval 1s, want 1", hb)
		}
		wait, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		start := time.Now()
		for s.heartbeats < 2 {
			e, err := s.next(wait)
			if err != nil {
				t.Fatalf("%d HEARTBEATs in %v, want 2: %v", s.heartbeats, time.Since(start), err)
			}
			switch e.GetType() {
			case scheduler.Event_HEARTBEAT:
				s.heartbeats++
			case scheduler.Event_OFFERS:
				s.decline(ctx, e.GetOffers().GetOffers()...)
			}
		}
		t.Logf("%s: 2 HEARTBEATs in %v", cc.name, time.Since(start).Round(time.Millisecond))
		s.teardown(ctx)
	})
}

// TestStreamID: as Mesos' src/master/http.cpp answers, a call with a wrong
// or missing Mesos-Stream-Id, a call for an unknown framework and a
// SUBSCRIBE that carries a Mesos-Stream-Id are refused with 400 and a
// reason (mesos-go: apierrors.CodeMalformedRequest); a call for a framework
// that is known but not connected gets 403 (apierrors.CodeUnsubscribed). The
// real subscription keeps working.
func TestStreamID(t *testing.T) {
	forEachCodec(t, func(t *testing.T, cc codecCase) {
		c := startCorral(t)
		ctx := testContext(t)
		s := subscribe(ctx, t, c, cc)
		raw := newHTTPClient(c, cc)

		// A framework that failed over: known, with no connection.
		gone := subscribe(ctx, t, c, cc, func(fi *mesos.FrameworkInfo) {
			timeout := 60.0
			fi.FailoverTimeout = &timeout
		})
		gone.resp.Close()
		awaitDisconnected(ctx, t, c, gone.FrameworkID)

		someStream := httpcli.Header("Mesos-Stream-Id", "00000000-0000-0000-0000-000000000000")
		for _, tc := range []struct {
			name   string
			call   *scheduler.Call
			opts   []httpcli.RequestOpt
			code   apierrors.Code
			reason string
		}{
			{"wrong stream id", calls.Revive().With(calls.Framework(s.FrameworkID)), []httpcli.RequestOpt{someStream},
				apierrors.CodeMalformedRequest, "didn't match the stream ID"},
			{"no stream id", calls.Revive().With(calls.Framework(s.FrameworkID)), nil,
				apierrors.CodeMalformedRequest, "should include the 'Mesos-Stream-Id' header"},
			{"unknown framework", calls.Revive().With(calls.Framework("no-such-framework")), []httpcli.RequestOpt{someStream},
				apierrors.CodeMalformedRequest, "Framework cannot be found"},
			{"SUBSCRIBE with a stream id", calls.Subscribe(&mesos.FrameworkInfo{User: "root", Name: "conformance-" + cc.name + "-refused"}), []httpcli.RequestOpt{someStream},
				apierrors.CodeMalformedRequest, "should not include the 'Mesos-Stream-Id' header"},
			{"framework not connected", calls.Revive().With(calls.Framework(gone.FrameworkID)), []httpcli.RequestOpt{someStream},
				apierrors.CodeUnsubscribed, "Framework is not subscribed"},
		} {
			resp, err := raw.Send(clientRequest(tc.call), clientAuto, tc.opts...)
			if resp != nil {
				resp.Close()
			}
			if !tc.code.Matches(err) {
				t.Errorf("%s: %s answered err=%v, want %d (%s)", tc.name, tc.call.GetType(), err, tc.code, apierrors.ErrorTable[tc.code])
				continue
			}
			t.Logf("%s: %v", tc.name, err)
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("%s: reason %q, want it to contain %q (COMPAT: plain-text reason, as Mesos')", tc.name, err.Error(), tc.reason)
			}
		}
		var st struct {
			Frameworks []struct{ ID string } `json:"frameworks"`
		}
		if err := getJSON(c.URL+"/state", &st); err != nil {
			t.Errorf("/state: %v", err)
		} else if len(st.Frameworks) != 2 {
			t.Errorf("/state lists %d frameworks after the refused SUBSCRIBE, want 2 (it must not register one)", len(st.Frameworks))
		}

		// The real subscription still works.
		if err := s.call(ctx, calls.Revive()); err != nil {
			t.Errorf("REVIVE on the real subscription after the refused calls: %v", err)
		}
		s.teardown(ctx)
	})
}

// TestMissingContentType: a call without Content-Type is refused with 400
// "Expecting 'Content-Type' to be present", as Mesos does, before anything
// else is looked at; mesos-go reads it as apierrors.CodeMalformedRequest.
func TestMissingContentType(t *testing.T) {
	forEachCodec(t, func(t *testing.T, cc codecCase) {
		c := startCorral(t)
		ctx := testContext(t)
		s := subscribe(ctx, t, c, cc)
		// mesos-go always sets Content-Type; its transport hook drops it.
		raw := httpcli.New(
			httpcli.Endpoint(schedulerEndpoint(c)),
			httpcli.Codec(cc.codec),
			httpcli.Do(httpcli.With(httpcli.Timeout(10*time.Second))),
			httpcli.WrapDoer(func(next httpcli.DoFunc) httpcli.DoFunc {
				return func(req *http.Request) (*http.Response, error) {
					req.Header.Del("Content-Type")
					return next(req)
				}
			}),
		)
		for _, call := range []*scheduler.Call{
			calls.Subscribe(&mesos.FrameworkInfo{User: "root", Name: "conformance-" + cc.name + "-no-content-type"}),
			calls.Revive().With(calls.Framework(s.FrameworkID)),
		} {
			resp, err := raw.Send(clientRequest(call), clientAuto)
			if resp != nil {
				resp.Close()
			}
			if !apierrors.CodeMalformedRequest.Matches(err) {
				t.Errorf("%s without Content-Type: err=%v, want 400 (apierrors.CodeMalformedRequest)", call.GetType(), err)
				continue
			}
			t.Logf("%s without Content-Type: %v", call.GetType(), err)
			if !strings.Contains(err.Error(), "Expecting 'Content-Type' to be present") {
				t.Errorf("%s without Content-Type: reason %q, want Mesos' \"Expecting 'Content-Type' to be present\"", call.GetType(), err.Error())
			}
		}
		s.teardown(ctx)
	})
}

// awaitDisconnected waits until the master's /state shows the framework as
// not connected.
func awaitDisconnected(ctx context.Context, t *testing.T, c *corral, frameworkID string) {
	t.Helper()
	for {
		var st struct {
			Frameworks []struct {
				ID        string `json:"id"`
				Connected bool   `json:"connected"`
			} `json:"frameworks"`
		}
		if err := getJSON(c.URL+"/state", &st); err == nil {
			for _, f := range st.Frameworks {
				if f.ID == frameworkID && !f.Connected {
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("framework %s still connected after its stream was closed", frameworkID)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestMalformed: bodies that do not decode, or decode to an invalid call,
// get 400 with a plain-text reason.
func TestMalformed(t *testing.T) {
	forEachCodec(t, func(t *testing.T, cc codecCase) {
		c := startCorral(t)
		_ = testContext(t)
		raw := newHTTPClient(c, cc)

		// Through mesos-go: a body that is valid for the encoder but not a
		// Call, and a SUBSCRIBE without its subscribe message.
		for _, tc := range []struct {
			name string
			m    encoding.Marshaler
		}{
			{"not a Call", junk{json: `{"type":"SUBSCRIBE","subscribe":{"framework_info":"not an object"}}`, proto: []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}}},
			{"SUBSCRIBE without subscribe", &scheduler.Call{Type: scheduler.Call_SUBSCRIBE}},
		} {
			resp, err := raw.Send(clientRequest(tc.m), clientAuto)
			if resp != nil {
				resp.Close()
			}
			if !apierrors.CodeMalformedRequest.Matches(err) {
				t.Errorf("mesos-go %s: err=%v, want 400 (apierrors.CodeMalformedRequest)", tc.name, err)
				continue
			}
			t.Logf("mesos-go %s: %v", tc.name, err)
		}

		// Raw bytes a codec would never produce.
		bodies := map[string][]byte{
			"truncated": []byte(`{"type":"SUBSCRIBE","subscribe":{`),
			"empty":     {},
		}
		if cc.name == "protobuf" {
			bodies["truncated"] = []byte{0x08, 0x01, 0x12, 0x40, 0x0a}
		}
		for name, body := range bodies {
			req, err := http.NewRequest(http.MethodPost, schedulerEndpoint(c), bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", cc.codec.Type.ContentType())
			req.Header.Set("Accept", cc.codec.Type.ContentType())
			res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				t.Errorf("raw %s body: %v", name, err)
				continue
			}
			msg, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
			res.Body.Close()
			t.Logf("raw %s body: %s %q (Content-Type %q)", name, res.Status, msg, res.Header.Get("Content-Type"))
			if res.StatusCode != http.StatusBadRequest {
				t.Errorf("raw %s %s body: status %s, want 400 Bad Request", name, cc.name, res.Status)
			}
			if len(bytes.TrimSpace(msg)) == 0 {
				t.Errorf("raw %s %s body: 400 without a reason", name, cc.name)
			}
			if ct := res.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("raw %s %s body: error Content-Type %q, want text/plain", name, cc.name, ct)
			}
		}
	})
}

func isTerminal(s mesos.TaskState) bool {
	switch s {
	case mesos.TASK_FINISHED, mesos.TASK_FAILED, mesos.TASK_KILLED, mesos.TASK_ERROR,
		mesos.TASK_LOST, mesos.TASK_DROPPED, mesos.TASK_GONE, mesos.TASK_GONE_BY_OPERATOR:
		return true
	}
	return false
}

// checkOrder checks that want occur in updates in this order.
func checkOrder(t *testing.T, updates []mesos.TaskStatus, want ...mesos.TaskState) {
	t.Helper()
	i := 0
	for _, st := range updates {
		if i < len(want) && st.GetState() == want[i] {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("status sequence %s lacks %s in order (want %v in this order)", stateNames(updates), want[i], want)
	}
}

// checkSandboxOutput looks for out in the stdout of the framework's
// sandboxes under the agent work_dir (DESIGN.md "Agent on disk").
func checkSandboxOutput(t *testing.T, c *corral, frameworkID, out string) {
	t.Helper()
	pattern := filepath.Join(c.WorkDir, "slaves", "*", "frameworks", frameworkID, "executors", "*", "runs", "*", "stdout")
	files, _ := filepath.Glob(pattern)
	if len(files) == 0 {
		t.Errorf("no sandbox stdout matches %s", pattern)
		return
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && bytes.Contains(b, []byte(out)) {
			t.Logf("task output %q found in %s", out, f)
			return
		}
	}
	t.Errorf("%q not in any of %v", out, files)
}

// checkCompletedFramework checks that the master's /state lists the torn
// down framework as completed, not active.
func checkCompletedFramework(t *testing.T, c *corral, frameworkID string) {
	t.Helper()
	var st struct {
		Frameworks          []struct{ ID string } `json:"frameworks"`
		CompletedFrameworks []struct{ ID string } `json:"completed_frameworks"`
	}
	if err := getJSON(c.URL+"/state", &st); err != nil {
		t.Errorf("/state: %v", err)
		return
	}
	for _, f := range st.Frameworks {
		if f.ID == frameworkID {
			t.Errorf("/state still lists framework %s as active after TEARDOWN", frameworkID)
		}
	}
	for _, f := range st.CompletedFrameworks {
		if f.ID == frameworkID {
			return
		}
	}
	t.Errorf("/state completed_frameworks lacks %s after TEARDOWN", frameworkID)
}

func getJSON(url string, v any) error {
	res, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return errors.New(res.Status)
	}
	return json.NewDecoder(res.Body).Decode(v)
}

// junk is a message whose JSON is valid JSON (encoding/json checks) but
// not a Call, and whose protobuf is not a valid Call.
type junk struct {
	json  string
	proto []byte
}

func (j junk) Marshal() ([]byte, error)     { return j.proto, nil }
func (j junk) MarshalJSON() ([]byte, error) { return []byte(j.json), nil }
func (j junk) Reset()                       {}
func (j junk) String() string               { return fmt.Sprintf("junk{%s}", j.json) }
func (j junk) ProtoMessage()                {}
