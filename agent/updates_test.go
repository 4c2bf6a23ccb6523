package agent

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/ids"
	"google.golang.org/protobuf/proto"
)

// never is a retry interval long enough that no retry happens in a test.
const never = time.Hour

type sentUpdate struct {
	at time.Time
	u  *cluster.StatusUpdate
}

// recorder collects what the update manager sends and acknowledges.
type recorder struct {
	mu    sync.Mutex
	sent  []sentUpdate
	acked []*cluster.StatusUpdate
	ch    chan *cluster.StatusUpdate
}

func newRecorder() *recorder { return &recorder{ch: make(chan *cluster.StatusUpdate, 10000)} }

func (r *recorder) send(u *cluster.StatusUpdate) {
	r.mu.Lock()
	r.sent = append(r.sent, sentUpdate{time.Now(), u})
	r.mu.Unlock()
	r.ch <- u
}

func (r *recorder) ack(u *cluster.StatusUpdate) {
	r.mu.Lock()
	r.acked = append(r.acked, u)
	r.mu.Unlock()
}

func (r *recorder) sends() []sentUpdate {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sentUpdate(nil), r.sent...)
}

func (r *recorder) ackedList() []*cluster.StatusUpdate {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*cluster.StatusUpdate(nil), r.acked...)
}

// next waits for the next send.
func (r *recorder) next(t *testing.T) *cluster.StatusUpdate {
	t.Helper()
	select {
	case u := <-r.ch:
		return u
	case <-time.After(5 * time.Second):
		t.Fatal("no update sent within 5s")
		return nil
	}
}

// none checks that nothing is sent within d.
func (r *recorder) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case u := <-r.ch:
		t.Fatalf("unexpected send of %s", describe(u))
	case <-time.After(d):
	}
}

func describe(u *cluster.StatusUpdate) string {
	return fmt.Sprintf("%s/%s %v %s", u.GetFrameworkId().GetValue(), u.GetStatus().GetTaskId().GetValue(),
		u.GetStatus().GetState(), ids.FormatUUID(u.GetStatus().GetUuid()))
}

func newTestManager(retryMin, retryMax time.Duration) (*updateManager, *recorder) {
	r := newRecorder()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return newUpdateManager(log, retryMin, retryMax, r.send, r.ack), r
}

func mkUpdate(fw, task string, state mesos.TaskState) *cluster.StatusUpdate {
	return &cluster.StatusUpdate{
		FrameworkId: &mesos.FrameworkID{Value: proto.String(fw)},
		Status: &mesos.TaskStatus{
			TaskId: &mesos.TaskID{Value: proto.String(task)},
			State:  state.Enum(),
			Uuid:   ids.UUID(),
		},
		LatestState: state.Enum(),
	}
}

func ackOf(m *updateManager, u *cluster.StatusUpdate) bool {
	return m.Acknowledge(u.GetFrameworkId().GetValue(), u.GetStatus().GetTaskId().GetValue(), u.GetStatus().GetUuid())
}

// same compares updates as delivered: the head of a stream goes out with
// latest_state set to the stream's newest state, so that field is left out.
func same(a, b *cluster.StatusUpdate) bool {
	if a == b {
		return true
	}
	a, b = proto.Clone(a).(*cluster.StatusUpdate), proto.Clone(b).(*cluster.StatusUpdate)
	a.LatestState, b.LatestState = nil, nil
	return proto.Equal(a, b)
}

