package codec

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Unmarshal reads JSON as Mesos does. protojson is close but fails on null
// elements inside lists and maps (old clients send those) and its errors give
// byte offsets rather than the field, which is what a 400 body should name.
//
// The input is first parsed into a generic tree (encoding/json), then walked
// along the message descriptor.
func (jsonCodec) Unmarshal(b []byte, m proto.Message) error {
	if m == nil {
		return errors.New("invalid JSON: nil message")
	}
	name := messageName(m)
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // keep 64-bit integers exact
	var v any
	if err := dec.Decode(&v); err != nil {
		if err == io.EOF {
			err = errors.New("empty body")
		}
		return fmt.Errorf("invalid JSON for %s: %w", name, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("invalid JSON for %s: unexpected data after the top-level value", name)
	}
	proto.Reset(m)
	if err := decodeMessage(m.ProtoReflect(), v); err != nil {
		return fmt.Errorf("invalid JSON for %s: %w", name, err)
	}
	if path := missingRequired(m.ProtoReflect()); path != "" {
		return fmt.Errorf("invalid JSON for %s: missing required field %s", name, path)
	}
	return nil
}

// fieldError locates an error inside the message: path is like
// "framework_info.roles[2]".
type fieldError struct {
	path string
	err  error
}

func (e *fieldError) Error() string { return "field " + e.path + ": " + e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

// inField prefixes err's path with elem: a field name, or an index or map key
// in brackets.
func inField(elem string, err error) error {
	if fe, ok := err.(*fieldError); ok {
		if strings.HasPrefix(fe.path, "[") {
			fe.path = elem + fe.path
		} else {
			fe.path = elem + "." + fe.path
		}
		return fe
	}
	return &fieldError{path: elem, err: err}
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

func decodeMessage(m protoreflect.Message, v any) error {
	md := m.Descriptor()
	if isWellKnown(string(md.FullName())) {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(b, m.Interface())
	}
	obj, ok := v.(map[string]any)
	if !ok {
		if v == nil {
			return nil
		}
		return fmt.Errorf("expected object for %s, got %s", md.FullName(), jsonType(v))
	}
	fields := md.Fields()
	for key, val := range obj {
		if val == nil {
			continue // null means unset, for every kind of field
		}
		fd := fields.ByName(protoreflect.Name(key))
		if fd == nil {
			fd = fields.ByJSONName(key)
			if fd == nil {
				continue // unknown fields are ignored, as Mesos does
			}
			// Both spellings of one field would make the result depend on
			// map order; refuse instead.
			if other, ok := obj[string(fd.Name())]; ok && other != nil {
				return inField(string(fd.Name()), fmt.Errorf("given twice, as %q and %q", fd.Name(), key))
			}
		}
		if od := fd.ContainingOneof(); od != nil {
			if set := m.WhichOneof(od); set != nil && set != fd {
				return inField(string(fd.Name()), fmt.Errorf("oneof %s already set by field %s", od.Name(), set.Name()))
			}
		}
		var err error
		switch {
		case fd.IsList():
			err = decodeList(m, fd, val)
		case fd.IsMap():
			err = decodeMap(m, fd, val)
		case fd.Message() != nil:
			err = decodeMessage(m.Mutable(fd).Message(), val)
		default:
			var pv protoreflect.Value
			pv, err = decodeScalar(fd, val)
			if err == nil {
				m.Set(fd, pv)
			}
		}
		if err != nil {
			return inField(string(fd.Name()), err)
		}
	}
	return nil
}

func decodeList(m protoreflect.Message, fd protoreflect.FieldDescriptor, v any) error {
	arr, ok := v.([]any)
	if !ok {
		return fmt.Errorf("expected array, got %s", jsonType(v))
	}
	list := m.Mutable(fd).List()
	for i, el := range arr {
		// A null element carries nothing; dropping it beats rejecting a
		// request that protojson and old clients disagree on.
		if el == nil {
			continue
		}
		var pv protoreflect.Value
		var err error
		if fd.Message() != nil {
			pv = list.NewElement()
			err = decodeMessage(pv.Message(), el)
		} else {
			pv, err = decodeScalar(fd, el)
		}
		if err != nil {
			return inField("["+strconv.Itoa(i)+"]", err)
		}
		list.Append(pv)
	}
	return nil
}

func decodeMap(m protoreflect.Message, fd protoreflect.FieldDescriptor, v any) error {
	obj, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("expected object, got %s", jsonType(v))
	}
	mm := m.Mutable(fd).Map()
	kd, vd := fd.MapKey(), fd.MapValue()
	for k, el := range obj {
		if el == nil {
			continue
		}
		key, err := decodeMapKey(kd, k)
		if err != nil {
			return inField(fmt.Sprintf("[%q]", k), err)
		}
		var pv protoreflect.Value
		if vd.Message() != nil {
			pv = mm.NewValue()
			err = decodeMessage(pv.Message(), el)
		} else {
			pv, err = decodeScalar(vd, el)
		}
		if err != nil {
			return inField(fmt.Sprintf("[%q]", k), err)
		}
		mm.Set(key, pv)
	}
	return nil
}

// decodeMapKey parses a JSON object key, always a string, as the key type.
func decodeMapKey(kd protoreflect.FieldDescriptor, k string) (protoreflect.MapKey, error) {
	switch kd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(k).MapKey(), nil
	case protoreflect.BoolKind:
		switch k {
		case "true":
			return protoreflect.ValueOfBool(true).MapKey(), nil
		case "false":
			return protoreflect.ValueOfBool(false).MapKey(), nil
		}
		return protoreflect.MapKey{}, fmt.Errorf("invalid boolean map key %q", k)
	}
	v, err := decodeScalar(kd, k)
	if err != nil {
		return protoreflect.MapKey{}, err
	}
	return v.MapKey(), nil
}

// decodeScalar converts a non-null JSON value to a value of fd's kind
// (anything but a message).
func decodeScalar(fd protoreflect.FieldDescriptor, v any) (protoreflect.Value, error) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		if b, ok := v.(bool); ok {
			return protoreflect.ValueOfBool(b), nil
		}
	case protoreflect.StringKind:
		if s, ok := v.(string); ok {
			return protoreflect.ValueOfString(s), nil
		}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		n, err := parseInt(v, 32)
		return protoreflect.ValueOfInt32(int32(n)), err
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		n, err := parseInt(v, 64)
		return protoreflect.ValueOfInt64(n), err
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		n, err := parseUint(v, 32)
		return protoreflect.ValueOfUint32(uint32(n)), err
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		n, err := parseUint(v, 64)
		return protoreflect.ValueOfUint64(n), err
	case protoreflect.FloatKind:
		f, err := parseFloat(v, 32)
		return protoreflect.ValueOfFloat32(float32(f)), err
	case protoreflect.DoubleKind:
		f, err := parseFloat(v, 64)
		return protoreflect.ValueOfFloat64(f), err
	case protoreflect.BytesKind:
		if s, ok := v.(string); ok {
			b, err := decodeBase64(s)
			return protoreflect.ValueOfBytes(b), err
		}
	case protoreflect.EnumKind:
		return decodeEnum(fd.Enum(), v)
	default:
		return protoreflect.Value{}, fmt.Errorf("unsupported field kind %v", fd.Kind())
	}
	return protoreflect.Value{}, fmt.Errorf("expected %s, got %s", fd.Kind(), jsonType(v))
}

