package scheduler

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

// Stop(false) must get its TEARDOWN to the master before the event stream
// closes: a framework without failover_timeout is removed the moment its
// stream drops, and a TEARDOWN arriving after that is refused (400). Events
// arriving right as Stop runs (here a heartbeat every few milliseconds) used
// to make the driver close the stream first.
func TestStopTearsDownWhileEventsArrive(t *testing.T) {
	m := startMaster(t, 2*time.Millisecond)
	for i := range 10 {
		info := frameworkInfo("stop-race")
		info.FailoverTimeout = proto.Float64(0)
		r := newRecorder()
		// Many missed heartbeats: only Stop may end these streams.
		d, err := New(Config{Master: m.addr, Framework: info, MissedHeartbeats: 1000, Log: testLogger(t)}, r)
		if err != nil {
			t.Fatal(err)
		}
		errc := runDriver(t, d)
		id := r.next(t, "registered").id.GetValue()
		time.Sleep(10 * time.Millisecond) // heartbeats flowing
		if err := d.Stop(false); err != nil {
			t.Fatalf("round %d: Stop(false): %v", i, err)
		}
		if err := waitErr(t, errc); err != nil {
			t.Fatalf("round %d: Run after Stop: %v", i, err)
		}
		if st := m.state(t); !contains(frameworkIDs(st, "completed_frameworks"), id) {
			t.Fatalf("round %d: framework %s not torn down", i, id)
		}
	}
}