func TestUpdatesInOrderHeadOnly(t *testing.T) {
	m, r := newTestManager(never, never)
	m.Connected(true)
	u1 := mkUpdate("fw", "t1", mesos.TaskState_TASK_STARTING)
	u2 := mkUpdate("fw", "t1", mesos.TaskState_TASK_RUNNING)
	u3 := mkUpdate("fw", "t1", mesos.TaskState_TASK_FINISHED)
	m.Update(u1)
	m.Update(u2)
	m.Update(u3)

	if got := r.next(t); !same(got, u1) {
		t.Fatalf("first send = %s, want %s", describe(got), describe(u1))
	}
	r.none(t, 100*time.Millisecond) // only the head is in flight
	if p := m.Pending("fw", "t1"); len(p) != 3 || !same(p[0], u1) || !same(p[1], u2) || !same(p[2], u3) {
		t.Fatalf("Pending = %d updates, want u1,u2,u3", len(p))
	}

	for i, pair := range [][2]*cluster.StatusUpdate{{u1, u2}, {u2, u3}} {
		if !ackOf(m, pair[0]) {
			t.Fatalf("ack %d of the head was not accepted", i)
		}
		if got := r.next(t); !same(got, pair[1]) {
			t.Fatalf("after ack %d sent %s, want %s", i, describe(got), describe(pair[1]))
		}
		r.none(t, 50*time.Millisecond)
	}
	if !ackOf(m, u3) {
		t.Fatal("terminal ack not accepted")
	}
	r.none(t, 50*time.Millisecond)
	if p := m.Pending("fw", "t1"); len(p) != 0 {
		t.Errorf("Pending after all acks = %d", len(p))
	}
	acked := r.ackedList()
	if len(acked) != 3 || !same(acked[0], u1) || !same(acked[1], u2) || !same(acked[2], u3) {
		t.Errorf("acked callback got %d updates, want u1,u2,u3 in order", len(acked))
	}
}

func TestUpdatesRetryBackoff(t *testing.T) {
	const minD, maxD = 40 * time.Millisecond, 160 * time.Millisecond
	m, r := newTestManager(minD, maxD)
	m.Connected(true)
	u := mkUpdate("fw", "t1", mesos.TaskState_TASK_RUNNING)
	m.Update(u)
	const n = 7
	for range n {
		if got := r.next(t); !same(got, u) {
			t.Fatalf("sent %s, want the head %s", describe(got), describe(u))
		}
	}
	m.Drop("fw") // stop retries before reading the times
	s := r.sends()[:n]
	want := []time.Duration{40, 80, 160, 160, 160, 160}
	for i := 1; i < n; i++ {
		gap := s[i].at.Sub(s[i-1].at)
		exp := want[i-1] * time.Millisecond
		// Timers never fire early; the send runs in a goroutine, so allow
		// a little scheduling slack either way.
		if gap < exp-15*time.Millisecond || gap > exp+150*time.Millisecond {
			t.Errorf("gap %d = %v, want about %v (backoff doubling from %v up to %v)", i, gap, exp, minD, maxD)
		}
	}
}

// A send waiting for its way to the master (behind other calls, under
// load) is not lost: it is not resent while it waits, and its retry counts
// from when it went out. (A timer started at the queue resent every head
// waiting longer than the retry interval: duplicates in a healthy run.)
func TestUpdatesRetryCountsFromTheSend(t *testing.T) {
	const retry = 20 * time.Millisecond
	r := newRecorder()
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(1)
	var first sync.Once
	send := func(u *cluster.StatusUpdate) {
		blocked := false
		first.Do(func() { blocked = true; started.Done() })
		if blocked {
			<-release // the first send waits, as behind a full slot queue
		}
		r.send(u)
	}
	m := newUpdateManager(slog.New(slog.NewTextHandler(io.Discard, nil)), retry, retry, send, r.ack)
	m.Connected(true)
	u := mkUpdate("fw", "t1", mesos.TaskState_TASK_RUNNING)
	m.Update(u)
	started.Wait()
	// Ten retry intervals with the first send still waiting: nothing more
	// goes out.
	r.none(t, 10*retry)
	close(release)
	if got := r.next(t); !same(got, u) {
		t.Fatalf("sent %s, want %s", describe(got), describe(u))
	}
	// Unacknowledged, it is resent one interval after it went out.
	if got := r.next(t); !same(got, u) {
		t.Fatalf("resent %s, want %s", describe(got), describe(u))
	}
	ackOf(m, u)
	m.Drop("fw")
	if s := r.sends(); s[1].at.Sub(s[0].at) < retry-5*time.Millisecond {
		t.Errorf("resent %v after the send, want at least the retry interval %v", s[1].at.Sub(s[0].at), retry)
	}
}

