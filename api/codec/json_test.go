package codec

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/codec/internal/testpb"
)

// full returns a message with every field set, 64-bit values beyond 2^53 so
// that a float64 detour would show.
func full() *testpb.All {
	return &testpb.All{
		Name:  proto.String("full \"quoted\" \n\t\x01 ünïcode"),
		I32:   proto.Int32(-7),
		I64:   proto.Int64(-9007199254740993),
		U64:   proto.Uint64(math.MaxUint64),
		S64:   proto.Int64(math.MinInt64),
		F64:   proto.Uint64(1<<63 + 1),
		Dbl:   proto.Float64(3600.5),
		Flt:   proto.Float32(0.25),
		Flag:  proto.Bool(false),
		Data:  []byte{0, 1, 2, 0xfb, 0xff},
		Inner: &testpb.Inner{Value: proto.String("in"), Count: proto.Int64(1 << 60)},
		Kind:  testpb.All_FIRST.Enum(),
		Nums:  []int64{1, -1, math.MaxInt64},
		Items: []*testpb.Inner{{Value: proto.String("a")}, {Value: proto.String("b"), Count: proto.Int64(2)}},
		Counts: map[string]int64{
			"b": math.MaxInt64, "a": -3,
		},
		Inners:      map[string]*testpb.Inner{"k": {Value: proto.String("v")}},
		WithDefault: proto.String(""),
		IntDefault:  proto.Int64(0),
		KindDefault: testpb.All_UNKNOWN.Enum(),
		Kinds:       []testpb.All_Kind{testpb.All_SECOND, testpb.All_FIRST},
		U32:         proto.Uint32(math.MaxUint32),
		Sf64:        proto.Int64(-1 << 62),
		ById:        map[int64]string{-5: "neg", 10: "ten"},
		Blobs:       [][]byte{{}, []byte("hi")},
		Child:       &testpb.All{Name: proto.String("child")},
		Choice:      &testpb.All_ChoiceNum{ChoiceNum: 1 << 55},
	}
}

func TestJSONRoundTrip(t *testing.T) {
	tests := map[string]*testpb.All{
		"minimal": {Name: proto.String("x")},
		"full":    full(),
		"floats": {
			Name: proto.String("f"), Dbl: proto.Float64(math.Inf(-1)), Flt: proto.Float32(float32(math.Inf(1))),
		},
		"tiny float":   {Name: proto.String("f"), Dbl: proto.Float64(1e-300), Flt: proto.Float32(1e30)},
		"unknown enum": {Name: proto.String("e"), Kind: testpb.All_Kind(99).Enum()},
		"bad utf8 gone": {
			Name: proto.String("ok"), Inner: &testpb.Inner{Value: proto.String("ok")},
		},
		"oneof string": {Name: proto.String("o"), Choice: &testpb.All_ChoiceStr{ChoiceStr: "s"}},
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			b, err := JSON.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(b) {
				t.Fatalf("invalid JSON: %s", b)
			}
			// Our output must also be readable by protojson (the reference).
			ref := &testpb.All{}
			if err := protojson.Unmarshal(b, ref); err != nil {
				t.Fatalf("protojson cannot read %s: %v", b, err)
			}
			if name != "unknown enum" && !proto.Equal(ref, in) {
				t.Errorf("protojson read back\n%v\nwant\n%v", ref, in)
			}
			if name == "unknown enum" {
				// A closed enum cannot take an unknown number from JSON.
				if err := JSON.Unmarshal(b, &testpb.All{}); err == nil || !strings.Contains(err.Error(), "field kind") {
					t.Fatalf("got %v, want unknown enum number error", err)
				}
				return
			}
			out := &testpb.All{}
			if err := JSON.Unmarshal(b, out); err != nil {
				t.Fatalf("Unmarshal(%s): %v", b, err)
			}
			if !proto.Equal(out, in) {
				t.Errorf("round trip\n got %v\nwant %v\njson %s", out, in, b)
			}
		})
	}
}

