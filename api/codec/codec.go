// Package codec encodes and decodes the protobuf messages of the Mesos v1 HTTP
// APIs in both media types Mesos speaks, and negotiates which one an HTTP
// request wants.
//
// JSON follows what Mesos itself reads and writes rather than the canonical
// proto3 JSON mapping (see /work/shared/COMPAT.md): proto field names, 64-bit
// integers as numbers, enums as names, and a lenient reader that treats null
// as "not set" anywhere.
package codec

import (
	"errors"
	"fmt"
	"mime"
	"strings"

	"google.golang.org/protobuf/proto"
)

// Media types of the Mesos v1 APIs.
const (
	MediaTypeJSON     = "application/json"
	MediaTypeProtobuf = "application/x-protobuf"
	// MediaTypeRecordIO frames a stream of messages; the Message-Accept and
	// Message-Content-Type headers name the codec of each message.
	MediaTypeRecordIO = "application/recordio"
)

// ErrUnsupportedMediaType is wrapped by every negotiation error, so callers can
// tell a media type problem (415/406) from other failures.
var ErrUnsupportedMediaType = errors.New("unsupported media type")

// Codec encodes and decodes messages in one media type.
type Codec interface {
	// MediaType is the bare media type, without parameters, fit for a
	// Content-Type header.
	MediaType() string
	Marshal(proto.Message) ([]byte, error)
	// Unmarshal replaces the contents of the message. It fails when a proto2
	// required field is missing, naming the field.
	Unmarshal([]byte, proto.Message) error
}

var (
	// JSON is the application/json codec, compatible with Mesos' JSON.
	JSON Codec = jsonCodec{}
	// Protobuf is the application/x-protobuf codec: the protobuf binary
	// format. Unknown fields are kept.
	Protobuf Codec = protobufCodec{}
)

// ByMediaType returns the codec for a media type such as a Content-Type value.
// Parameters (charset and the like) are ignored.
func ByMediaType(mt string) (Codec, error) {
	base, _, err := mime.ParseMediaType(mt)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %w", ErrUnsupportedMediaType, mt, err)
	}
	if c := byBase(base); c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("%w %q; supported: %s, %s", ErrUnsupportedMediaType, mt, MediaTypeJSON, MediaTypeProtobuf)
}

// byBase maps a lower-cased media type without parameters to its codec.
func byBase(base string) Codec {
	switch base {
	case MediaTypeJSON:
		return JSON
	case MediaTypeProtobuf:
		return Protobuf
	}
	return nil
}

type protobufCodec struct{}

func (protobufCodec) MediaType() string { return MediaTypeProtobuf }

func (protobufCodec) Marshal(m proto.Message) ([]byte, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s as protobuf: %w", messageName(m), err)
	}
	return b, nil
}

func (protobufCodec) Unmarshal(b []byte, m proto.Message) error {
	if err := proto.Unmarshal(b, m); err != nil {
		return fmt.Errorf("invalid protobuf for %s: %w", messageName(m), err)
	}
	return nil
}

func messageName(m proto.Message) string {
	if m == nil {
		return "<nil>"
	}
	return string(m.ProtoReflect().Descriptor().FullName())
}

// isWellKnown reports whether a message is one of the google.protobuf types,
// whose JSON forms are special; Mesos does not use them, so they are handed to
// protojson rather than reimplemented.
func isWellKnown(fullName string) bool {
	return strings.HasPrefix(fullName, "google.protobuf.")
}
