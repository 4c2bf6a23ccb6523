package agent

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/internal/ids"
	"google.golang.org/protobuf/proto"
)

// updateManager delivers each task's status updates to the master in order:
// one stream per task, only its head in flight, resent with backoff until the
// scheduler's acknowledgement (by uuid) arrives. While the master link is
// down the streams pause, and resume when it returns.
type updateManager struct {
	log      *slog.Logger
	retryMin time.Duration
	retryMax time.Duration
	// send posts one update to the master; errors are left to the retry.
	send func(*cluster.StatusUpdate)
	// acked is told of every acknowledged update, in order.
	acked func(*cluster.StatusUpdate)
	// checkpointAck, when set, makes an acknowledgement durable before it
	// is acted on (the update leaves the retry queue); an error leaves the
	// update queued, to be resent and acknowledged again.
	checkpointAck func(*cluster.StatusUpdate) error

	mu        sync.Mutex
	connected bool
	streams   map[string]*updateStream
}

type updateStream struct {
	key     string
	pending []*cluster.StatusUpdate
	// acking is set while an acknowledgement is handled (checkpointed,
	// then told to the acked callback).
	acking bool
	// done holds the uuids already acknowledged, to tell a duplicate ack
	// from an unexpected one.
	done    [][]byte
	timer   *time.Timer
	backoff time.Duration
	// sends counts the head's sends: a finished send arms the retry only
	// if no later send of the stream started meanwhile.
	sends uint64
}

func newUpdateManager(log *slog.Logger, retryMin, retryMax time.Duration, send, acked func(*cluster.StatusUpdate)) *updateManager {
	return &updateManager{log: log, retryMin: retryMin, retryMax: retryMax, send: send, acked: acked, streams: map[string]*updateStream{}}
}

func streamKey(fwID, taskID string) string { return fwID + "/" + taskID }

// Recover restores a task's stream as the agent's checkpoints left it:
// pending are its unacknowledged updates, oldest first, to be resent in
// that order once the master link is up; acked are the uuids of updates
// already acknowledged, so that an acknowledgement repeated after the
// restart is recognised as a duplicate. Nothing is sent now.
func (m *updateManager) Recover(fwID, taskID string, pending []*cluster.StatusUpdate, acked [][]byte) {
	if len(pending) == 0 {
		return
	}
	key := streamKey(fwID, taskID)
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.streams[key]
	if s == nil {
		s = &updateStream{key: key}
		m.streams[key] = s
	}
	s.pending = append(s.pending, pending...)
	s.done = append(s.done, acked...)
	if len(s.done) > 16 {
		s.done = s.done[len(s.done)-16:]
	}
	if len(s.pending) == len(pending) {
		m.sendHead(s)
	}
}

// Update queues an update; it goes out at once if it is the stream's head.
func (m *updateManager) Update(u *cluster.StatusUpdate) {
	key := streamKey(u.GetFrameworkId().GetValue(), u.GetStatus().GetTaskId().GetValue())
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.streams[key]
	if s == nil {
		s = &updateStream{key: key}
		m.streams[key] = s
	}
	s.pending = append(s.pending, u)
	if len(s.pending) == 1 && !s.acking {
		m.sendHead(s)
	}
}

// sendHead sends the stream's head; its retry is armed once the send is
// done. Called with m.mu held.
func (m *updateManager) sendHead(s *updateStream) {
	if !m.connected || len(s.pending) == 0 {
		return
	}
	if s.backoff == 0 {
		s.backoff = m.retryMin
	}
	head := s.pending[0]
	out := head
	if latest := s.pending[len(s.pending)-1].GetStatus().GetState(); head.GetLatestState() != latest {
		// latest_state tells the master where the task is now, ahead of
		// the update being delivered.
		out = proto.Clone(head).(*cluster.StatusUpdate)
		out.LatestState = latest.Enum()
	}
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.sends++
	send := s.sends
	go func() {
		m.send(out)
		m.mu.Lock()
		defer m.mu.Unlock()
		// The retry counts from when the master had the update (or the
		// call failed), not from when it was queued: under load a send
		// waits behind others for a slot to the master, and a timer
		// started at the queue would resend what is not lost. Only the
		// stream's latest send arms it, and only while its head is
		// unacknowledged.
		if m.streams[s.key] != s || s.sends != send || len(s.pending) == 0 || s.pending[0] != head || !m.connected {
			return
		}
		s.timer = time.AfterFunc(s.backoff, func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.streams[s.key] != s || s.sends != send || len(s.pending) == 0 || s.pending[0] != head {
				return
			}
			m.log.Info("resending unacknowledged status update", "task", head.GetStatus().GetTaskId().GetValue(),
				"state", head.GetStatus().GetState(), "uuid", ids.FormatUUID(head.GetStatus().GetUuid()))
			s.backoff = min(2*s.backoff, m.retryMax)
			m.sendHead(s)
		})
	}()
}

