package master_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/recordio"
	masterapi "github.com/corral/corral/api/v1/master"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/api/v1/scheduler"
	"github.com/corral/corral/internal/testsupport"
	"github.com/corral/corral/master/mastertest"
	"google.golang.org/protobuf/proto"
)

const offerWait = 10 * time.Second

func TestSubscribeAndOffer(t *testing.T) {
	for _, c := range []struct {
		name  string
		codec codec.Codec
	}{{"json", codec.JSON}, {"protobuf", codec.Protobuf}} {
		t.Run(c.name, func(t *testing.T) {
			tm, fa, _ := setup(t)
			s := subscribe(t, tm, c.codec)
			if s.sub.StreamID == "" {
				t.Error("no Mesos-Stream-Id header on SUBSCRIBE")
			}
			o := s.offer(offerWait)
			if o.GetFrameworkId().GetValue() != s.id {
				t.Errorf("offer framework_id = %q, want %q", o.GetFrameworkId().GetValue(), s.id)
			}
			if o.GetId().GetValue() == "" || o.GetAgentId().GetValue() == "" || o.GetHostname() == "" {
				t.Errorf("offer lacks id, agent_id or hostname: %v", o)
			}
			host, portStr, _ := net.SplitHostPort(fa.Endpoint)
			port, _ := strconv.Atoi(portStr)
			u := o.GetUrl()
			if u.GetScheme() != "http" || u.GetAddress().GetIp() != host || int(u.GetAddress().GetPort()) != port {
				t.Errorf("offer url = %v, want scheme http, ip %s, port %d", u, host, port)
			}
			for name, want := range map[string]float64{"cpus": 2, "mem": 1024, "disk": 1024} {
				if got := scalar(o.GetResources(), name); got != want {
					t.Errorf("offered %s = %v, want %v", name, got, want)
				}
			}
			if got := rangesOf(o.GetResources(), "ports"); got != "31000-31009" {
				t.Errorf("offered ports = %q, want 31000-31009", got)
			}
		})
	}
}

