package codec

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

type jsonCodec struct{}

func (jsonCodec) MediaType() string { return MediaTypeJSON }

// Marshal writes m as Mesos does. protojson cannot be used as is: it writes
// 64-bit integers as strings, which Mesos clients reject.
func (jsonCodec) Marshal(m proto.Message) ([]byte, error) {
	if m == nil {
		return []byte("{}"), nil
	}
	// The protobuf codec refuses messages with missing required fields; so
	// does this one, or such bugs would only show with one media type.
	if err := proto.CheckInitialized(m); err != nil {
		return nil, fmt.Errorf("encode %s as JSON: %w", messageName(m), err)
	}
	e := encoder{buf: make([]byte, 0, 256)}
	if err := e.message(m.ProtoReflect()); err != nil {
		return nil, fmt.Errorf("encode %s as JSON: %w", messageName(m), err)
	}
	return e.buf, nil
}

type encoder struct {
	buf []byte
}

// fieldOrder caches each message's fields sorted by number, the order Mesos
// (protobuf's C++ reflection) writes them in; declaration order may differ.
var fieldOrder sync.Map // protoreflect.MessageDescriptor -> []protoreflect.FieldDescriptor

func orderedFields(md protoreflect.MessageDescriptor) []protoreflect.FieldDescriptor {
	if v, ok := fieldOrder.Load(md); ok {
		return v.([]protoreflect.FieldDescriptor)
	}
	fields := md.Fields()
	fds := make([]protoreflect.FieldDescriptor, fields.Len())
	for i := range fds {
		fds[i] = fields.Get(i)
	}
	slices.SortFunc(fds, func(a, b protoreflect.FieldDescriptor) int { return cmp.Compare(a.Number(), b.Number()) })
	v, _ := fieldOrder.LoadOrStore(md, fds)
	return v.([]protoreflect.FieldDescriptor)
}

func (e *encoder) message(m protoreflect.Message) error {
	md := m.Descriptor()
	if isWellKnown(string(md.FullName())) {
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m.Interface())
		if err != nil {
			return err
		}
		e.buf = append(e.buf, b...)
		return nil
	}
	e.buf = append(e.buf, '{')
	first := true
	for _, fd := range orderedFields(md) {
		// Has is presence for proto2 scalars, so unset fields with defaults
		// are left out, as Mesos does.
		if !m.Has(fd) {
			continue
		}
		if !first {
			e.buf = append(e.buf, ',')
		}
		first = false
		e.buf = appendString(e.buf, string(fd.Name()))
		e.buf = append(e.buf, ':')
		var err error
		switch v := m.Get(fd); {
		case fd.IsList():
			err = e.list(v.List(), fd)
		case fd.IsMap():
			err = e.mapValue(v.Map(), fd)
		default:
			err = e.value(v, fd)
		}
		if err != nil {
			return inField(string(fd.Name()), err)
		}
	}
	e.buf = append(e.buf, '}')
	return nil
}

func (e *encoder) list(l protoreflect.List, fd protoreflect.FieldDescriptor) error {
	e.buf = append(e.buf, '[')
	for i := range l.Len() {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		if err := e.value(l.Get(i), fd); err != nil {
			return inField("["+strconv.Itoa(i)+"]", err)
		}
	}
	e.buf = append(e.buf, ']')
	return nil
}

func (e *encoder) mapValue(mv protoreflect.Map, fd protoreflect.FieldDescriptor) error {
	// Sorted keys keep the output deterministic, like protojson.
	keys := make([]protoreflect.MapKey, 0, mv.Len())
	mv.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
		keys = append(keys, k)
		return true
	})
	slices.SortFunc(keys, compareMapKeys)
	vd := fd.MapValue()
	e.buf = append(e.buf, '{')
	for i, k := range keys {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		e.buf = appendString(e.buf, k.String())
		e.buf = append(e.buf, ':')
		if err := e.value(mv.Get(k), vd); err != nil {
			return inField(fmt.Sprintf("[%q]", k.String()), err)
		}
	}
	e.buf = append(e.buf, '}')
	return nil
}

func compareMapKeys(a, b protoreflect.MapKey) int {
	switch a.Interface().(type) {
	case string:
		return cmp.Compare(a.String(), b.String())
	case bool:
		return cmp.Compare(boolInt(a.Bool()), boolInt(b.Bool()))
	case int32, int64:
		return cmp.Compare(a.Int(), b.Int())
	default:
		return cmp.Compare(a.Uint(), b.Uint())
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// value writes one singular value, a list element or a map value.
func (e *encoder) value(v protoreflect.Value, fd protoreflect.FieldDescriptor) error {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		e.buf = strconv.AppendBool(e.buf, v.Bool())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		e.buf = strconv.AppendInt(e.buf, v.Int(), 10)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		e.buf = strconv.AppendUint(e.buf, v.Uint(), 10)
	case protoreflect.FloatKind:
		e.buf = appendFloat(e.buf, v.Float(), 32)
	case protoreflect.DoubleKind:
		e.buf = appendFloat(e.buf, v.Float(), 64)
	case protoreflect.StringKind:
		e.buf = appendString(e.buf, v.String())
	case protoreflect.BytesKind:
		e.buf = append(e.buf, '"')
		e.buf = base64.StdEncoding.AppendEncode(e.buf, v.Bytes())
		e.buf = append(e.buf, '"')
	case protoreflect.EnumKind:
		// An unknown number has no name; protojson writes the number too.
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			e.buf = appendString(e.buf, string(ev.Name()))
		} else {
			e.buf = strconv.AppendInt(e.buf, int64(v.Enum()), 10)
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return e.message(v.Message())
	default:
		return fmt.Errorf("unsupported field kind %v", fd.Kind())
	}
	return nil
}

// appendFloat formats like protojson (and encoding/json): NaN and infinities
// as strings, exponents only for very small or large magnitudes.
func appendFloat(out []byte, f float64, bitSize int) []byte {
	switch {
	case math.IsNaN(f):
		return append(out, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(out, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(out, `"-Infinity"`...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bitSize == 64 && (abs < 1e-6 || abs >= 1e21) ||
			bitSize == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	out = strconv.AppendFloat(out, f, format, -1, bitSize)
	if format == 'e' {
		// Clean up e-09 to e-9.
		n := len(out)
		if n >= 4 && out[n-4] == 'e' && out[n-3] == '-' && out[n-2] == '0' {
			out[n-2] = out[n-1]
			out = out[:n-1]
		}
	}
	return out
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string. proto2 strings may hold invalid
// UTF-8; those bytes become U+FFFD rather than failing the whole message, so a
// stray label cannot break an event stream.
func appendString(out []byte, s string) []byte {
	out = append(out, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				out = append(out, s[start:i]...)
				out = append(out, `\ufffd`...)
				i++
				start = i
				continue
			}
			i += size
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		out = append(out, s[start:i]...)
		switch c {
		case '"', '\\':
			out = append(out, '\\', c)
		case '\n':
			out = append(out, '\\', 'n')
		case '\r':
			out = append(out, '\\', 'r')
		case '\t':
			out = append(out, '\\', 't')
		case '\b':
			out = append(out, '\\', 'b')
		case '\f':
			out = append(out, '\\', 'f')
		default:
			out = append(out, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	out = append(out, s[start:]...)
	return append(out, '"')
}