// numberText returns the text of a JSON number, or of a string that should
// hold one (64-bit integers are often quoted, as protojson writes them).
func numberText(v any) (string, bool) {
	switch v := v.(type) {
	case json.Number:
		return string(v), true
	case string:
		return v, true
	}
	return "", false
}

// isJSONNumber reports whether s is spelled as a JSON number. Quoted numbers
// reach strconv, which also takes "inf", "0x1p3" and "1_0"; JSON does not.
func isJSONNumber(s string) bool {
	if s == "" || (s[0] != '-' && (s[0] < '0' || s[0] > '9')) {
		return false
	}
	c := s[len(s)-1]
	return c >= '0' && c <= '9' && json.Valid([]byte(s))
}

// maxExactFloat is the largest integer a float64 holds exactly; integers
// written with a fraction or exponent are accepted only up to it.
const maxExactFloat = 1 << 53

func parseInt(v any, bits int) (int64, error) {
	s, ok := numberText(v)
	if !ok {
		return 0, fmt.Errorf("expected integer, got %s", jsonType(v))
	}
	n, err := strconv.ParseInt(s, 10, bits)
	if err == nil {
		return n, nil
	}
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("integer %s out of range for int%d", s, bits)
	}
	// Some clients write integers as 3600.0 or 1e3.
	if f, ferr := strconv.ParseFloat(s, 64); ferr == nil && isJSONNumber(s) && f == math.Trunc(f) && math.Abs(f) <= maxExactFloat {
		n := int64(f)
		if bits == 32 && (n < math.MinInt32 || n > math.MaxInt32) {
			return 0, fmt.Errorf("integer %s out of range for int32", s)
		}
		return n, nil
	}
	return 0, fmt.Errorf("invalid integer %q", s)
}