func TestSubscribedEvent(t *testing.T) {
	tm := startMaster(t)
	// Read the first record by hand to see every field of SUBSCRIBED.
	body := []byte(`{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"n"}}}`)
	req, _ := http.NewRequest(http.MethodPost, tm.url("/api/v1/scheduler"), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ev := &scheduler.Event{}
	rec, err := recordio.NewReader(resp.Body).ReadRecord()
	if err != nil {
		t.Fatal(err)
	}
	if err := codec.JSON.Unmarshal(rec, ev); err != nil {
		t.Fatal(err)
	}
	sub := ev.GetSubscribed()
	if ev.GetType() != scheduler.Event_SUBSCRIBED || sub.GetHeartbeatIntervalSeconds() != 0.5 {
		t.Errorf("SUBSCRIBED = %v, want heartbeat_interval_seconds 0.5", ev)
	}
	mi := sub.GetMasterInfo()
	if mi.GetId() == "" || mi.GetAddress().GetIp() != "127.0.0.1" || mi.GetAddress().GetPort() == 0 {
		t.Errorf("master_info = %v", mi)
	}
}

// Mesos refuses a SUBSCRIBE whose call framework_id differs from
// framework_info.id, also when only one of them is set.
func TestSubscribeFrameworkIDMismatch(t *testing.T) {
	tm := startMaster(t)
	hdr := map[string]string{"Content-Type": "application/json", "Accept": "application/json"}
	for _, c := range []struct{ name, body string }{
		{"both set, different", `{"type":"SUBSCRIBE","framework_id":{"value":"a"},"subscribe":{"framework_info":{"user":"u","name":"n","id":{"value":"b"}}}}`},
		{"only call framework_id", `{"type":"SUBSCRIBE","framework_id":{"value":"a"},"subscribe":{"framework_info":{"user":"u","name":"n"}}}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, tm.url("/api/v1/scheduler"), strings.NewReader(c.body))
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := http.DefaultClient.Do(req.WithContext(ctx))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				var ev scheduler.Event
				if rec, err := recordio.NewReader(resp.Body).ReadRecord(); err == nil {
					_ = codec.JSON.Unmarshal(rec, &ev)
				}
				t.Errorf("status %d (framework ID given: %q), want 400", resp.StatusCode, ev.GetSubscribed().GetFrameworkId().GetValue())
			}
		})
	}
}

func TestHeartbeats(t *testing.T) {
	tm := startMaster(t)
	s := subscribe(t, tm, codec.JSON)
	if ev := s.find(3*time.Second, func(ev *scheduler.Event) bool { return ev.GetType() == scheduler.Event_HEARTBEAT }); ev == nil {
		t.Fatal("no HEARTBEAT within 3s (interval 0.5s)")
	}
}

// TestRawJSONWire looks at the bytes: RecordIO framing, headers, proto field
// names and 64-bit integers as numbers.
func TestRawJSONWire(t *testing.T) {
	tm, _, _ := setup(t)
	body := []byte(`{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"raw"}}}`)
	req, _ := http.NewRequest(http.MethodPost, tm.url("/api/v1/scheduler"), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("SUBSCRIBE status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want exactly application/json", ct)
	}
	if resp.Header.Get("Mesos-Stream-Id") == "" {
		t.Error("no Mesos-Stream-Id")
	}
	if resp.ContentLength != -1 {
		t.Errorf("Content-Length set (%d); the stream must be chunked", resp.ContentLength)
	}
	rd := recordio.NewReader(resp.Body)
	var offers []byte
	for offers == nil {
		rec, err := rd.ReadRecord()
		if err != nil {
			t.Fatalf("reading records: %v", err)
		}
		var head struct{ Type string }
		if err := json.Unmarshal(rec, &head); err != nil {
			t.Fatalf("record is not JSON: %v: %s", err, rec)
		}
		if head.Type == "OFFERS" {
			offers = rec
		}
	}
	text := string(offers)
	for _, bad := range []string{"frameworkId", "agentId", `"begin":"`, `"end":"`} {
		if strings.Contains(text, bad) {
			t.Errorf("OFFERS record contains %s: %s", bad, text)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(offers))
	dec.UseNumber()
	var ev struct {
		Type   string
		Offers struct {
			Offers []map[string]any `json:"offers"`
		} `json:"offers"`
	}
	if err := dec.Decode(&ev); err != nil {
		t.Fatal(err)
	}
	if len(ev.Offers.Offers) != 1 {
		t.Fatalf("offers: %s", text)
	}
	o := ev.Offers.Offers[0]
	for _, k := range []string{"id", "framework_id", "agent_id", "hostname", "url", "resources"} {
		if _, ok := o[k]; !ok {
			t.Errorf("offer lacks %q: %s", k, text)
		}
	}
	url, _ := o["url"].(map[string]any)
	addr, _ := url["address"].(map[string]any)
	if _, ok := addr["port"].(json.Number); !ok || url["scheme"] != "http" || addr["ip"] != "127.0.0.1" {
		t.Errorf("url = %v, want scheme http and address ip/port (port a number)", url)
	}
	found := false
	for _, r := range o["resources"].([]any) {
		r := r.(map[string]any)
		if r["name"] != "ports" {
			continue
		}
		found = true
		if r["type"] != "RANGES" {
			t.Errorf("ports type = %v, want the enum name RANGES", r["type"])
		}
		rg := r["ranges"].(map[string]any)["range"].([]any)[0].(map[string]any)
		b, ok1 := rg["begin"].(json.Number)
		e, ok2 := rg["end"].(json.Number)
		if !ok1 || !ok2 || b.String() != "31000" || e.String() != "31009" {
			t.Errorf("ports range = %#v, want numbers 31000 and 31009", rg)
		}
	}
	if !found {
		t.Errorf("no ports in offer: %s", text)
	}
}

func TestCallErrors(t *testing.T) {
	tm := startMaster(t)
	s := subscribe(t, tm, codec.JSON)
	url := tm.url("/api/v1/scheduler")
	sid := s.sub.StreamID
	jsonHdr := func(streamID string) map[string]string {
		h := map[string]string{"Content-Type": "application/json", "Accept": "application/json"}
		if streamID != "" {
			h["Mesos-Stream-Id"] = streamID
		}
		return h
	}
	fw := `"framework_id":{"value":"` + s.id + `"}`
	cases := []struct {
		name   string
		header map[string]string
		body   string
		want   int
	}{
		{"revive ok", jsonHdr(sid), `{"type":"REVIVE",` + fw + `}`, http.StatusAccepted},
		{"no stream id", jsonHdr(""), `{"type":"REVIVE",` + fw + `}`, http.StatusBadRequest},
		{"wrong stream id", jsonHdr("not-the-stream"), `{"type":"REVIVE",` + fw + `}`, http.StatusBadRequest},
		{"unknown framework", jsonHdr(sid), `{"type":"REVIVE","framework_id":{"value":"nope"}}`, http.StatusBadRequest},
		{"no framework id", jsonHdr(sid), `{"type":"REVIVE"}`, http.StatusBadRequest},
		{"malformed JSON", jsonHdr(sid), `{"type":"REVIVE",`, http.StatusBadRequest},
		{"not an object", jsonHdr(sid), `[1,2]`, http.StatusBadRequest},
		{"unknown call type number", jsonHdr(sid), `{"type":999,` + fw + `}`, http.StatusBadRequest},
		{"unknown call type name", jsonHdr(sid), `{"type":"FROBNICATE",` + fw + `}`, http.StatusBadRequest},
		{"accept without accept", jsonHdr(sid), `{"type":"ACCEPT",` + fw + `}`, http.StatusBadRequest},
		{"acknowledge 3-byte uuid", jsonHdr(sid), `{"type":"ACKNOWLEDGE",` + fw + `,"acknowledge":{"agent_id":{"value":"a"},"task_id":{"value":"t"},"uuid":"AQID"}}`, http.StatusBadRequest},
		{"acknowledge 16-byte uuid", jsonHdr(sid), `{"type":"ACKNOWLEDGE",` + fw + `,"acknowledge":{"agent_id":{"value":"a"},"task_id":{"value":"t"},"uuid":"AAECAwQFBgcICQoLDA0ODw=="}}`, http.StatusAccepted},
		{"reserve operation", jsonHdr(sid), `{"type":"ACCEPT",` + fw + `,"accept":{"offer_ids":[{"value":"o"}],"operations":[{"type":"RESERVE","reserve":{"resources":[]}}]}}`, http.StatusBadRequest},
		{"launch without launch", jsonHdr(sid), `{"type":"ACCEPT",` + fw + `,"accept":{"offer_ids":[{"value":"o"}],"operations":[{"type":"LAUNCH"}]}}`, http.StatusBadRequest},
		{"unsupported media type", map[string]string{"Content-Type": "text/plain", "Mesos-Stream-Id": sid}, `{"type":"REVIVE",` + fw + `}`, http.StatusUnsupportedMediaType},
		{"nulls are unset", jsonHdr(sid), `{"type":"REVIVE",` + fw + `,"revive":null,"accept":null}`, http.StatusAccepted},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := rawPost(t, url, c.header, []byte(c.body))
			if code != c.want {
				t.Fatalf("status %d (%s), want %d", code, body, c.want)
			}
			if code >= 400 && strings.TrimSpace(body) == "" {
				t.Errorf("error %d without a reason", code)
			}
			if code == http.StatusAccepted && body != "" {
				t.Errorf("202 with a body: %q", body)
			}
		})
	}
	t.Run("GET", func(t *testing.T) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("GET status %d, want 405", resp.StatusCode)
		}
	})
	t.Run("subscribe without user", func(t *testing.T) {
		code, body := rawPost(t, url, jsonHdr(""), []byte(`{"type":"SUBSCRIBE","subscribe":{"framework_info":{"name":"n"}}}`))
		if code != http.StatusBadRequest {
			t.Errorf("status %d (%s), want 400", code, body)
		}
	})
	// The client reports the same through StatusError.
	err := s.call(&scheduler.Call{Type: scheduler.Call_ACKNOWLEDGE.Enum(), Acknowledge: &scheduler.Call_Acknowledge{
		AgentId: &mesos.AgentID{Value: proto.String("a")}, TaskId: &mesos.TaskID{Value: proto.String("t")}, Uuid: []byte{1, 2, 3},
	}})
	if statusCode(err) != http.StatusBadRequest {
		t.Errorf("ACKNOWLEDGE with 3-byte uuid: %v, want HTTP 400", err)
	}
}

func TestAcceptInvalidOffers(t *testing.T) {
	tm, fa, prefix := setup(t)
	for _, pa := range []bool{false, true} {
		name := "not partition aware"
		wantState := mesos.TaskState_TASK_LOST
		var opts []subscribeOpt
		if pa {
			name, wantState, opts = "partition aware", mesos.TaskState_TASK_DROPPED, []subscribeOpt{partitionAware}
		}
		t.Run(name, func(t *testing.T) {
			s := subscribe(t, tm, codec.JSON, opts...)
			o := s.offer(offerWait)
			check := func(id string) {
				t.Helper()
				st := s.update(prefix+id, 5*time.Second, mesos.TaskState_TASK_LOST, mesos.TaskState_TASK_DROPPED)
				if st.GetState() != wantState || st.GetReason() != mesos.TaskStatus_REASON_INVALID_OFFERS || st.GetSource() != mesos.TaskStatus_SOURCE_MASTER {
					t.Errorf("task %s: state %v reason %v source %v, want %v REASON_INVALID_OFFERS SOURCE_MASTER", id, st.GetState(), st.GetReason(), st.GetSource(), wantState)
				}
				if st.GetMessage() == "" {
					t.Errorf("task %s: no message", id)
				}
			}

			// An offer ID that was never made.
			s.mustCall(acceptCall([]*mesos.OfferID{{Value: proto.String("no-such-offer")}}, task(prefix, name+"-unknown", o, "cpus:0.1;mem:32", "true")))
			check(name + "-unknown")

			// The same offer twice in one call.
			s.mustCall(acceptCall([]*mesos.OfferID{o.GetId(), o.GetId()}, task(prefix, name+"-twice", o, "cpus:0.1;mem:32", "true")))
			check(name + "-twice")

			// The offer was used up by that call (Mesos drops every offer
			// of an invalid ACCEPT); using it again is invalid too.
			o2 := s.offer(offerWait)
			s.launch(o2, task(prefix, name+"-ok", o2, "cpus:0.1;mem:32", "true"))
			s.update(prefix+name+"-ok", 10*time.Second, mesos.TaskState_TASK_FINISHED)
			s.mustCall(acceptCall([]*mesos.OfferID{o2.GetId()}, task(prefix, name+"-reused", o2, "cpus:0.1;mem:32", "true")))
			check(name + "-reused")

			// No offers at all.
			s.mustCall(acceptCall(nil, task(prefix, name+"-none", o2, "cpus:0.1;mem:32", "true")))
			check(name + "-none")

			// The framework still gets offers afterwards: the resources
			// went back.
			o3 := s.find(offerWait, func(ev *scheduler.Event) bool { return ev.GetType() == scheduler.Event_OFFERS })
			if o3 == nil {
				t.Fatal("no offer after invalid accepts")
			}
			// Of all these, only the valid launch reached the agent.
			if ran := ranOn(fa, prefix+name); !slices.Equal(ran, []string{prefix + name + "-ok"}) {
				t.Errorf("the agent was told to run %v, want only %s", ran, prefix+name+"-ok")
			}
			s.mustCall(&scheduler.Call{Type: scheduler.Call_TEARDOWN.Enum()})
		})
	}
}

func TestAcceptTaskErrors(t *testing.T) {
	tm, fa, prefix := setup(t)
	s := subscribe(t, tm, codec.JSON)
	o := s.offer(offerWait)

	bothCmdAndExec := task(prefix, "both", o, "cpus:0.1;mem:32", "true")
	bothCmdAndExec.Executor = &mesos.ExecutorInfo{
		ExecutorId: &mesos.ExecutorID{Value: proto.String(prefix + "ex")},
		Command:    &mesos.CommandInfo{Value: proto.String("true")},
	}
	neither := task(prefix, "neither", o, "cpus:0.1;mem:32", "true")
	neither.Command = nil
	wrongAgent := task(prefix, "wrong-agent", o, "cpus:0.1;mem:32", "true")
	wrongAgent.AgentId = &mesos.AgentID{Value: proto.String("other-agent")}
	noResources := task(prefix, "no-resources", o, "", "true")
	badID := task(prefix, "x", o, "cpus:0.1;mem:32", "true")
	badID.TaskId.Value = proto.String(prefix + "a/b")
	badPort := task(prefix, "bad-port", o, "cpus:0.1;mem:32;ports:[80-80]", "true")

	tasks := []*mesos.TaskInfo{
		task(prefix, "too-big", o, "cpus:4;mem:32", "true"),
		task(prefix, "too-much-mem", o, "cpus:0.1;mem:2048", "true"),
		task(prefix, "dup", o, "cpus:0.1;mem:32", "sleep 30"),
		task(prefix, "dup", o, "cpus:0.1;mem:32", "sleep 30"),
		bothCmdAndExec, neither, wrongAgent, noResources, badID, badPort,
		// Together these two ask more than the offer: the second fails.
		task(prefix, "half-1", o, "cpus:1;mem:100", "true"),
		task(prefix, "half-2", o, "cpus:1;mem:100", "true"),
	}
	s.launch(o, tasks...)

	wantError := []string{"too-big", "too-much-mem", "both", "neither", "wrong-agent", "no-resources", "bad-port", "half-2"}
	for _, id := range wantError {
		st := s.update(prefix+id, 5*time.Second, mesos.TaskState_TASK_ERROR, mesos.TaskState_TASK_STARTING, mesos.TaskState_TASK_RUNNING, mesos.TaskState_TASK_FINISHED)
		if st.GetState() != mesos.TaskState_TASK_ERROR || st.GetReason() != mesos.TaskStatus_REASON_TASK_INVALID {
			t.Errorf("task %s: %v %v (%s), want TASK_ERROR REASON_TASK_INVALID", id, st.GetState(), st.GetReason(), st.GetMessage())
		} else if st.GetMessage() == "" {
			t.Errorf("task %s: TASK_ERROR without a message", id)
		}
	}
	st := s.update(prefix+"a/b", 5*time.Second, mesos.TaskState_TASK_ERROR, mesos.TaskState_TASK_STARTING)
	if st.GetState() != mesos.TaskState_TASK_ERROR {
		t.Errorf("task ID with a slash: %v, want TASK_ERROR", st.GetState())
	}

	// The first "dup" runs, the second is refused.
	first := s.update(prefix+"dup", 10*time.Second, mesos.TaskState_TASK_ERROR, mesos.TaskState_TASK_RUNNING)
	second := s.update(prefix+"dup", 10*time.Second, mesos.TaskState_TASK_ERROR, mesos.TaskState_TASK_RUNNING)
	states := map[mesos.TaskState]int{first.GetState(): 1}
	states[second.GetState()]++
	if states[mesos.TaskState_TASK_ERROR] != 1 || states[mesos.TaskState_TASK_RUNNING] != 1 {
		t.Errorf("duplicate task ID: states %v then %v, want one TASK_RUNNING and one TASK_ERROR", first.GetState(), second.GetState())
	}
	s.update(prefix+"half-1", 10*time.Second, mesos.TaskState_TASK_FINISHED)
	// Only the valid tasks reached the agent, the first "dup" once.
	if ran := ranOn(fa, prefix); !slices.Equal(ran, []string{prefix + "dup", prefix + "half-1"}) {
		t.Errorf("the agent was told to run %v, want %sdup and %shalf-1", ran, prefix, prefix)
	}
	s.mustCall(&scheduler.Call{Type: scheduler.Call_KILL.Enum(), Kill: &scheduler.Call_Kill{TaskId: &mesos.TaskID{Value: proto.String(prefix + "dup")}}})
	s.update(prefix+"dup", 10*time.Second, mesos.TaskState_TASK_KILLED)
}

func TestDeclineAndRevive(t *testing.T) {
	tm, _, _ := setup(t)
	s := subscribe(t, tm, codec.JSON)
	o := s.offer(offerWait)
	s.decline(o, 60)
	s.noEvent(scheduler.Event_OFFERS, 1500*time.Millisecond)
	// A declined offer is gone.
	s.mustCall(acceptCall([]*mesos.OfferID{o.GetId()}, task("declined-", "t", o, "cpus:0.1;mem:32", "true")))
	if st := s.update("declined-t", 3*time.Second, mesos.TaskState_TASK_LOST, mesos.TaskState_TASK_STARTING); st.GetState() != mesos.TaskState_TASK_LOST ||
		st.GetReason() != mesos.TaskStatus_REASON_INVALID_OFFERS {
		t.Errorf("accept of a declined offer: %v %v, want TASK_LOST REASON_INVALID_OFFERS", st.GetState(), st.GetReason())
	}
	s.mustCall(&scheduler.Call{Type: scheduler.Call_REVIVE.Enum()})
	o2 := s.offer(2 * time.Second)
	if o2.GetId().GetValue() == o.GetId().GetValue() {
		t.Errorf("re-offer reuses offer ID %s", o.GetId().GetValue())
	}
	if scalar(o2.GetResources(), "cpus") != 2 {
		t.Errorf("re-offer cpus = %v, want 2", scalar(o2.GetResources(), "cpus"))
	}
	// A short filter expires by itself.
	s.decline(o2, 0.3)
	start := time.Now()
	s.offer(3 * time.Second)
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("re-offered after %v, before the 0.3s filter expired", d)
	}
}

// REVIVE naming the framework's role must also remove the filters set by
// DECLINE, as Mesos' allocator does ("remove all filters for the specified
// roles and unsuppress them").
func TestReviveWithRolesClearsFilters(t *testing.T) {
	tm, _, _ := setup(t)
	s := subscribe(t, tm, codec.JSON)
	o := s.offer(offerWait)
	s.decline(o, 60)
	s.noEvent(scheduler.Event_OFFERS, 500*time.Millisecond)
	s.mustCall(&scheduler.Call{Type: scheduler.Call_REVIVE.Enum(), Revive: &scheduler.Call_Revive{Roles: []string{"*"}}})
	if ev := s.find(2*time.Second, func(ev *scheduler.Event) bool { return ev.GetType() == scheduler.Event_OFFERS }); ev == nil {
		t.Fatal("no offer within 2s of REVIVE{roles:[\"*\"]} after DECLINE with refuse_seconds 60")
	}
}

func TestDeclineUnknownOfferIgnored(t *testing.T) {
	tm := startMaster(t)
	s := subscribe(t, tm, codec.JSON)
	s.decline(&mesos.Offer{Id: &mesos.OfferID{Value: proto.String("nope")}}, 5)
}

func TestSuppressAndRevive(t *testing.T) {
	tm, _, prefix := setup(t)
	s := subscribe(t, tm, codec.JSON)
	o := s.offer(offerWait)
	s.mustCall(&scheduler.Call{Type: scheduler.Call_SUPPRESS.Enum()})
	// SUPPRESS stops new offers only: the outstanding one stays valid.
	s.launch(o, task(prefix, "after-suppress", o, "cpus:0.5;mem:32", "true"))
	if st := s.update(prefix+"after-suppress", 10*time.Second, mesos.TaskState_TASK_FINISHED, mesos.TaskState_TASK_LOST, mesos.TaskState_TASK_ERROR); st.GetState() != mesos.TaskState_TASK_FINISHED {
		t.Errorf("task on the offer outstanding at SUPPRESS: %v %v (%s), want TASK_FINISHED", st.GetState(), st.GetReason(), st.GetMessage())
	}
	// The leftovers and the task's resources came back, yet nothing is
	// offered while suppressed.
	s.noEvent(scheduler.Event_OFFERS, 1500*time.Millisecond)
	if ev := s.find(0, func(ev *scheduler.Event) bool { return ev.GetType() == scheduler.Event_RESCIND }); ev != nil {
		t.Errorf("unexpected RESCIND after SUPPRESS: %v", ev)
	}
	s.mustCall(&scheduler.Call{Type: scheduler.Call_REVIVE.Enum()})
	o2 := s.offer(2 * time.Second)
	if scalar(o2.GetResources(), "cpus") != 2 {
		t.Errorf("offer after revive: cpus %v, want 2", scalar(o2.GetResources(), "cpus"))
	}
}

func TestSubscribeSuppressed(t *testing.T) {
	tm, _, _ := setup(t)
	s := subscribeWith(t, tm, codec.JSON, &scheduler.Call_Subscribe{
		FrameworkInfo:   &mesos.FrameworkInfo{User: proto.String("test"), Name: proto.String(t.Name())},
		SuppressedRoles: []string{"*"},
	})
	s.noEvent(scheduler.Event_OFFERS, time.Second)
	s.mustCall(&scheduler.Call{Type: scheduler.Call_REVIVE.Enum(), Revive: &scheduler.Call_Revive{Roles: []string{"*"}}})
	s.offer(2 * time.Second)
}

func TestOffersShrinkAndGrow(t *testing.T) {
	tm, _, prefix := setup(t)
	s := subscribe(t, tm, codec.JSON)
	o := s.offer(offerWait)
	id := prefix + "sleeper"
	s.launch(o, task(prefix, "sleeper", o, "cpus:1;mem:128;ports:[31000-31000]", "sleep 30"))
	running := s.update(id, 10*time.Second, mesos.TaskState_TASK_RUNNING, mesos.TaskState_TASK_FAILED, mesos.TaskState_TASK_FINISHED)
	if running.GetState() != mesos.TaskState_TASK_RUNNING {
		t.Fatalf("task %v (%s), want TASK_RUNNING", running.GetState(), running.GetMessage())
	}
	if len(running.GetUuid()) != 16 {
		t.Errorf("agent update uuid has %d bytes, want 16", len(running.GetUuid()))
	}

	o2 := s.offer(offerWait)
	if c := scalar(o2.GetResources(), "cpus"); c > 1 {
		t.Errorf("offer while the task runs has cpus %v, want <= 1", c)
	}
	if m := scalar(o2.GetResources(), "mem"); m != 1024-128 {
		t.Errorf("offer while the task runs has mem %v, want 896", m)
	}
	if p := rangesOf(o2.GetResources(), "ports"); p != "31001-31009" {
		t.Errorf("offer while the task runs has ports %q, want 31001-31009", p)
	}

	// /state agrees.
	st := getState(t, tm)
	slave := st.Slaves[0]
	if slave.UsedResources["cpus"] != 1.0 || slave.UsedResources["mem"] != 128.0 {
		t.Errorf("/state used_resources = %v, want cpus 1 mem 128", slave.UsedResources)
	}

	s.mustCall(&scheduler.Call{Type: scheduler.Call_KILL.Enum(), Kill: &scheduler.Call_Kill{
		TaskId: &mesos.TaskID{Value: proto.String(id)}, AgentId: o.GetAgentId(),
	}})
	killed := s.update(id, 10*time.Second, mesos.TaskState_TASK_KILLED, mesos.TaskState_TASK_FAILED, mesos.TaskState_TASK_FINISHED)
	if killed.GetState() != mesos.TaskState_TASK_KILLED {
		t.Errorf("after KILL: %v, want TASK_KILLED", killed.GetState())
	}

	// Decline what is outstanding until one offer holds everything again.
	s.decline(o2, 0)
	deadline := time.Now().Add(offerWait)
	for {
		ev := s.find(time.Until(deadline), func(ev *scheduler.Event) bool { return ev.GetType() == scheduler.Event_OFFERS })
		if ev == nil {
			t.Fatal("resources did not come back in an offer after the kill")
		}
		off := ev.GetOffers().GetOffers()[0]
		if scalar(off.GetResources(), "cpus") == 2 {
			if m := scalar(off.GetResources(), "mem"); m != 1024 {
				t.Errorf("grown offer mem %v, want 1024", m)
			}
			if p := rangesOf(off.GetResources(), "ports"); p != "31000-31009" {
				t.Errorf("grown offer ports %q", p)
			}
			break
		}
		s.decline(off, 0)
	}
}

func TestKillUnknownTask(t *testing.T) {
	tm := startMaster(t)
	s := subscribe(t, tm, codec.JSON)
	s.mustCall(&scheduler.Call{Type: scheduler.Call_KILL.Enum(), Kill: &scheduler.Call_Kill{TaskId: &mesos.TaskID{Value: proto.String("ghost")}}})
	st := s.update("ghost", 3*time.Second, mesos.TaskState_TASK_LOST)
	if st.GetSource() != mesos.TaskStatus_SOURCE_MASTER {
		t.Errorf("source %v", st.GetSource())
	}
}

func TestReconcile(t *testing.T) {
	tm, _, prefix := setup(t)
	s := subscribe(t, tm, codec.JSON)
	pa := subscribe(t, tm, codec.JSON, partitionAware)

	// Nothing known: implicit reconciliation says nothing.
	s.mustCall(&scheduler.Call{Type: scheduler.Call_RECONCILE.Enum(), Reconcile: &scheduler.Call_Reconcile{}})
	s.noEvent(scheduler.Event_UPDATE, 300*time.Millisecond)

	o := s.find(offerWait, func(ev *scheduler.Event) bool { return ev.GetType() == scheduler.Event_OFFERS })
	if o == nil {
		// The other framework may hold the agent's offer: decline it.
		po := pa.offer(offerWait)
		pa.decline(po, 60)
		o = s.next(scheduler.Event_OFFERS, offerWait)
	}
	offer := o.GetOffers().GetOffers()[0]
	id := prefix + "rec"
	s.launch(offer, task(prefix, "rec", offer, "cpus:0.5;mem:64", "sleep 30"))
	s.update(id, 10*time.Second, mesos.TaskState_TASK_RUNNING)

	// Implicit: one update per known task, without uuid.
	s.mustCall(&scheduler.Call{Type: scheduler.Call_RECONCILE.Enum(), Reconcile: &scheduler.Call_Reconcile{}})
	ev := s.find(3*time.Second, func(ev *scheduler.Event) bool {
		st := ev.GetUpdate().GetStatus()
		return ev.GetType() == scheduler.Event_UPDATE && st.GetTaskId().GetValue() == id && st.GetReason() == mesos.TaskStatus_REASON_RECONCILIATION
	})
	if ev == nil {
		t.Fatal("no reconciliation update for the running task")
	}
	st := ev.GetUpdate().GetStatus()
	if st.Uuid != nil {
		t.Errorf("reconciliation update carries a uuid (%x)", st.GetUuid())
	}
	if st.GetState() != mesos.TaskState_TASK_RUNNING || st.GetAgentId().GetValue() != offer.GetAgentId().GetValue() {
		t.Errorf("reconciled: state %v agent %q, want TASK_RUNNING on %q", st.GetState(), st.GetAgentId().GetValue(), offer.GetAgentId().GetValue())
	}

	// Explicit: known and unknown tasks.
	s.mustCall(&scheduler.Call{Type: scheduler.Call_RECONCILE.Enum(), Reconcile: &scheduler.Call_Reconcile{Tasks: []*scheduler.Call_Reconcile_Task{
		{TaskId: &mesos.TaskID{Value: proto.String(id)}},
		{TaskId: &mesos.TaskID{Value: proto.String("unknown-task")}, AgentId: &mesos.AgentID{Value: proto.String("some-agent")}},
	}}})
	unknown := s.update("unknown-task", 3*time.Second, mesos.TaskState_TASK_LOST, mesos.TaskState_TASK_UNKNOWN)
	if unknown.GetState() != mesos.TaskState_TASK_LOST || unknown.GetReason() != mesos.TaskStatus_REASON_RECONCILIATION || unknown.Uuid != nil {
		t.Errorf("unknown task: %v %v uuid=%x, want TASK_LOST REASON_RECONCILIATION without uuid", unknown.GetState(), unknown.GetReason(), unknown.GetUuid())
	}
	if unknown.GetAgentId().GetValue() != "some-agent" {
		t.Errorf("unknown task: agent_id %q, want the one asked about", unknown.GetAgentId().GetValue())
	}
	known := s.find(3*time.Second, func(ev *scheduler.Event) bool {
		st := ev.GetUpdate().GetStatus()
		return ev.GetType() == scheduler.Event_UPDATE && st.GetTaskId().GetValue() == id && st.GetReason() == mesos.TaskStatus_REASON_RECONCILIATION
	})
	if known == nil || known.GetUpdate().GetStatus().GetState() != mesos.TaskState_TASK_RUNNING {
		t.Errorf("explicit reconciliation of the running task: %v", known)
	}

	// Partition-aware frameworks hear TASK_UNKNOWN.
	pa.mustCall(&scheduler.Call{Type: scheduler.Call_RECONCILE.Enum(), Reconcile: &scheduler.Call_Reconcile{Tasks: []*scheduler.Call_Reconcile_Task{
		{TaskId: &mesos.TaskID{Value: proto.String("unknown-task")}},
	}}})
	if st := pa.update("unknown-task", 3*time.Second, mesos.TaskState_TASK_LOST, mesos.TaskState_TASK_UNKNOWN); st.GetState() != mesos.TaskState_TASK_UNKNOWN {
		t.Errorf("partition-aware: %v, want TASK_UNKNOWN", st.GetState())
	}

	s.mustCall(&scheduler.Call{Type: scheduler.Call_KILL.Enum(), Kill: &scheduler.Call_Kill{TaskId: &mesos.TaskID{Value: proto.String(id)}}})
	s.update(id, 10*time.Second, mesos.TaskState_TASK_KILLED)

	// Once its end is acknowledged the task is among the completed ones:
	// reconciling it, or killing it again (a kill retried while the end
	// was on its way), restates that end instead of Mesos' TASK_LOST.
	testsupport.Eventually(t, id+" among the completed tasks after its end was acknowledged", 10*time.Second, func() bool {
		for _, fw := range getState(t, tm).Frameworks {
			for _, ct := range fw.CompletedTasks {
				if ct.ID == id {
					return true
				}
			}
		}
		return false
	})
	for _, c := range []*scheduler.Call{
		{Type: scheduler.Call_RECONCILE.Enum(), Reconcile: &scheduler.Call_Reconcile{Tasks: []*scheduler.Call_Reconcile_Task{{TaskId: &mesos.TaskID{Value: proto.String(id)}}}}},
		{Type: scheduler.Call_KILL.Enum(), Kill: &scheduler.Call_Kill{TaskId: &mesos.TaskID{Value: proto.String(id)}}},
	} {
		s.mustCall(c)
		st := s.update(id, 3*time.Second, mesos.TaskState_TASK_KILLED, mesos.TaskState_TASK_LOST)
		if st.GetState() != mesos.TaskState_TASK_KILLED || st.GetReason() != mesos.TaskStatus_REASON_RECONCILIATION || st.Uuid != nil {
			t.Errorf("%v of the completed task: %v %v uuid=%x, want TASK_KILLED REASON_RECONCILIATION without uuid", c.GetType(), st.GetState(), st.GetReason(), st.GetUuid())
		}
	}
}

func TestStateEndpoints(t *testing.T) {
	tm, fa, prefix := setup(t)
	s := subscribe(t, tm, codec.JSON)
	o := s.offer(offerWait)
	id := prefix + "stateful"
	s.launch(o, task(prefix, "stateful", o, "cpus:0.5;mem:64", "sleep 30"))
	s.update(id, 10*time.Second, mesos.TaskState_TASK_RUNNING)

	st := getState(t, tm)
	if len(st.Slaves) != 1 {
		t.Fatalf("/state slaves = %d, want 1", len(st.Slaves))
	}
	sl := st.Slaves[0]
	if sl.ID != o.GetAgentId().GetValue() || !sl.Active {
		t.Errorf("slave id %q active %v, want %q active", sl.ID, sl.Active, o.GetAgentId().GetValue())
	}
	if _, port, _ := net.SplitHostPort(fa.Endpoint); strconv.Itoa(sl.Port) != port {
		t.Errorf("slave port %d, want %s", sl.Port, port)
	}
	if sl.Resources["cpus"] != 2.0 || sl.Resources["mem"] != 1024.0 || sl.Resources["disk"] != 1024.0 || sl.Resources["ports"] != "[31000-31009]" || sl.Resources["gpus"] != 0.0 {
		t.Errorf("slave resources = %v", sl.Resources)
	}
	if len(st.Frameworks) != 1 {
		t.Fatalf("/state frameworks = %d, want 1", len(st.Frameworks))
	}
	fw := st.Frameworks[0]
	if fw.ID != s.id || !fw.Active || fw.Name != t.Name() {
		t.Errorf("framework = %+v", fw)
	}
	if len(fw.Tasks) != 1 || fw.Tasks[0].ID != id || fw.Tasks[0].State != "TASK_RUNNING" || fw.Tasks[0].SlaveID != sl.ID {
		t.Errorf("framework tasks = %+v, want %s TASK_RUNNING", fw.Tasks, id)
	}
	if fw.UsedResources["cpus"] != 0.5 {
		t.Errorf("framework used_resources = %v", fw.UsedResources)
	}

	// The operator API says the same.
	resp := &masterapi.Response{}
	operator(t, tm, codec.JSON, &masterapi.Call{Type: masterapi.Call_GET_STATE.Enum()}, resp)
	gs := resp.GetGetState()
	if resp.GetType() != masterapi.Response_GET_STATE || gs == nil {
		t.Fatalf("GET_STATE response = %v", resp)
	}
	if a := gs.GetGetAgents().GetAgents(); len(a) != 1 || a[0].GetAgentInfo().GetId().GetValue() != sl.ID || !a[0].GetActive() ||
		scalar(a[0].GetTotalResources(), "cpus") != 2 || scalar(a[0].GetAllocatedResources(), "cpus") != 0.5 {
		t.Errorf("GET_STATE agents = %v", a)
	}
	if f := gs.GetGetFrameworks().GetFrameworks(); len(f) != 1 || f[0].GetFrameworkInfo().GetId().GetValue() != s.id || !f[0].GetActive() || !f[0].GetConnected() {
		t.Errorf("GET_STATE frameworks = %v", f)
	}
	if tk := gs.GetGetTasks().GetTasks(); len(tk) != 1 || tk[0].GetTaskId().GetValue() != id || tk[0].GetState() != mesos.TaskState_TASK_RUNNING ||
		tk[0].GetAgentId().GetValue() != sl.ID || tk[0].GetFrameworkId().GetValue() != s.id {
		t.Errorf("GET_STATE tasks = %v", tk)
	}

	// And in protobuf.
	pb := &masterapi.Response{}
	operator(t, tm, codec.Protobuf, &masterapi.Call{Type: masterapi.Call_GET_STATE.Enum()}, pb)
	if len(pb.GetGetState().GetGetTasks().GetTasks()) != 1 {
		t.Errorf("GET_STATE (protobuf) tasks = %v", pb.GetGetState().GetGetTasks())
	}

	// Unsupported operator calls are refused with a reason.
	code, body := rawPost(t, tm.url("/api/v1"), map[string]string{"Content-Type": "application/json"}, []byte(`{"type":"GET_MAINTENANCE_STATUS"}`))
	if code != http.StatusBadRequest || body == "" {
		t.Errorf("unsupported operator call: %d %q, want 400 with a reason", code, body)
	}

	// Killed and acknowledged, the task moves to completed_tasks.
	s.mustCall(&scheduler.Call{Type: scheduler.Call_KILL.Enum(), Kill: &scheduler.Call_Kill{TaskId: &mesos.TaskID{Value: proto.String(id)}}})
	s.update(id, 10*time.Second, mesos.TaskState_TASK_KILLED)
	testsupport.Eventually(t, "the task to move to completed_tasks", 5*time.Second, func() bool {
		st := getState(t, tm)
		return len(st.Frameworks) == 1 && len(st.Frameworks[0].Tasks) == 0 && len(st.Frameworks[0].CompletedTasks) == 1 &&
			st.Frameworks[0].CompletedTasks[0].State == "TASK_KILLED"
	})
	resp = &masterapi.Response{}
	operator(t, tm, codec.JSON, &masterapi.Call{Type: masterapi.Call_GET_TASKS.Enum()}, resp)
	if c := resp.GetGetTasks().GetCompletedTasks(); len(c) != 1 || c[0].GetState() != mesos.TaskState_TASK_KILLED {
		t.Errorf("GET_TASKS completed = %v", c)
	}
}

type stateJSON struct {
	Slaves []struct {
		ID            string         `json:"id"`
		Port          int            `json:"port"`
		Active        bool           `json:"active"`
		Resources     map[string]any `json:"resources"`
		UsedResources map[string]any `json:"used_resources"`
	} `json:"slaves"`
	Frameworks          []frameworkJSON `json:"frameworks"`
	CompletedFrameworks []frameworkJSON `json:"completed_frameworks"`
}

type frameworkJSON struct {
	ID             string         `json:"id"`
	Name           string         `json:"name"`
	Active         bool           `json:"active"`
	Connected      bool           `json:"connected"`
	UsedResources  map[string]any `json:"used_resources"`
	Tasks          []taskJSON     `json:"tasks"`
	CompletedTasks []taskJSON     `json:"completed_tasks"`
}

type taskJSON struct {
	ID      string `json:"id"`
	State   string `json:"state"`
	SlaveID string `json:"slave_id"`
}

func getState(t *testing.T, tm *testMaster) *stateJSON {
	t.Helper()
	resp, err := http.Get(tm.url("/state"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/state: %d", resp.StatusCode)
	}
	st := &stateJSON{}
	if err := json.NewDecoder(resp.Body).Decode(st); err != nil {
		t.Fatalf("/state: %v", err)
	}
	return st
}

func operator(t *testing.T, tm *testMaster, c codec.Codec, call *masterapi.Call, out *masterapi.Response) {
	t.Helper()
	body, err := c.Marshal(call)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, tm.url("/api/v1"), bytes.NewReader(body))
	req.Header.Set("Content-Type", c.MediaType())
	req.Header.Set("Accept", c.MediaType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("operator %v: %d %s", call.GetType(), resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != c.MediaType() {
		t.Errorf("operator response Content-Type %q, want %q", ct, c.MediaType())
	}
	if err := c.Unmarshal(b, out); err != nil {
		t.Fatalf("operator response: %v", err)
	}
}

// ranOn lists, sorted, the IDs starting with prefix of the tasks the master
// sent the fake agent RUN_TASK for.
func ranOn(fa *mastertest.FakeAgent, prefix string) []string {
	var ids []string
	for _, ev := range fa.Events() {
		if id := ev.GetRunTask().GetTask().GetTaskId().GetValue(); ev.GetType() == cluster.Event_RUN_TASK && strings.HasPrefix(id, prefix) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}
