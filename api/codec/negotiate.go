package codec

import (
	"cmp"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

const (
	headerMessageAccept      = "Message-Accept"
	headerMessageContentType = "Message-Content-Type"
)

// RequestCodec returns the codec for a request body, from its Content-Type.
// An error means the caller should answer 415 Unsupported Media Type with the
// error's text.
func RequestCodec(r *http.Request) (Codec, error) {
	ct := r.Header.Get("Content-Type")
	if strings.TrimSpace(ct) == "" {
		return nil, fmt.Errorf("%w: missing Content-Type header; expected %s or %s",
			ErrUnsupportedMediaType, MediaTypeJSON, MediaTypeProtobuf)
	}
	c, err := ByMediaType(ct)
	if err != nil {
		return nil, fmt.Errorf("Content-Type: %w", err)
	}
	return c, nil
}

// ResponseCodec returns the codec for a response body, from the request's
// Accept header: the most preferred supported type, JSON when Accept is absent
// or a wildcard. An error means the caller should answer 406 Not Acceptable
// with the error's text.
func ResponseCodec(r *http.Request) (Codec, error) {
	c, err := negotiate(r.Header.Values("Accept"), false)
	if err != nil {
		return nil, fmt.Errorf("Accept: %w", err)
	}
	return c, nil
}

// Stream says how to encode a streamed (RecordIO) response.
type Stream struct {
	// Codec encodes each record.
	Codec Codec
	// ContentType is the response's Content-Type.
	ContentType string
	// MessageContentType is the Message-Content-Type header, naming the codec
	// of each record; empty when the client did not ask for
	// application/recordio, as older clients do not.
	MessageContentType string
}

// StreamResponse negotiates a streamed response such as the SUBSCRIBE event
// stream. Older clients send Accept: application/json (or x-protobuf) and get
// exactly that type back as Content-Type, though the body is RecordIO; newer
// ones send Accept: application/recordio and name the record codec in
// Message-Accept. An error means the caller should answer 406.
func StreamResponse(r *http.Request) (Stream, error) {
	c, err := negotiate(r.Header.Values("Accept"), true)
	if err != nil {
		return Stream{}, fmt.Errorf("Accept: %w", err)
	}
	if c != nil {
		return Stream{Codec: c, ContentType: c.MediaType()}, nil
	}
	c, err = negotiate(r.Header.Values(headerMessageAccept), false)
	if err != nil {
		return Stream{}, fmt.Errorf("%s: %w", headerMessageAccept, err)
	}
	return Stream{Codec: c, ContentType: MediaTypeRecordIO, MessageContentType: c.MediaType()}, nil
}

// SetHeaders sets the stream's content type headers on h.
func (s Stream) SetHeaders(h http.Header) {
	h.Set("Content-Type", s.ContentType)
	if s.MessageContentType != "" {
		h.Set(headerMessageContentType, s.MessageContentType)
	} else {
		h.Del(headerMessageContentType)
	}
}

type acceptEntry struct {
	mediaType string
	q         float64
}

// negotiate picks a codec from Accept-style header values. With recordio
// set, application/recordio is acceptable too and is reported as a nil codec.
func negotiate(values []string, recordio bool) (Codec, error) {
	entries := parseAccept(values)
	if len(entries) == 0 && strings.TrimSpace(strings.Join(values, "")) == "" {
		return JSON, nil // no preference: Mesos answers JSON
	}
	for _, e := range entries {
		switch e.mediaType {
		case "*/*", "application/*":
			return JSON, nil
		case MediaTypeRecordIO:
			if recordio {
				return nil, nil
			}
		}
		if c := byBase(e.mediaType); c != nil {
			return c, nil
		}
	}
	supported := MediaTypeJSON + ", " + MediaTypeProtobuf
	if recordio {
		supported += ", " + MediaTypeRecordIO
	}
	return nil, fmt.Errorf("%w %q; supported: %s", ErrUnsupportedMediaType, strings.Join(values, ", "), supported)
}

// parseAccept returns the acceptable media types, most preferred first.
// Malformed entries are skipped: one odd entry should not fail a request that
// also lists a type we serve.
func parseAccept(values []string) []acceptEntry {
	var entries []acceptEntry
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			if strings.TrimSpace(part) == "" {
				continue
			}
			mt, params, err := mime.ParseMediaType(part)
			if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
				continue
			}
			q := 1.0
			if s, ok := params["q"]; ok {
				if q, err = strconv.ParseFloat(s, 64); err != nil || q < 0 || q > 1 {
					continue
				}
			}
			if q == 0 {
				continue // explicitly not acceptable
			}
			entries = append(entries, acceptEntry{mediaType: mt, q: q})
		}
	}
	// Higher q first; at equal q a named type beats a wildcard (so
	// "*/*, application/x-protobuf" means protobuf), then the client's order.
	slices.SortStableFunc(entries, func(a, b acceptEntry) int {
		return cmp.Or(cmp.Compare(b.q, a.q), cmp.Compare(isWildcard(a.mediaType), isWildcard(b.mediaType)))
	})
	return entries
}

func isWildcard(mt string) int {
	if strings.HasSuffix(mt, "/*") {
		return 1
	}
	return 0
}
