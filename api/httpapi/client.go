package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/recordio"
	"google.golang.org/protobuf/proto"
)

// Client calls one v1-style endpoint (scheduler, executor, or the agents'
// internal API) with one codec.
type Client struct {
	URL   string
	Codec codec.Codec
	// HTTP is used for calls; subscriptions use it too and rely on the
	// idle timeout rather than a client timeout.
	HTTP *http.Client
	// Header is added to every request.
	Header http.Header

	mu       sync.Mutex
	streamID string
}

// StatusError is a call answered with an unexpected HTTP status.
type StatusError struct {
	Code     int
	Message  string
	Location string // for 307 redirects to the leading master
}

func (e *StatusError) Error() string {
	if e.Location != "" {
		return fmt.Sprintf("HTTP %d (redirect to %s): %s", e.Code, e.Location, e.Message)
	}
	return fmt.Sprintf("HTTP %d: %s", e.Code, e.Message)
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return noRedirects
}

// The client follows no redirect by itself: a 307 from a non-leading master
// is the caller's signal to re-subscribe with the leader.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// StreamID is the ID of the current subscription.
func (c *Client) StreamID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streamID
}

func (c *Client) newRequest(ctx context.Context, call proto.Message) (*http.Request, error) {
	body, err := c.Codec.Marshal(call)
	if err != nil {
		return nil, fmt.Errorf("encoding call: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range c.Header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", c.Codec.MediaType())
	req.Header.Set("Accept", c.Codec.MediaType())
	return req, nil
}

func statusError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return &StatusError{Code: resp.StatusCode, Message: strings.TrimSpace(string(b)), Location: resp.Header.Get("Location")}
}

// Call makes a non-subscribe call carrying the stream ID and decodes a
// response into out when out is non-nil and the server answered 200.
func (c *Client) Call(ctx context.Context, call proto.Message, out proto.Message) error {
	req, err := c.newRequest(ctx, call)
	if err != nil {
		return err
	}
	if id := c.StreamID(); id != "" {
		req.Header.Set(StreamIDHeader, id)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusAccepted:
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	case http.StatusOK:
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if out != nil {
			return c.Codec.Unmarshal(b, out)
		}
		return nil
	}
	return statusError(resp)
}

// Subscription is an open event stream.
type Subscription struct {
	StreamID string
	body     io.ReadCloser
	reader   *recordio.Reader
	codec    codec.Codec
	idle     time.Duration
	timer    *time.Timer
}

// Subscribe posts a SUBSCRIBE call and returns the event stream. With idle >
// 0 the stream is closed (and Next fails) after that long without a record,
// which is how a dead peer is noticed between heartbeats.
func (c *Client) Subscribe(ctx context.Context, call proto.Message, idle time.Duration) (*Subscription, error) {
	req, err := c.newRequest(ctx, call)
	if err != nil {
		return nil, err
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, statusError(resp)
	}
	id := resp.Header.Get(StreamIDHeader)
	c.mu.Lock()
	c.streamID = id
	c.mu.Unlock()
	s := &Subscription{StreamID: id, body: resp.Body, reader: recordio.NewReader(resp.Body), codec: c.Codec, idle: idle}
	if idle > 0 {
		s.timer = time.AfterFunc(idle, func() { resp.Body.Close() })
	}
	return s, nil
}

// Next decodes the next event into m.
func (s *Subscription) Next(m proto.Message) error {
	rec, err := s.reader.ReadRecord()
	if err != nil {
		return err
	}
	if s.timer != nil {
		s.timer.Reset(s.idle)
	}
	return s.codec.Unmarshal(rec, m)
}

// SetIdle changes the idle timeout, e.g. once SUBSCRIBED has told the
// heartbeat interval.
func (s *Subscription) SetIdle(d time.Duration) {
	s.idle = d
	if s.timer != nil {
		s.timer.Reset(d)
	}
}

// Close ends the subscription.
func (s *Subscription) Close() error {
	if s.timer != nil {
		s.timer.Stop()
	}
	return s.body.Close()
}
