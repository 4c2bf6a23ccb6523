package master_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/api/v1/scheduler"
	"github.com/corral/corral/internal/testsupport"
	"google.golang.org/protobuf/proto"
)

// TestSchedulerRefusalsMatchMesos: the status and reason of each refusal
// are those of Mesos' Master::Http::scheduler (src/master/http.cpp), which
// clients branch on (mesos-go: 400 malformed, 403 subscribe again).
func TestSchedulerRefusalsMatchMesos(t *testing.T) {
	tm := startMaster(t)
	s := subscribe(t, tm, codec.JSON)
	// A framework that is known but not connected: it failed over.
	gone := subscribe(t, tm, codec.JSON, func(fi *mesos.FrameworkInfo) { fi.FailoverTimeout = proto.Float64(60) })
	_ = gone.sub.Close()
	testsupport.Eventually(t, "the failed-over framework to disconnect", 5*time.Second, func() bool {
		for _, fw := range getState(t, tm).Frameworks {
			if fw.ID == gone.id {
				return !fw.Connected
			}
		}
		return false
	})

	ctJSON := "application/json"
	revive := func(fwID string) string { return `{"type":"REVIVE","framework_id":{"value":"` + fwID + `"}}` }
	subscribeBody := `{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"n"}}}`
	for _, c := range []struct {
		name   string
		path   string
		header map[string]string
		body   string
		want   int
		reason string
	}{
		{"non-SUBSCRIBE without Mesos-Stream-Id", "/api/v1/scheduler", map[string]string{"Content-Type": ctJSON}, revive(s.id),
			http.StatusBadRequest, "All non-subscribe calls should include the 'Mesos-Stream-Id' header"},
		{"wrong Mesos-Stream-Id", "/api/v1/scheduler", map[string]string{"Content-Type": ctJSON, "Mesos-Stream-Id": "not-it"}, revive(s.id),
			http.StatusBadRequest, "The stream ID 'not-it' included in this request didn't match the stream ID currently associated with framework ID " + s.id},
		{"empty Mesos-Stream-Id", "/api/v1/scheduler", map[string]string{"Content-Type": ctJSON, "Mesos-Stream-Id": ""}, revive(s.id),
			http.StatusBadRequest, "didn't match the stream ID"},
		{"unknown framework", "/api/v1/scheduler", map[string]string{"Content-Type": ctJSON, "Mesos-Stream-Id": s.sub.StreamID}, revive("nope"),
			http.StatusBadRequest, "Framework cannot be found"},
		{"known framework, not connected", "/api/v1/scheduler", map[string]string{"Content-Type": ctJSON, "Mesos-Stream-Id": s.sub.StreamID}, revive(gone.id),
			http.StatusForbidden, "Framework is not subscribed"},
		{"SUBSCRIBE with Mesos-Stream-Id", "/api/v1/scheduler", map[string]string{"Content-Type": ctJSON, "Accept": ctJSON, "Mesos-Stream-Id": s.sub.StreamID}, subscribeBody,
			http.StatusBadRequest, "Subscribe calls should not include the 'Mesos-Stream-Id' header"},
		{"scheduler call without Content-Type", "/api/v1/scheduler", map[string]string{"Mesos-Stream-Id": s.sub.StreamID}, revive(s.id),
			http.StatusBadRequest, "Expecting 'Content-Type' to be present"},
		{"SUBSCRIBE without Content-Type", "/api/v1/scheduler", map[string]string{"Accept": ctJSON}, subscribeBody,
			http.StatusBadRequest, "Expecting 'Content-Type' to be present"},
		{"operator call without Content-Type", "/api/v1", nil, `{"type":"GET_HEALTH"}`,
			http.StatusBadRequest, "Expecting 'Content-Type' to be present"},
		{"unknown Content-Type stays 415", "/api/v1/scheduler", map[string]string{"Content-Type": "text/xml", "Mesos-Stream-Id": s.sub.StreamID}, revive(s.id),
			http.StatusUnsupportedMediaType, "unsupported media type"},
		{"the right stream", "/api/v1/scheduler", map[string]string{"Content-Type": ctJSON, "Mesos-Stream-Id": s.sub.StreamID}, revive(s.id),
			http.StatusAccepted, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body := rawPost(t, tm.url(c.path), c.header, []byte(c.body))
			if code != c.want {
				t.Fatalf("status %d (%s), want %d", code, body, c.want)
			}
			if !strings.Contains(body, c.reason) {
				t.Errorf("reason %q, want it to contain %q", body, c.reason)
			}
		})
	}
	// The refused SUBSCRIBE made no framework.
	if n := len(getState(t, tm).Frameworks); n != 2 {
		t.Errorf("%d frameworks after the refused SUBSCRIBE, want 2", n)
	}
}

