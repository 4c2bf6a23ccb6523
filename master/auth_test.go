package master_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/auth"
	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/httpapi"
	masterapi "github.com/corral/corral/api/v1/master"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/api/v1/scheduler"
	"github.com/corral/corral/master"
)

// With --authenticate_http_frameworks a framework is its principal: the
// hijack of issue 14 (a SUBSCRIBE carrying another framework's ID, read
// from /state, failed the victim over) is refused, and so is every call
// without the right secret or for a framework of another principal.
func TestFrameworkAuthentication(t *testing.T) {
	tm := startMasterWith(t, func(c *master.Config) {
		c.FrameworkCredentials = auth.Credentials{"victim": "s1", "intruder": "s2"}
	})
	info := func() *mesos.FrameworkInfo {
		return &mesos.FrameworkInfo{User: proto.String("u"), Name: proto.String("fw")}
	}
	subscribeCall := func(fi *mesos.FrameworkInfo) *scheduler.Call {
		return &scheduler.Call{FrameworkId: fi.Id, Type: scheduler.Call_SUBSCRIBE.Enum(), Subscribe: &scheduler.Call_Subscribe{FrameworkInfo: fi}}
	}
	post := func(header http.Header, call *scheduler.Call, streamID string) (int, string, http.Header) {
		body, _ := proto.Marshal(call)
		h := header.Clone()
		if h == nil {
			h = http.Header{}
		}
		h.Set("Content-Type", "application/x-protobuf")
		h.Set("Accept", "application/json")
		if streamID != "" {
			h.Set(httpapi.StreamIDHeader, streamID)
		}
		return rawPostHeader(t, tm.url("/api/v1/scheduler"), h, body)
	}

	// Without credentials, or with a wrong secret: 401 and the realm.
	for name, h := range map[string]http.Header{"no credentials": nil, "wrong secret": auth.BasicHeader("victim", "s2"), "unknown principal": auth.BasicHeader("nobody", "s1")} {
		code, _, hdr := post(h, subscribeCall(info()), "")
		if code != http.StatusUnauthorized || hdr.Get("WWW-Authenticate") != `Basic realm="mesos-master-scheduler"` {
			t.Errorf("%s: %d %q, want 401 with the realm", name, code, hdr.Get("WWW-Authenticate"))
		}
	}

	// The victim takes its authenticated principal.
	victim := subscribeAs(t, tm, codec.Protobuf, &scheduler.Call_Subscribe{FrameworkInfo: info()}, auth.BasicHeader("victim", "s1"))
	fws, _ := getMap(t, tm, "/master/state")["frameworks"].([]any)
	if len(fws) != 1 || fws[0].(map[string]any)["principal"] != "victim" {
		t.Fatalf("/state frameworks %v, want the victim with its principal", fws)
	}

	// The intruder authenticates as itself and subscribes with the
	// victim's ID: refused with an ERROR, before the victim is touched.
	hijack := info()
	hijack.Id = &mesos.FrameworkID{Value: proto.String(victim.id)}
	code, body, _ := post(auth.BasicHeader("intruder", "s2"), subscribeCall(hijack), "")
	if code != http.StatusOK || !strings.Contains(body, "Changing framework's principal is not allowed.") {
		t.Fatalf("hijacking SUBSCRIBE: %d %q, want an ERROR event", code, body)
	}
	// Claiming the victim's principal in FrameworkInfo does not help.
	hijack.Principal = proto.String("victim")
	code, body, _ = post(auth.BasicHeader("intruder", "s2"), subscribeCall(hijack), "")
	if code != http.StatusBadRequest || !strings.Contains(body, "Authenticated principal 'intruder' does not match principal 'victim'") {
		t.Fatalf("SUBSCRIBE claiming another principal: %d %q, want 400", code, body)
	}
	// Nor does the victim's stream ID, should it leak.
	kill := &scheduler.Call{
		FrameworkId: &mesos.FrameworkID{Value: proto.String(victim.id)}, Type: scheduler.Call_KILL.Enum(),
		Kill: &scheduler.Call_Kill{TaskId: &mesos.TaskID{Value: proto.String("t")}},
	}
	code, body, _ = post(auth.BasicHeader("intruder", "s2"), kill, victim.c.StreamID())
	if code != http.StatusBadRequest || !strings.Contains(body, "does not match principal 'victim'") {
		t.Fatalf("KILL for the victim by the intruder: %d %q, want 400", code, body)
	}

	// The victim was never failed over and still acts.
	victim.noEvent(scheduler.Event_ERROR, 300*time.Millisecond)
	if err := victim.call(kill); err != nil {
		t.Fatalf("the victim's own call: %v", err)
	}
	var se *httpapi.StatusError
	if err := victim.call(&scheduler.Call{FrameworkId: kill.FrameworkId, Type: scheduler.Call_REVIVE.Enum()}); errors.As(err, &se) {
		t.Fatalf("the victim's REVIVE: %v", err)
	}
}

// With --authenticate_http_readonly the endpoints that show the cluster
// and the operator API want credentials (401 in Mesos' realm); /health,
// /redirect and /version do not.
func TestReadonlyEndpointsAuthenticate(t *testing.T) {
	tm := startMasterWith(t, func(c *master.Config) { c.ReadonlyCredentials = auth.Credentials{"ops": "pw"} })
	get := func(path string, h http.Header) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, tm.url(path), nil)
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
	}
	for _, p := range []string{"/state", "/master/state", "/state.json", "/frameworks", "/master/slaves", "/tasks", "/roles", "/flags", "/metrics/snapshot", "/state-summary"} {
		if code, realm := get(p, nil); code != http.StatusUnauthorized || realm != `Basic realm="mesos-master-readonly"` {
			t.Errorf("GET %s without credentials: %d %q, want 401 in mesos-master-readonly", p, code, realm)
		}
		if code, _ := get(p, auth.BasicHeader("ops", "pw")); code != http.StatusOK {
			t.Errorf("GET %s with credentials: %d, want 200", p, code)
		}
	}
	for _, p := range []string{"/health", "/version"} {
		if code, _ := get(p, nil); code != http.StatusOK {
			t.Errorf("GET %s without credentials: %d, want 200", p, code)
		}
	}
	body, _ := proto.Marshal(&masterapi.Call{Type: masterapi.Call_GET_STATE.Enum()})
	if code, _ := rawPost(t, tm.url("/api/v1"), map[string]string{"Content-Type": "application/x-protobuf", "Accept": "application/json"}, body); code != http.StatusUnauthorized {
		t.Errorf("operator GET_STATE without credentials: %d, want 401", code)
	}
}
