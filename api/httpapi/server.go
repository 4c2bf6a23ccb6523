// Package httpapi holds what every Corral HTTP API shares: decoding a call
// with content negotiation, plain-text errors, and subscription streams
// (RecordIO event streams with heartbeats) on the server and client side.
package httpapi

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/recordio"
	"google.golang.org/protobuf/proto"
)

// MaxBodySize bounds a call's body; Mesos' own limit is far above anything a
// real call needs.
const MaxBodySize = 64 << 20

// StreamIDHeader carries a subscription's ID on every later call.
const StreamIDHeader = "Mesos-Stream-Id"

// Error answers with a plain-text reason, as Mesos does.
func Error(w http.ResponseWriter, status int, format string, args ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, format, args...)
}

// DecodeCall reads a POSTed call into msg and picks the response codec. On
// failure it has already answered (405, 415, 406, 413 or 400 with the
// reason) and returns ok=false.
func DecodeCall(w http.ResponseWriter, r *http.Request, msg proto.Message) (resp codec.Codec, ok bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		Error(w, http.StatusMethodNotAllowed, "Expecting 'POST', received '%s'", r.Method)
		return nil, false
	}
	// Mesos' master and agent answer a call without a Content-Type 400,
	// one with a Content-Type they cannot read 415.
	if len(r.Header.Values("Content-Type")) == 0 {
		Error(w, http.StatusBadRequest, "Expecting 'Content-Type' to be present")
		return nil, false
	}
	req, err := codec.RequestCodec(r)
	if err != nil {
		Error(w, http.StatusUnsupportedMediaType, "%v", err)
		return nil, false
	}
	// Stream negotiation also covers plain responses, and accepts
	// application/recordio with Message-Accept for SUBSCRIBE.
	st, err := codec.StreamResponse(r)
	if err != nil {
		Error(w, http.StatusNotAcceptable, "%v", err)
		return nil, false
	}
	resp = st.Codec
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodySize))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			Error(w, http.StatusRequestEntityTooLarge, "Request body larger than %d bytes", MaxBodySize)
		} else {
			Error(w, http.StatusBadRequest, "Failed to read request body: %v", err)
		}
		return nil, false
	}
	if err := req.Unmarshal(body, msg); err != nil {
		Error(w, http.StatusBadRequest, "Failed to parse body into %s: %v", msg.ProtoReflect().Descriptor().Name(), err)
		return nil, false
	}
	return resp, true
}

// Respond writes a synchronous response message (200) in the negotiated
// codec.
func Respond(w http.ResponseWriter, c codec.Codec, m proto.Message) {
	b, err := c.Marshal(m)
	if err != nil {
		Error(w, http.StatusInternalServerError, "encoding response: %v", err)
		return
	}
	w.Header().Set("Content-Type", c.MediaType())
	_, _ = w.Write(b)
}

// Stream is one subscriber's event stream. Send never blocks the sender:
// events queue in memory until the connection takes them, so a slow client
// cannot stall the master or agent.
type Stream struct {
	codec codec.Codec
	mu    sync.Mutex
	queue []proto.Message
	wake  chan struct{}
	// closing: drain what is queued, then end the response.
	closing bool
	done    chan struct{}
	once    sync.Once
}

// NewStream returns a stream that will encode with c.
func NewStream(c codec.Codec) *Stream {
	return &Stream{codec: c, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// Send queues an event; it reports false once the stream has ended.
func (s *Stream) Send(m proto.Message) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.ended() {
		return false
	}
	s.queue = append(s.queue, m)
	s.poke()
	return true
}

// Close ends the stream after the queued events are written.
func (s *Stream) Close() {
	s.mu.Lock()
	s.closing = true
	s.poke()
	s.mu.Unlock()
}

// Done is closed when the response has ended, by Close or because the client
// went away.
func (s *Stream) Done() <-chan struct{} { return s.done }

func (s *Stream) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *Stream) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Serve writes the stream as the HTTP response until it is closed or the
// client goes away. The first events should already be queued (SUBSCRIBED)
// so that they go out with the headers. heartbeat, when non-nil, is sent
// every interval of silence.
func (s *Stream) Serve(w http.ResponseWriter, r *http.Request, streamID string, heartbeat proto.Message, interval time.Duration) {
	defer s.once.Do(func() { close(s.done) })
	h := w.Header()
	if st, err := codec.StreamResponse(r); err == nil && st.Codec.MediaType() == s.codec.MediaType() {
		st.SetHeaders(h)
	} else {
		h.Set("Content-Type", s.codec.MediaType())
	}
	if streamID != "" {
		h.Set(StreamIDHeader, streamID)
	}
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rw := recordio.NewWriter(w)
	var tick <-chan time.Time
	if heartbeat != nil && interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	for {
		s.mu.Lock()
		batch, closing := s.queue, s.closing
		s.queue = nil
		s.mu.Unlock()
		for _, m := range batch {
			if !s.write(rw, m) {
				return
			}
		}
		if closing && len(batch) == 0 {
			return
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-s.wake:
		case <-tick:
			if !s.write(rw, heartbeat) {
				return
			}
		case <-r.Context().Done():
			return
		}
	}
}

func (s *Stream) write(rw *recordio.Writer, m proto.Message) bool {
	b, err := s.codec.Marshal(m)
	if err != nil {
		// An event we cannot encode is a bug; dropping the stream makes the
		// client resubscribe rather than silently miss it.
		slog.Error("event stream: cannot encode event; closing the stream", "event", m.ProtoReflect().Descriptor().FullName(), "err", err)
		return false
	}
	return rw.WriteRecord(b) == nil
}