// TestOfferResourceFormat: offers to frameworks without
// RESERVATION_REFINEMENT carry each resource's `role` ("*" or the reserved
// role) and no `reservations`; RESERVATION_REFINEMENT frameworks get the
// `reservations` stack and no `role`; allocation_info only for MULTI_ROLE
// frameworks — as Mesos' Master::offer writes them. What a framework sends
// back in the form it was offered is accepted.
func TestOfferResourceFormat(t *testing.T) {
	refinement := &mesos.FrameworkInfo_Capability{Type: mesos.FrameworkInfo_Capability_RESERVATION_REFINEMENT.Enum()}
	multi := &mesos.FrameworkInfo_Capability{Type: mesos.FrameworkInfo_Capability_MULTI_ROLE.Enum()}
	type want struct {
		role           string // "" means no role field
		reservedFor    string // the reservations stack's role; "" for none
		allocationRole string
	}
	for _, c := range []struct {
		name       string
		info       func(*mesos.FrameworkInfo)
		unreserved want
		reserved   *want // nil: reserved resources are not offered
	}{
		{"default role", func(fi *mesos.FrameworkInfo) {},
			want{role: "*"}, nil},
		{"role web", func(fi *mesos.FrameworkInfo) { fi.Role = proto.String("web") },
			want{role: "*"}, &want{role: "web"}},
		{"RESERVATION_REFINEMENT", func(fi *mesos.FrameworkInfo) {
			fi.Role = proto.String("web")
			fi.Capabilities = append(fi.Capabilities, refinement)
		}, want{}, &want{reservedFor: "web"}},
		{"MULTI_ROLE", func(fi *mesos.FrameworkInfo) {
			fi.Roles = []string{"web"}
			fi.Capabilities = append(fi.Capabilities, multi)
		}, want{role: "*", allocationRole: "web"}, &want{role: "web", allocationRole: "web"}},
		{"MULTI_ROLE and RESERVATION_REFINEMENT", func(fi *mesos.FrameworkInfo) {
			fi.Roles = []string{"web"}
			fi.Capabilities = append(fi.Capabilities, multi, refinement)
		}, want{allocationRole: "web"}, &want{reservedFor: "web", allocationRole: "web"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tm := startMaster(t)
			fa := connectFakeAgentWith(t, tm, "cpus:1;mem:512;cpus(web):1;mem(web):256", "", nil, nil)
			s := subscribe(t, tm, codec.JSON, c.info)
			o := s.offer(offerWait)
			if got := o.GetAllocationInfo().GetRole(); got != c.unreserved.allocationRole {
				t.Errorf("offer allocation_info.role %q, want %q", got, c.unreserved.allocationRole)
			}
			sawReserved := false
			for _, r := range o.GetResources() {
				w := c.unreserved
				if len(r.GetReservations()) > 0 || (r.Role != nil && r.GetRole() != "*") {
					sawReserved = true
					if c.reserved == nil {
						t.Errorf("reserved resource offered to a framework of another role: %v", r)
						continue
					}
					w = *c.reserved
				}
				if w.role == "" && r.Role != nil {
					t.Errorf("%s: role %q set, want none", r.GetName(), r.GetRole())
				}
				if w.role != "" && (r.Role == nil || r.GetRole() != w.role) {
					t.Errorf("%s: role %v, want %q", r.GetName(), r.Role, w.role)
				}
				switch rv := r.GetReservations(); {
				case w.reservedFor == "" && len(rv) > 0:
					t.Errorf("%s: reservations %v, want none", r.GetName(), rv)
				case w.reservedFor != "" && (len(rv) != 1 || rv[0].GetRole() != w.reservedFor || rv[0].GetType() != mesos.Resource_ReservationInfo_STATIC):
					t.Errorf("%s: reservations %v, want one STATIC for %s", r.GetName(), rv, w.reservedFor)
				}
				if got := r.GetAllocationInfo().GetRole(); got != w.allocationRole {
					t.Errorf("%s: allocation_info.role %q, want %q", r.GetName(), got, w.allocationRole)
				}
			}
			if c.reserved != nil && !sawReserved {
				t.Errorf("no reserved resource in the offer: %v", o.GetResources())
			}

			// The offered resources, sent back as they came, launch.
			ti := task("", "echo", o, "cpus:0.1", "true")
			ti.Resources = o.GetResources()
			s.launch(o, ti)
			if ev := fa.Next(cluster.Event_RUN_TASK); ev.GetRunTask().GetTask().GetTaskId().GetValue() != "echo" {
				t.Errorf("RUN_TASK for %v", ev.GetRunTask().GetTask().GetTaskId())
			}
			if ev := s.find(time.Second, func(ev *scheduler.Event) bool { return ev.GetType() == scheduler.Event_UPDATE }); ev != nil {
				t.Errorf("launch with the offered resources answered %v %s", ev.GetUpdate().GetStatus().GetState(), ev.GetUpdate().GetStatus().GetMessage())
			}
		})
	}
}

// rawGet fetches path without following redirects.
func rawGet(t *testing.T, url string) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}