// Acknowledge handles the scheduler's acknowledgement of uuid. It reports
// whether the ack matched the head of the stream.
func (m *updateManager) Acknowledge(fwID, taskID string, uuid []byte) bool {
	m.mu.Lock()
	s := m.streams[streamKey(fwID, taskID)]
	if s == nil || len(s.pending) == 0 {
		m.mu.Unlock()
		m.log.Warn("acknowledgement for a task with no pending updates ignored", "framework", fwID, "task", taskID, "uuid", ids.FormatUUID(uuid))
		return false
	}
	head := s.pending[0]
	if !bytes.Equal(head.GetStatus().GetUuid(), uuid) {
		dup := false
		for _, d := range s.done {
			dup = dup || bytes.Equal(d, uuid)
		}
		m.mu.Unlock()
		if !dup {
			m.log.Warn("unexpected acknowledgement ignored", "framework", fwID, "task", taskID, "uuid", ids.FormatUUID(uuid),
				"expected", ids.FormatUUID(head.GetStatus().GetUuid()))
		}
		return false
	}
	// From here until the acked callback has run the stream is "acking":
	// a second ack of the same update meanwhile is a duplicate, and the
	// next update is not sent before the callback saw this one, so that
	// callbacks of one task run in order even when acks are handled
	// concurrently.
	if s.acking {
		m.mu.Unlock()
		return false
	}
	s.acking = true
	if m.checkpointAck != nil {
		// Durable before the update leaves the queue: checkpoint before
		// act. The lock is not held across the write; the head is checked
		// again after it.
		m.mu.Unlock()
		err := m.checkpointAck(head)
		m.mu.Lock()
		if err != nil {
			s.acking = false
			m.mu.Unlock()
			m.log.Error("checkpointing acknowledgement; the update stays queued", "framework", fwID, "task", taskID,
				"uuid", ids.FormatUUID(uuid), "err", err)
			return false
		}
		if m.streams[s.key] != s || len(s.pending) == 0 || s.pending[0] != head {
			// Dropped meanwhile.
			s.acking = false
			m.mu.Unlock()
			return false
		}
	}
	s.pending = s.pending[1:]
	s.done = append(s.done, uuid)
	if len(s.done) > 16 {
		s.done = s.done[len(s.done)-16:]
	}
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.backoff = 0
	if len(s.pending) == 0 && head.GetStatus().GetState().IsTerminal() {
		// A terminal acknowledgement closes the stream.
		delete(m.streams, s.key)
	}
	m.mu.Unlock()
	m.acked(head)
	m.mu.Lock()
	s.acking = false
	if m.streams[s.key] == s && len(s.pending) > 0 {
		m.sendHead(s)
	}
	m.mu.Unlock()
	return true
}

// Seen reports whether an update with uuid is queued (pending) or was
// acknowledged recently (acked): an executor resending it after a reconnect
// is not sending anything new.
func (m *updateManager) Seen(fwID, taskID string, uuid []byte) (pending, acked bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.streams[streamKey(fwID, taskID)]
	if s == nil {
		return false, false
	}
	for _, u := range s.pending {
		if bytes.Equal(u.GetStatus().GetUuid(), uuid) {
			return true, false
		}
	}
	for _, d := range s.done {
		if bytes.Equal(d, uuid) {
			return false, true
		}
	}
	return false, false
}

// Pending returns the unacknowledged updates of one task, oldest first.
func (m *updateManager) Pending(fwID, taskID string) []*cluster.StatusUpdate {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.streams[streamKey(fwID, taskID)]; s != nil {
		return append([]*cluster.StatusUpdate(nil), s.pending...)
	}
	return nil
}

// Counts returns how many streams hold updates and how many updates are
// waiting for their acknowledgement.
func (m *updateManager) Counts() (streams, pending int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.streams {
		if len(s.pending) > 0 {
			streams++
			pending += len(s.pending)
		}
	}
	return streams, pending
}

// PendingTasks lists the tasks (framework/task) with unacknowledged updates.
func (m *updateManager) PendingTasks() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for key, s := range m.streams {
		if len(s.pending) > 0 {
			out = append(out, key)
		}
	}
	return out
}

// Connected pauses (false) or resumes (true) delivery; resuming resends
// every stream's head.
func (m *updateManager) Connected(up bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.connected = up
	for _, s := range m.streams {
		if s.timer != nil {
			s.timer.Stop()
			s.timer = nil
		}
		if up && !s.acking { // an ack under way sends the next head itself
			s.backoff = 0
			m.sendHead(s)
		}
	}
}

// Drop forgets a framework's streams (it was torn down: nobody will ack).
func (m *updateManager) Drop(fwID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for key, s := range m.streams {
		if strings.HasPrefix(key, fwID+"/") {
			if s.timer != nil {
				s.timer.Stop()
			}
			delete(m.streams, key)
		}
	}
}