func TestUpdatesAckOfHeadResetsBackoff(t *testing.T) {
	const minD, maxD = 30 * time.Millisecond, 240 * time.Millisecond
	m, r := newTestManager(minD, maxD)
	m.Connected(true)
	u1 := mkUpdate("fw", "t1", mesos.TaskState_TASK_STARTING)
	u2 := mkUpdate("fw", "t1", mesos.TaskState_TASK_RUNNING)
	m.Update(u1)
	m.Update(u2)
	for range 4 { // 0, 30, 90, 210 ms: backoff is now 240
		r.next(t)
	}
	if !ackOf(m, u1) {
		t.Fatal("ack refused")
	}
	var first time.Time
	for i := range 2 {
		got := r.next(t)
		if !same(got, u2) {
			t.Fatalf("sent %s, want u2", describe(got))
		}
		if i == 0 {
			first = time.Now()
		}
	}
	if gap := time.Since(first); gap > minD+150*time.Millisecond {
		t.Errorf("first retry of the new head after %v, want about %v (backoff reset)", gap, minD)
	}
	m.Drop("fw")
}

func TestUpdatesUnexpectedAndDuplicateAcks(t *testing.T) {
	m, r := newTestManager(never, never)
	m.Connected(true)
	u1 := mkUpdate("fw", "t1", mesos.TaskState_TASK_STARTING)
	u2 := mkUpdate("fw", "t1", mesos.TaskState_TASK_RUNNING)
	m.Update(u1)
	m.Update(u2)
	r.next(t)

	cases := []struct {
		name       string
		fw, task   string
		uuid       []byte
		wantResult bool
	}{
		{"non-head uuid", "fw", "t1", u2.GetStatus().GetUuid(), false},
		{"random uuid", "fw", "t1", ids.UUID(), false},
		{"short uuid", "fw", "t1", []byte{1, 2, 3}, false},
		{"unknown task", "fw", "nope", u1.GetStatus().GetUuid(), false},
		{"unknown framework", "other", "t1", u1.GetStatus().GetUuid(), false},
	}
	for _, c := range cases {
		if got := m.Acknowledge(c.fw, c.task, c.uuid); got != c.wantResult {
			t.Errorf("%s: Acknowledge = %v, want %v", c.name, got, c.wantResult)
		}
	}
	r.none(t, 50*time.Millisecond)
	if p := m.Pending("fw", "t1"); len(p) != 2 {
		t.Fatalf("ignored acks changed the stream: Pending = %d", len(p))
	}
	if len(r.ackedList()) != 0 {
		t.Fatal("acked callback ran for an ignored ack")
	}

	if !ackOf(m, u1) {
		t.Fatal("head ack refused")
	}
	if got := r.next(t); !same(got, u2) {
		t.Fatalf("sent %s, want u2", describe(got))
	}
	// The same ack again (the scheduler retried): ignored, nothing resent.
	if ackOf(m, u1) {
		t.Error("duplicate ack accepted")
	}
	r.none(t, 50*time.Millisecond)
	if p := m.Pending("fw", "t1"); len(p) != 1 || !same(p[0], u2) {
		t.Errorf("Pending after duplicate ack = %d, want [u2]", len(p))
	}
	if n := len(r.ackedList()); n != 1 {
		t.Errorf("acked callback ran %d times, want 1", n)
	}
}