func TestJSONNaN(t *testing.T) {
	b, err := JSON.Marshal(&testpb.All{Name: proto.String("n"), Dbl: proto.Float64(math.NaN())})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"name":"n","dbl":"NaN"}`; string(b) != want {
		t.Fatalf("got %s, want %s", b, want)
	}
	out := &testpb.All{}
	if err := JSON.Unmarshal(b, out); err != nil || !math.IsNaN(out.GetDbl()) {
		t.Fatalf("got %v, %v; want NaN", out.GetDbl(), err)
	}
}

// TestJSONOutputBytes pins the exact wire form Mesos clients expect.
func TestJSONOutputBytes(t *testing.T) {
	tests := []struct {
		name string
		in   *testpb.All
		want string
	}{
		{
			name: "64-bit as numbers",
			in: &testpb.All{
				Name: proto.String("x"), I64: proto.Int64(-9007199254740993), U64: proto.Uint64(math.MaxUint64),
				S64: proto.Int64(math.MinInt64), F64: proto.Uint64(1 << 63), Sf64: proto.Int64(-2),
			},
			want: `{"name":"x","i64":-9007199254740993,"u64":18446744073709551615,"s64":-9223372036854775808,"f64":9223372036854775808,"sf64":-2}`,
		},
		{
			name: "repeated and map 64-bit as numbers",
			in: &testpb.All{
				Name: proto.String("x"), Nums: []int64{1 << 60, -1},
				Counts: map[string]int64{"z": 1 << 62, "a": 0},
				ById:   map[int64]string{10: "b", -1: "a", 2: "c"},
			},
			want: `{"name":"x","nums":[1152921504606846976,-1],"counts":{"a":0,"z":4611686018427387904},"by_id":{"-1":"a","2":"c","10":"b"}}`,
		},
		{
			name: "proto names, enum names, base64, nested",
			in: &testpb.All{
				Name: proto.String("x"), WithDefault: proto.String("set"), KindDefault: testpb.All_FIRST.Enum(),
				Data: []byte{0xfb, 0xff}, Kinds: []testpb.All_Kind{testpb.All_SECOND},
				Inner: &testpb.Inner{Value: proto.String("v")},
				Items: []*testpb.Inner{{Value: proto.String("i"), Count: proto.Int64(3)}},
			},
			want: `{"name":"x","data":"+/8=","inner":{"value":"v"},"items":[{"value":"i","count":3}],"with_default":"set","kind_default":"FIRST","kinds":["SECOND"]}`,
		},
		{
			name: "unset defaults omitted, explicit zero kept",
			in:   &testpb.All{Name: proto.String(""), I32: proto.Int32(0), Flag: proto.Bool(false)},
			want: `{"name":"","i32":0,"flag":false}`,
		},
		{
			name: "empty lists and maps omitted",
			in:   &testpb.All{Name: proto.String("x"), Nums: []int64{}, Counts: map[string]int64{}},
			want: `{"name":"x"}`,
		},
		{
			name: "floats",
			in:   &testpb.All{Name: proto.String("x"), Dbl: proto.Float64(3600), Flt: proto.Float32(0.1)},
			want: `{"name":"x","dbl":3600,"flt":0.1}`,
		},
		{
			name: "string escapes and invalid utf8",
			in:   &testpb.All{Name: proto.String("a\"b\\c\n\x01<>&\xffé")},
			want: `{"name":"a\"b\\c\n\u0001<>&\ufffdé"}`,
		},
		{
			name: "oneof",
			in:   &testpb.All{Name: proto.String("x"), Choice: &testpb.All_ChoiceNum{ChoiceNum: -1 << 60}},
			want: `{"name":"x","choice_num":-1152921504606846976}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := JSON.Marshal(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("got  %s\nwant %s", b, tt.want)
			}
		})
	}
}

func TestJSONMarshalRequired(t *testing.T) {
	_, err := JSON.Marshal(&testpb.All{})
	if err == nil || !strings.Contains(err.Error(), "corral.codec.test.All.name") {
		t.Fatalf("got %v, want error naming the required field", err)
	}
	if b, err := JSON.Marshal(nil); err != nil || string(b) != "{}" {
		t.Fatalf("Marshal(nil) = %s, %v", b, err)
	}
}

