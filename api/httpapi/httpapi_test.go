package httpapi_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/httpapi"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/api/v1/scheduler"
	"google.golang.org/protobuf/proto"
)

// decodeServer answers 202 to a call DecodeCall accepts and records it.
func decodeServer(t *testing.T, got chan<- *scheduler.Call) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		call := &scheduler.Call{}
		if _, ok := httpapi.DecodeCall(w, r, call); !ok {
			return
		}
		got <- call
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestDecodeCall(t *testing.T) {
	got := make(chan *scheduler.Call, 1)
	srv := decodeServer(t, got)
	valid := `{"type":"DECLINE","framework_id":{"value":"f1"},"decline":{"offer_ids":[{"value":"o1"}]}}`
	for _, tc := range []struct {
		name, method, ctype, accept, body string
		status                            int
		reason                            string // in the plain-text answer
	}{
		{"json call", "POST", "application/json", "application/json", valid, 202, ""},
		{"accept any", "POST", "application/json", "*/*", valid, 202, ""},
		{"GET", "GET", "application/json", "", "", 405, "Expecting 'POST'"},
		{"unknown content type", "POST", "text/xml", "application/json", valid, 415, "unsupported media type"},
		{"no content type", "POST", "", "application/json", valid, 400, "Expecting 'Content-Type' to be present"},
		{"unacceptable accept", "POST", "application/json", "text/html", valid, 406, "unsupported media type"},
		{"malformed JSON", "POST", "application/json", "application/json", `{"type":`, 400, "Failed to parse body into Call"},
		{"unknown enum", "POST", "application/json", "application/json", `{"type":"NOPE"}`, 400, "NOPE"},
		{"wrong field type", "POST", "application/json", "application/json", `{"type":"DECLINE","framework_id":{"value":7}}`, 400, "framework_id"},
		{"garbage protobuf", "POST", "application/x-protobuf", "application/x-protobuf", "\xff\xff\xff", 400, "Failed to parse body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			if tc.accept != "" {
				req.Header.Set("Accept", tc.accept)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tc.status)
			}
			if !strings.Contains(string(body), tc.reason) {
				t.Errorf("answer %q does not give the reason %q", body, tc.reason)
			}
			if tc.status == 202 {
				call := <-got
				if call.GetType() != scheduler.Call_DECLINE || call.GetDecline().GetOfferIds()[0].GetValue() != "o1" {
					t.Errorf("decoded %v", call)
				}
			}
		})
	}
}

// A stream delivers queued events in order, heartbeats when silent, and
// drains its queue on Close; the client sees the stream ID and records in
// both codecs.
func TestStreamAndSubscribe(t *testing.T) {
	for _, c := range []codec.Codec{codec.JSON, codec.Protobuf} {
		t.Run(c.MediaType(), func(t *testing.T) {
			streams := make(chan *httpapi.Stream, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				call := &scheduler.Call{}
				resp, ok := httpapi.DecodeCall(w, r, call)
				if !ok {
					return
				}
				s := httpapi.NewStream(resp)
				s.Send(&scheduler.Event{Type: scheduler.Event_SUBSCRIBED.Enum()})
				streams <- s
				hb := &scheduler.Event{Type: scheduler.Event_HEARTBEAT.Enum()}
				s.Serve(w, r, "stream-1", hb, 50*time.Millisecond)
			}))
			defer srv.Close()

			cl := &httpapi.Client{URL: srv.URL, Codec: c}
			sub, err := cl.Subscribe(context.Background(), &scheduler.Call{Type: scheduler.Call_SUBSCRIBE.Enum()}, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			if sub.StreamID != "stream-1" || cl.StreamID() != "stream-1" {
				t.Fatalf("stream id %q / %q", sub.StreamID, cl.StreamID())
			}
			s := <-streams
			next := func() scheduler.Event_Type {
				t.Helper()
				ev := &scheduler.Event{}
				if err := sub.Next(ev); err != nil {
					t.Fatal(err)
				}
				return ev.GetType()
			}
			if got := next(); got != scheduler.Event_SUBSCRIBED {
				t.Fatalf("first event %v", got)
			}
			// Nothing queued: a heartbeat comes.
			if got := next(); got != scheduler.Event_HEARTBEAT {
				t.Fatalf("silent stream sent %v, want HEARTBEAT", got)
			}
			for i := 0; i < 100; i++ {
				s.Send(&scheduler.Event{Type: scheduler.Event_MESSAGE.Enum(), Message: &scheduler.Event_Message{
					AgentId: &mesos.AgentID{Value: proto.String("a")}, ExecutorId: &mesos.ExecutorID{Value: proto.String("e")}, Data: []byte{byte(i)}}})
			}
			s.Close()
			for i := 0; i < 100; {
				ev := &scheduler.Event{}
				if err := sub.Next(ev); err != nil {
					t.Fatalf("after %d messages: %v", i, err)
				}
				if ev.GetType() == scheduler.Event_HEARTBEAT {
					continue
				}
				if d := ev.GetMessage().GetData(); len(d) != 1 || int(d[0]) != i {
					t.Fatalf("message %d carries %v: out of order", i, d)
				}
				i++
			}
			if err := sub.Next(&scheduler.Event{}); !errors.Is(err, io.EOF) {
				t.Fatalf("after Close: %v, want EOF", err)
			}
			<-s.Done()
			if s.Send(&scheduler.Event{}) {
				t.Error("Send on an ended stream reported success")
			}
		})
	}
}

// A silent peer is noticed by the idle timeout rather than hanging Next.
func TestSubscribeIdleTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	cl := &httpapi.Client{URL: srv.URL, Codec: codec.JSON}
	sub, err := cl.Subscribe(context.Background(), &scheduler.Call{Type: scheduler.Call_SUBSCRIBE.Enum()}, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	done := make(chan error, 1)
	go func() { done <- sub.Next(&scheduler.Event{}) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Next succeeded on a silent stream")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Next still blocked long after the idle timeout")
	}
}

func TestCallStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(http.StatusAccepted)
		case "/resp":
			httpapi.Respond(w, codec.JSON, &mesos.FrameworkID{Value: proto.String("f1")})
		case "/redirect":
			w.Header().Set("Location", "//leader:5050/api/v1/scheduler")
			w.WriteHeader(http.StatusTemporaryRedirect)
		default:
			httpapi.Error(w, http.StatusForbidden, "no such subscription")
		}
	}))
	defer srv.Close()
	call := &scheduler.Call{Type: scheduler.Call_REVIVE.Enum()}
	for _, tc := range []struct {
		path     string
		code     int // 0: success
		location string
	}{
		{"/ok", 0, ""}, {"/resp", 0, ""}, {"/redirect", 307, "//leader:5050/api/v1/scheduler"}, {"/forbidden", 403, ""},
	} {
		cl := &httpapi.Client{URL: srv.URL + tc.path, Codec: codec.JSON}
		var out mesos.FrameworkID
		err := cl.Call(context.Background(), call, &out)
		if tc.code == 0 {
			if err != nil {
				t.Errorf("%s: %v", tc.path, err)
			}
			if tc.path == "/resp" && out.GetValue() != "f1" {
				t.Errorf("%s: decoded %v", tc.path, &out)
			}
			continue
		}
		var se *httpapi.StatusError
		if !errors.As(err, &se) || se.Code != tc.code || se.Location != tc.location {
			t.Errorf("%s: %v, want status %d location %q", tc.path, err, tc.code, tc.location)
		}
		if tc.code == 403 && !strings.Contains(se.Message, "no such subscription") {
			t.Errorf("403 message %q lost the reason", se.Message)
		}
	}
}