func TestUpdatesTerminalAckRemovesStream(t *testing.T) {
	for _, state := range []mesos.TaskState{
		mesos.TaskState_TASK_FINISHED, mesos.TaskState_TASK_FAILED, mesos.TaskState_TASK_KILLED,
		mesos.TaskState_TASK_ERROR, mesos.TaskState_TASK_LOST, mesos.TaskState_TASK_DROPPED, mesos.TaskState_TASK_GONE,
	} {
		t.Run(state.String(), func(t *testing.T) {
			m, r := newTestManager(never, never)
			m.Connected(true)
			run := mkUpdate("fw", "t1", mesos.TaskState_TASK_RUNNING)
			end := mkUpdate("fw", "t1", state)
			m.Update(run)
			m.Update(end)
			r.next(t)
			ackOf(m, run)
			r.next(t)
			m.mu.Lock()
			_, present := m.streams[streamKey("fw", "t1")]
			m.mu.Unlock()
			if !present {
				t.Fatal("stream gone before its terminal ack")
			}
			if !ackOf(m, end) {
				t.Fatal("terminal ack refused")
			}
			m.mu.Lock()
			_, present = m.streams[streamKey("fw", "t1")]
			m.mu.Unlock()
			if present {
				t.Error("stream still present after its terminal update was acknowledged")
			}
			if ackOf(m, end) {
				t.Error("ack after the stream closed accepted")
			}
		})
	}
	t.Run("non-terminal keeps stream", func(t *testing.T) {
		m, r := newTestManager(never, never)
		m.Connected(true)
		run := mkUpdate("fw", "t1", mesos.TaskState_TASK_RUNNING)
		m.Update(run)
		r.next(t)
		ackOf(m, run)
		m.mu.Lock()
		_, present := m.streams[streamKey("fw", "t1")]
		m.mu.Unlock()
		if !present {
			t.Error("stream removed after a non-terminal ack")
		}
		// A later update goes out at once.
		fin := mkUpdate("fw", "t1", mesos.TaskState_TASK_FINISHED)
		m.Update(fin)
		if got := r.next(t); !same(got, fin) {
			t.Errorf("sent %s", describe(got))
		}
	})
}

func TestUpdatesPauseAndResume(t *testing.T) {
	m, r := newTestManager(20*time.Millisecond, 40*time.Millisecond)

	// Not connected yet: queued, not sent.
	a1 := mkUpdate("fw", "a", mesos.TaskState_TASK_RUNNING)
	m.Update(a1)
	r.none(t, 100*time.Millisecond)

	m.Connected(true)
	if got := r.next(t); !same(got, a1) {
		t.Fatalf("sent %s on connect, want a1", describe(got))
	}
	// It retries while connected ...
	if got := r.next(t); !same(got, a1) {
		t.Fatalf("retry sent %s", describe(got))
	}
	// ... and stops when the link goes down, for new updates too.
	m.Connected(false)
	drain(r)
	b1 := mkUpdate("fw", "b", mesos.TaskState_TASK_RUNNING)
	m.Update(b1)
	r.none(t, 200*time.Millisecond)

	// Acks that arrive while down still advance the stream, without sending.
	a2 := mkUpdate("fw", "a", mesos.TaskState_TASK_FINISHED)
	m.Update(a2)
	if !ackOf(m, a1) {
		t.Fatal("ack while disconnected refused")
	}
	r.none(t, 100*time.Millisecond)

	// Back: every stream's head is sent once, at once.
	m.Connected(true)
	got := map[string]*cluster.StatusUpdate{}
	for range 2 {
		u := r.next(t)
		got[u.GetStatus().GetTaskId().GetValue()] = u
	}
	if !same(got["a"], a2) || !same(got["b"], b1) {
		t.Errorf("resent heads a=%v b=%v, want a2 and b1", got["a"] != nil, got["b"] != nil)
	}
	m.Connected(false)
}

// drain discards sends that were already in flight.
func drain(r *recorder) {
	time.Sleep(30 * time.Millisecond)
	for {
		select {
		case <-r.ch:
		default:
			return
		}
	}
}

