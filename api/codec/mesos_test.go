package codec

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/api/v1/scheduler"
)

// TestMesosSubscribeCall decodes a SUBSCRIBE as real Mesos clients send it.
func TestMesosSubscribeCall(t *testing.T) {
	in := `{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"root","name":"x","roles":null,"failover_timeout":3600}}}`
	var call scheduler.Call
	if err := JSON.Unmarshal([]byte(in), &call); err != nil {
		t.Fatal(err)
	}
	want := &scheduler.Call{
		Type: scheduler.Call_SUBSCRIBE.Enum(),
		Subscribe: &scheduler.Call_Subscribe{FrameworkInfo: &mesos.FrameworkInfo{
			User: proto.String("root"), Name: proto.String("x"), FailoverTimeout: proto.Float64(3600),
		}},
	}
	if !proto.Equal(&call, want) {
		t.Fatalf("got %v, want %v", &call, want)
	}

	// A missing required field is reported with its path, for the 400 body.
	err := JSON.Unmarshal([]byte(`{"type":"SUBSCRIBE","subscribe":{"framework_info":{"name":"x"}}}`), &scheduler.Call{})
	if want := "invalid JSON for mesos.v1.scheduler.Call: missing required field subscribe.framework_info.user"; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
}

// TestMesosOfferEvent encodes an OFFERS event with 64-bit fields (port ranges
// are uint64, times int64) and checks they are JSON numbers.
func TestMesosOfferEvent(t *testing.T) {
	ev := &scheduler.Event{
		Type: scheduler.Event_OFFERS.Enum(),
		Offers: &scheduler.Event_Offers{Offers: []*mesos.Offer{{
			Id:          &mesos.OfferID{Value: proto.String("o1")},
			FrameworkId: &mesos.FrameworkID{Value: proto.String("f1")},
			AgentId:     &mesos.AgentID{Value: proto.String("a1")},
			Hostname:    proto.String("h"),
			Url: &mesos.URL{Scheme: proto.String("http"),
				Address: &mesos.Address{Ip: proto.String("10.0.0.1"), Port: proto.Int32(5051)}},
			Resources: []*mesos.Resource{{
				Name: proto.String("ports"), Type: mesos.Value_RANGES.Enum(),
				Ranges: &mesos.Value_Ranges{Range: []*mesos.Value_Range{{Begin: proto.Uint64(31000), End: proto.Uint64(1<<63 + 5)}}},
			}},
			Unavailability: &mesos.Unavailability{Start: &mesos.TimeInfo{Nanoseconds: proto.Int64(1700000000123456789)}},
		}}},
	}
	b, err := JSON.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		`"framework_id":{"value":"f1"}`,
		`"url":{"scheme":"http","address":{"ip":"10.0.0.1","port":5051}}`,
		`"resources":[{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":9223372036854775813}]}}]`,
		`"unavailability":{"start":{"nanoseconds":1700000000123456789}}`,
		`"type":"OFFERS"`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %s\n%s", want, s)
		}
	}
	if strings.Contains(s, `"role"`) {
		t.Errorf("unset proto2 default written: %s", s)
	}
	var back scheduler.Event
	if err := JSON.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&back, ev) {
		t.Fatalf("round trip: got %v, want %v", &back, ev)
	}
}