func parseUint(v any, bits int) (uint64, error) {
	s, ok := numberText(v)
	if !ok {
		return 0, fmt.Errorf("expected unsigned integer, got %s", jsonType(v))
	}
	n, err := strconv.ParseUint(s, 10, bits)
	if err == nil {
		return n, nil
	}
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("integer %s out of range for uint%d", s, bits)
	}
	if f, ferr := strconv.ParseFloat(s, 64); ferr == nil && isJSONNumber(s) && f == math.Trunc(f) && f >= 0 && f <= maxExactFloat {
		n := uint64(f)
		if bits == 32 && n > math.MaxUint32 {
			return 0, fmt.Errorf("integer %s out of range for uint32", s)
		}
		return n, nil
	}
	return 0, fmt.Errorf("invalid unsigned integer %q", s)
}

func parseFloat(v any, bits int) (float64, error) {
	s, ok := numberText(v)
	if !ok {
		return 0, fmt.Errorf("expected number, got %s", jsonType(v))
	}
	if _, quoted := v.(string); quoted {
		// The spellings protojson writes for values JSON numbers cannot hold.
		switch s {
		case "NaN":
			return math.NaN(), nil
		case "Infinity":
			return math.Inf(1), nil
		case "-Infinity":
			return math.Inf(-1), nil
		}
		if !isJSONNumber(s) {
			return 0, fmt.Errorf("invalid number %q", s)
		}
	}
	f, err := strconv.ParseFloat(s, bits)
	if err != nil {
		return 0, fmt.Errorf("number %s out of range for float%d", s, bits)
	}
	return f, nil
}

// decodeBase64 accepts standard and URL-safe alphabets, with or without
// padding, as protojson does: clients differ.
func decodeBase64(s string) ([]byte, error) {
	enc := base64.RawStdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.RawURLEncoding
	}
	b, err := enc.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("invalid base64: %w", err)
	}
	return b, nil
}

func decodeEnum(ed protoreflect.EnumDescriptor, v any) (protoreflect.Value, error) {
	switch v := v.(type) {
	case string:
		if ev := ed.Values().ByName(protoreflect.Name(v)); ev != nil {
			return protoreflect.ValueOfEnum(ev.Number()), nil
		}
		return protoreflect.Value{}, fmt.Errorf("unknown value %q for enum %s", v, ed.FullName())
	case json.Number:
		n, err := parseInt(v, 32)
		if err != nil {
			return protoreflect.Value{}, err
		}
		num := protoreflect.EnumNumber(n)
		// A closed (proto2) enum cannot hold an unknown number; the binary
		// decoder would move it to unknown fields, which JSON cannot.
		if ed.IsClosed() && ed.Values().ByNumber(num) == nil {
			return protoreflect.Value{}, fmt.Errorf("unknown number %d for enum %s", n, ed.FullName())
		}
		return protoreflect.ValueOfEnum(num), nil
	}
	return protoreflect.Value{}, fmt.Errorf("expected enum name or number, got %s", jsonType(v))
}

// missingRequired returns the path of the first unset proto2 required field,
// or "" if there is none. proto.CheckInitialized names only the message type,
// not where it sits, which is what a client needs to fix its request.
func missingRequired(m protoreflect.Message) string {
	if proto.CheckInitialized(m.Interface()) == nil {
		return "" // fast path: nothing to find
	}
	return findMissing(m)
}

func findMissing(m protoreflect.Message) string {
	md := m.Descriptor()
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.Cardinality() == protoreflect.Required && !m.Has(fd) {
			return string(fd.Name())
		}
	}
	var path string
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := range l.Len() {
				if p := findMissing(l.Get(i).Message()); p != "" {
					path = fmt.Sprintf("%s[%d].%s", fd.Name(), i, p)
					return false
				}
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				if p := findMissing(mv.Message()); p != "" {
					path = fmt.Sprintf("%s[%q].%s", fd.Name(), k.String(), p)
				}
				return path == ""
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			if p := findMissing(v.Message()); p != "" {
				path = string(fd.Name()) + "." + p
			}
		}
		return path == ""
	})
	return path
}