func TestJSONUnmarshal(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want *testpb.All
	}{
		{
			name: "proto names",
			in:   `{"name":"x","with_default":"w","int_default":5,"kind_default":"FIRST","by_id":{"3":"c"}}`,
			want: &testpb.All{Name: proto.String("x"), WithDefault: proto.String("w"), IntDefault: proto.Int64(5),
				KindDefault: testpb.All_FIRST.Enum(), ById: map[int64]string{3: "c"}},
		},
		{
			name: "camelCase names",
			in:   `{"name":"x","withDefault":"w","intDefault":5,"kindDefault":"FIRST","byId":{"3":"c"},"choiceStr":"s"}`,
			want: &testpb.All{Name: proto.String("x"), WithDefault: proto.String("w"), IntDefault: proto.Int64(5),
				KindDefault: testpb.All_FIRST.Enum(), ById: map[int64]string{3: "c"}, Choice: &testpb.All_ChoiceStr{ChoiceStr: "s"}},
		},
		{
			name: "64-bit as strings and numbers",
			in:   `{"name":"x","i64":"-9007199254740993","u64":"18446744073709551615","s64":-9223372036854775808,"f64":"1","sf64":2,"nums":["1",2],"counts":{"a":"7"}}`,
			want: &testpb.All{Name: proto.String("x"), I64: proto.Int64(-9007199254740993), U64: proto.Uint64(math.MaxUint64),
				S64: proto.Int64(math.MinInt64), F64: proto.Uint64(1), Sf64: proto.Int64(2), Nums: []int64{1, 2},
				Counts: map[string]int64{"a": 7}},
		},
		{
			name: "integers written as floats",
			in:   `{"name":"x","i64":3600.0,"i32":1e3,"u32":"2E2"}`,
			want: &testpb.All{Name: proto.String("x"), I64: proto.Int64(3600), I32: proto.Int32(1000), U32: proto.Uint32(200)},
		},
		{
			name: "enum numbers",
			in:   `{"name":"x","kind":2,"kinds":[1,"SECOND",0]}`,
			want: &testpb.All{Name: proto.String("x"), Kind: testpb.All_SECOND.Enum(),
				Kinds: []testpb.All_Kind{testpb.All_FIRST, testpb.All_SECOND, testpb.All_UNKNOWN}},
		},
		{
			name: "null everywhere",
			in: `{"name":"x","i32":null,"i64":null,"u64":null,"s64":null,"f64":null,"dbl":null,"flt":null,"flag":null,
				"data":null,"inner":null,"kind":null,"nums":null,"items":null,"counts":null,"inners":null,
				"with_default":null,"kinds":null,"by_id":null,"blobs":null,"child":null,"choice_str":null,"choice_num":null}`,
			want: &testpb.All{Name: proto.String("x")},
		},
		{
			name: "null inside lists and maps",
			in: `{"name":"x","nums":[null,1,null],"items":[null,{"value":"a","count":null}],"kinds":[null],
				"counts":{"a":null,"b":2},"inners":{"k":null,"j":{"value":"v"}},"blobs":[null],
				"child":{"name":"c","items":null,"inner":{"value":"i","count":null}}}`,
			want: &testpb.All{Name: proto.String("x"), Nums: []int64{1}, Items: []*testpb.Inner{{Value: proto.String("a")}},
				Kinds: []testpb.All_Kind{}, Counts: map[string]int64{"b": 2}, Inners: map[string]*testpb.Inner{"j": {Value: proto.String("v")}},
				Child: &testpb.All{Name: proto.String("c"), Inner: &testpb.Inner{Value: proto.String("i")}}},
		},
		{
			name: "null name in both spellings, camel wins when set",
			in:   `{"name":"x","withDefault":"w","with_default":null}`,
			want: &testpb.All{Name: proto.String("x"), WithDefault: proto.String("w")},
		},
		{
			name: "unknown fields ignored",
			in:   `{"name":"x","nope":1,"deep":{"a":[1,{"b":null}]},"inner":{"value":"v","extra":"e"},"[ext.field]":true}`,
			want: &testpb.All{Name: proto.String("x"), Inner: &testpb.Inner{Value: proto.String("v")}},
		},
		{
			name: "base64 variants",
			in:   `{"name":"x","data":"-_8","blobs":["+/8=","+/8","-_8=","aGk="]}`,
			want: &testpb.All{Name: proto.String("x"), Data: []byte{0xfb, 0xff},
				Blobs: [][]byte{{0xfb, 0xff}, {0xfb, 0xff}, {0xfb, 0xff}, []byte("hi")}},
		},
		{
			name: "float spellings",
			in:   `{"name":"x","dbl":"-Infinity","flt":"1.5"}`,
			want: &testpb.All{Name: proto.String("x"), Dbl: proto.Float64(math.Inf(-1)), Flt: proto.Float32(1.5)},
		},
		{
			name: "top-level null is an empty message",
			in:   `null`,
			want: nil, // fails the required check; see TestJSONUnmarshalErrors
		},
	}
	for _, tt := range tests {
		if tt.want == nil {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			got := &testpb.All{I32: proto.Int32(123)} // Unmarshal must reset
			if err := JSON.Unmarshal([]byte(tt.in), got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tt.want) {
				t.Errorf("got  %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestJSONUnmarshalErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // the whole error message
	}{
		{"empty", ``, "invalid JSON for corral.codec.test.All: empty body"},
		{"syntax", `{"name":`, "invalid JSON for corral.codec.test.All: unexpected EOF"},
		{"trailing", `{"name":"x"} {}`, "invalid JSON for corral.codec.test.All: unexpected data after the top-level value"},
		{"not object", `[1]`, "invalid JSON for corral.codec.test.All: expected object for corral.codec.test.All, got array"},
		{"required missing", `{"i32":1}`, "invalid JSON for corral.codec.test.All: missing required field name"},
		{"top-level null", `null`, "invalid JSON for corral.codec.test.All: missing required field name"},
		{"nested required", `{"name":"x","inner":{"count":1}}`, "invalid JSON for corral.codec.test.All: missing required field inner.value"},
		{"required in list", `{"name":"x","items":[{"value":"a"},{}]}`, "invalid JSON for corral.codec.test.All: missing required field items[1].value"},
		{"required in map", `{"name":"x","inners":{"k":{}}}`, `invalid JSON for corral.codec.test.All: missing required field inners["k"].value`},
		{"required null", `{"name":null}`, "invalid JSON for corral.codec.test.All: missing required field name"},
		{"wrong type", `{"name":1}`, "invalid JSON for corral.codec.test.All: field name: expected string, got number"},
		{"nested wrong type", `{"name":"x","inner":{"value":true}}`, "invalid JSON for corral.codec.test.All: field inner.value: expected string, got boolean"},
		{"list element", `{"name":"x","items":[{"value":"a"},{"value":"b","count":"x"}]}`,
			`invalid JSON for corral.codec.test.All: field items[1].count: invalid integer "x"`},
		{"map value", `{"name":"x","counts":{"a":true}}`, `invalid JSON for corral.codec.test.All: field counts["a"]: expected integer, got boolean`},
		{"map key", `{"name":"x","by_id":{"one":"a"}}`, `invalid JSON for corral.codec.test.All: field by_id["one"]: invalid integer "one"`},
		{"unknown enum name", `{"name":"x","kind":"THIRD"}`,
			`invalid JSON for corral.codec.test.All: field kind: unknown value "THIRD" for enum corral.codec.test.All.Kind`},
		{"unknown enum number", `{"name":"x","kinds":[1,7]}`,
			"invalid JSON for corral.codec.test.All: field kinds[1]: unknown number 7 for enum corral.codec.test.All.Kind"},
		{"int32 overflow", `{"name":"x","i32":2147483648}`, "invalid JSON for corral.codec.test.All: field i32: integer 2147483648 out of range for int32"},
		{"uint negative", `{"name":"x","u64":-1}`, `invalid JSON for corral.codec.test.All: field u64: invalid unsigned integer "-1"`},
		{"fractional int", `{"name":"x","i64":1.5}`, `invalid JSON for corral.codec.test.All: field i64: invalid integer "1.5"`},
		{"hex in string", `{"name":"x","i64":"0x1p3"}`, `invalid JSON for corral.codec.test.All: field i64: invalid integer "0x1p3"`},
		{"inf string for float", `{"name":"x","dbl":"inf"}`, `invalid JSON for corral.codec.test.All: field dbl: invalid number "inf"`},
		{"float32 overflow", `{"name":"x","flt":1e40}`, "invalid JSON for corral.codec.test.All: field flt: number 1e40 out of range for float32"},
		{"bad base64", `{"name":"x","data":"!!"}`, "invalid JSON for corral.codec.test.All: field data: invalid base64: illegal base64 data at input byte 0"},
		{"bool as string", `{"name":"x","flag":"true"}`, "invalid JSON for corral.codec.test.All: field flag: expected bool, got string"},
		{"list not array", `{"name":"x","nums":1}`, "invalid JSON for corral.codec.test.All: field nums: expected array, got number"},
		{"map not object", `{"name":"x","counts":[]}`, "invalid JSON for corral.codec.test.All: field counts: expected object, got array"},
		{"both spellings", `{"name":"x","with_default":"a","withDefault":"b"}`,
			`invalid JSON for corral.codec.test.All: field with_default: given twice, as "with_default" and "withDefault"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := JSON.Unmarshal([]byte(tt.in), &testpb.All{})
			if err == nil {
				t.Fatalf("Unmarshal(%s) succeeded, want error %q", tt.in, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("got  %q\nwant %q", err, tt.want)
			}
		})
	}
}

func TestJSONOneofConflict(t *testing.T) {
	err := JSON.Unmarshal([]byte(`{"name":"x","choice_str":"a","choice_num":1}`), &testpb.All{})
	if err == nil || !strings.Contains(err.Error(), "oneof choice already set") {
		t.Fatalf("got %v, want oneof conflict", err)
	}
}

// TestProtojsonNull records what protojson itself accepts, which is why the
// codec has its own reader.
func TestProtojsonNull(t *testing.T) {
	opts := protojson.UnmarshalOptions{DiscardUnknown: true}
	if err := opts.Unmarshal([]byte(`{"name":"x","nums":null,"items":null,"counts":null}`), &testpb.All{}); err != nil {
		t.Errorf("protojson rejects null lists and maps: %v", err)
	}
	for _, in := range []string{
		`{"name":"x","items":[null]}`,
		`{"name":"x","counts":{"a":null}}`,
	} {
		if err := opts.Unmarshal([]byte(in), &testpb.All{}); err == nil {
			t.Errorf("protojson now accepts %s; the custom reader may be unnecessary", in)
		}
	}
}

func TestProtobufRoundTrip(t *testing.T) {
	in := full()
	b, err := Protobuf.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	out := &testpb.All{}
	if err := Protobuf.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(in, out) {
		t.Fatalf("got %v, want %v", out, in)
	}

	// Unknown fields survive (field 1000, varint 1).
	withUnknown := append(bytes.Clone(b), 0xc0, 0x3e, 0x01)
	if err := Protobuf.Unmarshal(withUnknown, out); err != nil {
		t.Fatal(err)
	}
	if len(out.ProtoReflect().GetUnknown()) == 0 {
		t.Error("unknown fields dropped")
	}

	if _, err := Protobuf.Marshal(&testpb.All{}); err == nil || !strings.Contains(err.Error(), "corral.codec.test.All.name") {
		t.Errorf("Marshal without required field: got %v", err)
	}
	inner, _ := proto.Marshal(&testpb.Inner{Value: proto.String("v")})
	err = Protobuf.Unmarshal(inner[:0], &testpb.All{})
	if err == nil || !strings.Contains(err.Error(), "invalid protobuf for corral.codec.test.All") ||
		!strings.Contains(err.Error(), "corral.codec.test.All.name") {
		t.Errorf("Unmarshal without required field: got %v", err)
	}
}

func FuzzUnmarshalJSON(f *testing.F) {
	seed, _ := JSON.Marshal(full())
	f.Add(seed)
	for _, s := range []string{
		`{"name":"x","items":[null,{"value":null}],"counts":{"a":null}}`,
		`{"name":"x","i64":"1e3","u32":-0,"flt":"NaN","by_id":{"-0":"z"}}`,
		`{"child":{"child":{"child":{"name":1}}}}`,
		`{"name":"x","choiceStr":"a","choice_num":1}`,
		`null`, `[]`, `"x"`, `{"data":"===="}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := &testpb.All{}
		if err := JSON.Unmarshal(data, m); err != nil {
			return
		}
		// Whatever we accept must encode, and read back to the same message.
		b, err := JSON.Marshal(m)
		if err != nil {
			t.Fatalf("accepted %q but cannot encode it: %v", data, err)
		}
		m2 := &testpb.All{}
		if err := JSON.Unmarshal(b, m2); err != nil {
			t.Fatalf("cannot read own output %s: %v", b, err)
		}
		if !proto.Equal(m, m2) && !hasNaN(m) {
			t.Fatalf("re-encoding changed the message:\n%v\n%v", m, m2)
		}
	})
}

func hasNaN(m *testpb.All) bool {
	for ; m != nil; m = m.GetChild() {
		if math.IsNaN(m.GetDbl()) || math.IsNaN(float64(m.GetFlt())) {
			return true
		}
	}
	return false
}

func BenchmarkMarshalJSON(b *testing.B) {
	m := full()
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := JSON.Marshal(m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("protojson", func(b *testing.B) {
		b.ReportAllocs()
		opts := protojson.MarshalOptions{UseProtoNames: true}
		for b.Loop() {
			if _, err := opts.Marshal(m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkUnmarshalJSON(b *testing.B) {
	data, err := JSON.Marshal(full())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := JSON.Unmarshal(data, &testpb.All{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("protojson", func(b *testing.B) {
		b.ReportAllocs()
		opts := protojson.UnmarshalOptions{DiscardUnknown: true}
		for b.Loop() {
			if err := opts.Unmarshal(data, &testpb.All{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