func TestUpdatesDrop(t *testing.T) {
	m, r := newTestManager(20*time.Millisecond, 20*time.Millisecond)
	m.Connected(true)
	f1 := mkUpdate("fw1", "t", mesos.TaskState_TASK_RUNNING)
	f1b := mkUpdate("fw1", "u", mesos.TaskState_TASK_RUNNING)
	f2 := mkUpdate("fw2", "t", mesos.TaskState_TASK_RUNNING)
	m.Update(f1)
	m.Update(f1b)
	m.Update(f2)
	for range 3 {
		r.next(t)
	}
	m.Drop("fw1")
	drain(r)
	if p := m.Pending("fw1", "t"); p != nil {
		t.Errorf("Pending(fw1) after Drop = %d", len(p))
	}
	if ackOf(m, f1) {
		t.Error("ack for a dropped framework accepted")
	}
	// fw2 keeps retrying; fw1 never shows up again.
	deadline := time.After(200 * time.Millisecond)
	n := 0
loop:
	for {
		select {
		case u := <-r.ch:
			if u.GetFrameworkId().GetValue() != "fw2" {
				t.Fatalf("dropped framework's update sent: %s", describe(u))
			}
			n++
		case <-deadline:
			break loop
		}
	}
	if n == 0 {
		t.Error("fw2's update was not retried after Drop(fw1)")
	}
	if p := m.Pending("fw2", "t"); len(p) != 1 {
		t.Errorf("Pending(fw2) = %d, want 1", len(p))
	}
	m.Drop("fw2")
}

// A stream whose updates were all acknowledged (task still running) is idle
// but still kept; Drop must forget it too, or every torn-down framework
// leaves one stream per running task behind.
func TestUpdatesDropForgetsIdleStreams(t *testing.T) {
	m, r := newTestManager(never, never)
	m.Connected(true)
	u := mkUpdate("fw1", "t", mesos.TaskState_TASK_RUNNING)
	m.Update(u)
	r.next(t)
	ackOf(m, u)
	m.Drop("fw1")
	m.mu.Lock()
	defer m.mu.Unlock()
	for key := range m.streams {
		t.Errorf("stream %q of the dropped framework kept", key)
	}
}

func TestUpdatesManyTasksInterleaved(t *testing.T) {
	const tasks, perTask = 40, 6
	r := newRecorder()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var m *updateManager

	var mu sync.Mutex
	inFlight := map[string]bool{}
	seen := map[string][]int{}
	var fail []string
	send := func(u *cluster.StatusUpdate) {
		key := u.GetStatus().GetTaskId().GetValue()
		mu.Lock()
		if inFlight[key] {
			fail = append(fail, "two updates of "+key+" in flight")
		}
		inFlight[key] = true
		seen[key] = append(seen[key], int(u.GetStatus().GetTimestamp()))
		mu.Unlock()
		// The "scheduler" acknowledges asynchronously.
		go func() {
			time.Sleep(time.Millisecond)
			mu.Lock()
			inFlight[key] = false
			mu.Unlock()
			if !ackOf(m, u) {
				mu.Lock()
				fail = append(fail, "ack of the head refused: "+describe(u))
				mu.Unlock()
			}
		}()
	}
	m = newUpdateManager(log, never, never, send, r.ack)
	m.Connected(true)

	var wg sync.WaitGroup
	for i := range tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			task := fmt.Sprintf("task-%d", i)
			for j := range perTask {
				state := mesos.TaskState_TASK_RUNNING
				if j == perTask-1 {
					state = mesos.TaskState_TASK_FINISHED
				}
				u := mkUpdate("fw", task, state)
				u.Status.Timestamp = proto.Float64(float64(j))
				m.Update(u)
			}
		}()
	}
	wg.Wait()

	deadline := time.Now().Add(10 * time.Second)
	for {
		if len(r.ackedList()) == tasks*perTask || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, f := range fail {
		t.Error(f)
	}
	for i := range tasks {
		key := fmt.Sprintf("task-%d", i)
		got := seen[key]
		if len(got) != perTask {
			t.Errorf("%s: %d sends, want %d", key, len(got), perTask)
			continue
		}
		for j, v := range got {
			if v != j {
				t.Errorf("%s: send order %v, want 0..%d", key, got, perTask-1)
				break
			}
		}
	}
	// The acked callback sees each task's updates in order too.
	order := map[string]int{}
	for _, u := range r.ackedList() {
		key := u.GetStatus().GetTaskId().GetValue()
		if int(u.GetStatus().GetTimestamp()) != order[key] {
			t.Errorf("%s: acked #%v out of order (expected #%d)", key, u.GetStatus().GetTimestamp(), order[key])
		}
		order[key]++
	}
	if n := len(r.ackedList()); n != tasks*perTask {
		t.Errorf("acked %d updates, want %d", n, tasks*perTask)
	}
	m.mu.Lock()
	left := len(m.streams)
	m.mu.Unlock()
	if left != 0 {
		t.Errorf("%d streams left after every task's terminal ack", left)
	}
}

// TestUpdatesRecover: a stream restored from the checkpoints is resent in
// order once connected (not before), an ack of an update acknowledged
// before the restart is a duplicate, and the next ack moves the head on.
func TestUpdatesRecover(t *testing.T) {
	m, r := newTestManager(never, never)
	old := mkUpdate("fw", "t1", mesos.TaskState_TASK_STARTING)
	run := mkUpdate("fw", "t1", mesos.TaskState_TASK_RUNNING)
	fin := mkUpdate("fw", "t1", mesos.TaskState_TASK_FINISHED)
	m.Recover("fw", "t1", []*cluster.StatusUpdate{run, fin}, [][]byte{old.GetStatus().GetUuid()})
	m.Recover("fw", "idle", nil, nil) // nothing pending: no stream
	r.none(t, 20*time.Millisecond)
	m.Connected(true)
	got := r.next(t)
	if !same(got, run) {
		t.Fatalf("first resend %s, want %s", describe(got), describe(run))
	}
	if got.GetLatestState() != mesos.TaskState_TASK_FINISHED {
		t.Errorf("resent head carries latest_state %v, want TASK_FINISHED (the stream's newest)", got.GetLatestState())
	}
	r.none(t, 20*time.Millisecond)
	if ackOf(m, old) {
		t.Error("ack of an update acknowledged before the restart accepted")
	}
	if !ackOf(m, run) {
		t.Fatal("ack of the head refused")
	}
	if got := r.next(t); !same(got, fin) {
		t.Fatalf("then %s, want %s", describe(got), describe(fin))
	}
	m.mu.Lock()
	_, idle := m.streams[streamKey("fw", "idle")]
	m.mu.Unlock()
	if idle {
		t.Error("a stream was made for a task with nothing pending")
	}
}

// TestUpdatesCheckpointAck: an acknowledgement is made durable before the
// update leaves the queue; when that fails the update stays the head.
func TestUpdatesCheckpointAck(t *testing.T) {
	m, r := newTestManager(never, never)
	var recorded []*cluster.StatusUpdate
	fail := true
	m.checkpointAck = func(u *cluster.StatusUpdate) error {
		if fail {
			return fmt.Errorf("disk full")
		}
		recorded = append(recorded, u)
		return nil
	}
	m.Connected(true)
	run := mkUpdate("fw", "t1", mesos.TaskState_TASK_RUNNING)
	m.Update(run)
	r.next(t)
	if ackOf(m, run) {
		t.Fatal("ack accepted though it could not be recorded")
	}
	if p := m.Pending("fw", "t1"); len(p) != 1 || len(r.ackedList()) != 0 {
		t.Fatalf("after a failed checkpoint: pending %d, acked %d; want the update still queued", len(p), len(r.ackedList()))
	}
	fail = false
	if !ackOf(m, run) {
		t.Fatal("ack refused")
	}
	if len(recorded) != 1 || !same(recorded[0], run) || len(m.Pending("fw", "t1")) != 0 {
		t.Fatalf("recorded %d acks, pending %d", len(recorded), len(m.Pending("fw", "t1")))
	}
}
