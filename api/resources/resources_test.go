package resources

import (
	"encoding/json"
	"testing"

	"github.com/corral/corral/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

func mustParse(t *testing.T, s string) Resources {
	t.Helper()
	r, err := Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return r
}

func TestParseText(t *testing.T) {
	cases := []struct {
		in   string
		want string // String() of the result
	}{
		{"", ""},
		{"   ", ""},
		{"cpus:2", "cpus:2"},
		{"cpus:2;mem:1024", "cpus:2;mem:1024"},
		{" cpus : 2 ; mem : 1024 ;", "cpus:2;mem:1024"},
		{"cpus:0.5;mem:256.25", "cpus:0.5;mem:256.25"},
		{"ports:[31000-32000]", "ports:[31000-32000]"},
		{"ports:[31000-31009, 31005-31020]", "ports:[31000-31020]"}, // overlapping merge
		{"ports:[10-20,21-30]", "ports:[10-30]"},                    // adjacent merge
		{"ports:[40-50,10-20]", "ports:[10-20,40-50]"},              // sorted
		{"ports:[80]", "ports:[80-80]"},                             // single port
		{"ports:[]", ""},                                            // empty ranges drop out
		{"zones:{b,a,b}", "zones:{a,b}"},                            // set dedup + sort
		{"zones:{ a , c }", "zones:{a,c}"},
		{"cpus(web):2", "cpus(web):2"},
		{"cpus(*):2", "cpus:2"},
		{"cpus:1;cpus:2", "cpus:3"}, // same name merges
		{"cpus:1;cpus(web):2", "cpus:1;cpus(web):2"},
		{"cpus:0", ""}, // zero is empty
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			r := mustParse(t, c.in)
			if got := r.String(); got != c.want {
				t.Errorf("Parse(%q).String() = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestParseTypesAndRoles(t *testing.T) {
	r := mustParse(t, "cpus(web):2;mem:1024;ports:[31000-32000];zones:{a,b}")
	if len(r) != 4 {
		t.Fatalf("len = %d, want 4: %v", len(r), r)
	}
	types := map[string]mesos.Value_Type{}
	for _, x := range r {
		types[x.GetName()] = x.GetType()
	}
	want := map[string]mesos.Value_Type{"cpus": mesos.Value_SCALAR, "mem": mesos.Value_SCALAR, "ports": mesos.Value_RANGES, "zones": mesos.Value_SET}
	for k, v := range want {
		if types[k] != v {
			t.Errorf("%s type = %v, want %v", k, types[k], v)
		}
	}
	for _, x := range r {
		switch x.GetName() {
		case "cpus":
			if Role(x) != "web" {
				t.Errorf("cpus role = %q, want web", Role(x))
			}
			if len(x.GetReservations()) != 1 || x.GetReservations()[0].GetType() != mesos.Resource_ReservationInfo_STATIC {
				t.Errorf("cpus reservations = %v, want one STATIC", x.GetReservations())
			}
		default:
			if Role(x) != "*" {
				t.Errorf("%s role = %q, want *", x.GetName(), Role(x))
			}
		}
	}
	if got := r.Scalar("cpus"); got != 2 {
		t.Errorf("Scalar(cpus) = %v, want 2", got)
	}
}

func TestParseJSON(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want string
	}{
		{"scalars", `[{"name":"cpus","type":"SCALAR","scalar":{"value":2}},{"name":"mem","type":"SCALAR","scalar":{"value":512}}]`, "cpus:2;mem:512"},
		{"spaced ranges", `[{"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 31000, "end": 31005}]}}]`, "ports:[31000-31005]"},
		{"enum numbers and string ints", `[{"name": "ports", "type": 1, "ranges": {"range": [{"begin": "10", "end": "20"}]}}]`, "ports:[10-20]"},
		{"role", `[{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}, "reservations": [{"type": "STATIC", "role": "web"}]}]`, "cpus(web):1"},
		{"null fields", `[{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}, "role": null, "reservations": null}]`, "cpus:1"},
		{"whitespace", "  [ {\"name\": \"cpus\", \"type\": \"SCALAR\", \"scalar\": {\"value\": 1}} ]  ", "cpus:1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Parse(c.in)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := r.String(); got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

// Compact JSON with ranges or sets contains `":[` (e.g. "range":[...]), which
// Parse's JSON detection mistakes for the text form "ports:[...]".
func TestParseJSONCompactRangesAndSets(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want string
	}{
		{"ranges", `[{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":31005}]}}]`, "ports:[31000-31005]"},
		{"set", `[{"name":"zones","type":"SET","set":{"item":["a","b"]}}]`, "zones:{a,b}"},
		{"reservations", `[{"name":"cpus","type":"SCALAR","scalar":{"value":1},"reservations":[{"type":"STATIC","role":"web"}]}]`, "cpus(web):1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Parse(c.in)
			if err != nil {
				t.Fatalf("Parse(%s): %v", c.in, err)
			}
			if got := r.String(); got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, in string
	}{
		{"bad number", "cpus:abc"},
		{"bad number with unit", "mem:1GB"},
		{"NaN", "cpus:NaN"},
		{"Inf", "cpus:Inf"},
		{"negative scalar", "cpus:-1"},
		{"missing colon", "cpus"},
		{"empty name", ":2"},
		{"empty name with role", "(web):2"},
		{"unbalanced role", "cpus(web:2"},
		{"unterminated range", "ports:[31000-32000"},
		{"unterminated range then more", "ports:[1-2;cpus:1"},
		{"inverted range", "ports:[32000-31000]"},
		{"range not a number", "ports:[a-b]"},
		{"negative range", "ports:[-5-10]"},
		{"unterminated set", "zones:{a,b"},
		{"bad JSON", `[{"name":"cpus",`},
		{"JSON without name", `[{"type":"SCALAR","scalar":{"value":1}}]`},
		{"JSON negative", `[{"name":"cpus","type":"SCALAR","scalar":{"value":-1}}]`},
		{"JSON scalar type without value", `[{"name":"cpus","type":"SCALAR"}]`},
		{"JSON inverted range", `[{"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 9, "end": 1}]}}]`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Parse(c.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want an error", c.in, r)
			}
			if err.Error() == "" {
				t.Errorf("empty error message")
			}
		})
	}
}

func TestNewValidation(t *testing.T) {
	cases := []struct {
		name string
		r    *mesos.Resource
		ok   bool
	}{
		{"ok scalar", &mesos.Resource{Name: proto.String("cpus"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(1)}}, true},
		{"no name", &mesos.Resource{Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(1)}}, false},
		{"type mismatch", &mesos.Resource{Name: proto.String("cpus"), Type: mesos.Value_SCALAR.Enum(), Ranges: &mesos.Value_Ranges{}}, false},
		{"ranges without ranges", &mesos.Resource{Name: proto.String("ports"), Type: mesos.Value_RANGES.Enum()}, false},
		{"set without set", &mesos.Resource{Name: proto.String("z"), Type: mesos.Value_SET.Enum()}, false},
		{"negative", &mesos.Resource{Name: proto.String("cpus"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(-0.5)}}, false},
		{"inverted", &mesos.Resource{Name: proto.String("ports"), Type: mesos.Value_RANGES.Enum(), Ranges: &mesos.Value_Ranges{Range: []*mesos.Value_Range{{Begin: proto.Uint64(5), End: proto.Uint64(4)}}}}, false},
		{"text type", &mesos.Resource{Name: proto.String("t"), Type: mesos.Value_TEXT.Enum()}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New([]*mesos.Resource{c.r})
			if (err == nil) != c.ok {
				t.Errorf("New err = %v, want ok=%v", err, c.ok)
			}
		})
	}
}

func TestScalarFixedPoint(t *testing.T) {
	a := mustParse(t, "cpus:0.1")
	b := mustParse(t, "cpus:0.2")
	sum := a.Plus(b)
	if got := sum.Scalar("cpus"); got != 0.3 {
		t.Errorf("0.1+0.2 = %v, want 0.3", got)
	}
	if !sum.Contains(mustParse(t, "cpus:0.3")) {
		t.Errorf("0.1+0.2 does not contain 0.3")
	}
	if sum.Contains(mustParse(t, "cpus:0.301")) {
		t.Errorf("0.3 contains 0.301")
	}
	// Differences below the fixed point vanish.
	if !mustParse(t, "cpus:0.3").Contains(mustParse(t, "cpus:0.3004")) {
		t.Errorf("0.3 does not contain 0.3004 (same at 0.001)")
	}
	left := sum.Minus(mustParse(t, "cpus:0.3"))
	if !left.Empty() || len(left) != 0 {
		t.Errorf("0.3-0.3 = %v, want empty", left)
	}
	// Repeated adds of 0.1 stay exact.
	var acc Resources
	for range 10 {
		acc = acc.Plus(mustParse(t, "cpus:0.1"))
	}
	if got := acc.Scalar("cpus"); got != 1 {
		t.Errorf("10 x 0.1 = %v, want 1", got)
	}
	if got := mustParse(t, "cpus:1").Minus(mustParse(t, "cpus:0.999")).Scalar("cpus"); got != 0.001 {
		t.Errorf("1-0.999 = %v, want 0.001", got)
	}
}

func TestPlusMinusContains(t *testing.T) {
	cases := []struct {
		name       string
		a, b       string
		plus       string
		minus      string
		aContainsB bool
	}{
		{"scalars", "cpus:2;mem:1024", "cpus:0.5;mem:24", "cpus:2.5;mem:1048", "cpus:1.5;mem:1000", true},
		{"scalar more than there is floors at empty", "cpus:1", "cpus:3", "cpus:4", "", false},
		{"new name", "cpus:1", "mem:10", "cpus:1;mem:10", "cpus:1", false},
		{"ranges merge", "ports:[1-10]", "ports:[11-20]", "ports:[1-20]", "ports:[1-10]", false},
		{"ranges split", "ports:[1-10]", "ports:[4-6]", "ports:[1-10]", "ports:[1-3,7-10]", true},
		{"ranges trim ends", "ports:[1-10]", "ports:[1-1,10-10]", "ports:[1-10]", "ports:[2-9]", true},
		{"ranges partial overlap", "ports:[1-10]", "ports:[8-15]", "ports:[1-15]", "ports:[1-7]", false},
		{"ranges multi", "ports:[1-10,20-30]", "ports:[5-25]", "ports:[1-30]", "ports:[1-4,26-30]", false},
		{"ranges all", "ports:[1-10]", "ports:[1-10]", "ports:[1-10]", "", true},
		{"sets", "zones:{a,b,c}", "zones:{b}", "zones:{a,b,c}", "zones:{a,c}", true},
		{"sets new item", "zones:{a}", "zones:{b}", "zones:{a,b}", "zones:{a}", false},
		{"sets all", "zones:{a}", "zones:{a}", "zones:{a}", "", true},
		{"reserved vs unreserved", "cpus:4", "cpus(web):1", "cpus:4;cpus(web):1", "cpus:4", false},
		{"unreserved vs reserved", "cpus(web):4", "cpus:1", "cpus(web):4;cpus:1", "cpus(web):4", false},
		{"same role", "cpus(web):4", "cpus(web):1", "cpus(web):5", "cpus(web):3", true},
		{"different roles", "cpus(web):4", "cpus(db):1", "cpus(web):4;cpus(db):1", "cpus(web):4", false},
		{"empty b", "cpus:1", "", "cpus:1", "cpus:1", true},
		{"empty a", "", "cpus:1", "cpus:1", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, b := mustParse(t, c.a), mustParse(t, c.b)
			aStr, bStr := a.String(), b.String()
			if got := a.Plus(b).String(); got != c.plus {
				t.Errorf("%s + %s = %q, want %q", c.a, c.b, got, c.plus)
			}
			if got := a.Minus(b).String(); got != c.minus {
				t.Errorf("%s - %s = %q, want %q", c.a, c.b, got, c.minus)
			}
			if got := a.Contains(b); got != c.aContainsB {
				t.Errorf("%s contains %s = %v, want %v", c.a, c.b, got, c.aContainsB)
			}
			// a+b always contains a and b; (a+b)-b contains a-b.
			if !a.Plus(b).Contains(a) || !a.Plus(b).Contains(b) {
				t.Errorf("a+b does not contain a and b")
			}
			if !a.Contains(a.Minus(b)) {
				t.Errorf("a does not contain a-b")
			}
			// The operands are unchanged.
			if a.String() != aStr || b.String() != bStr {
				t.Errorf("operands changed: a=%q (was %q) b=%q (was %q)", a, aStr, b, bStr)
			}
		})
	}
}

// Plus must not write into its receiver's spare capacity: two sums of the
// same base must not see each other's entries.
func TestPlusDoesNotAlias(t *testing.T) {
	base := mustParse(t, "cpus:1;mem:2;disk:3") // built by appends: cap 4, len 3
	p1 := base.Plus(mustParse(t, "gpus:1"))
	p2 := base.Plus(mustParse(t, "ports:[1-2]"))
	if got := p1.String(); got != "cpus:1;mem:2;disk:3;gpus:1" {
		t.Errorf("p1 = %q after computing p2, want cpus:1;mem:2;disk:3;gpus:1", got)
	}
	if got := p2.String(); got != "cpus:1;mem:2;disk:3;ports:[1-2]" {
		t.Errorf("p2 = %q", got)
	}

	// The same through Minus, which leaves spare capacity by cutting an entry.
	m := mustParse(t, "cpus:1;mem:2;disk:3;gpus:1").Minus(mustParse(t, "mem:2"))
	q1 := m.Plus(mustParse(t, "zones:{a}"))
	q2 := m.Plus(mustParse(t, "ports:[5-6]"))
	if got := q1.String(); got != "cpus:1;disk:3;gpus:1;zones:{a}" {
		t.Errorf("q1 = %q after computing q2, want cpus:1;disk:3;gpus:1;zones:{a}", got)
	}
	if got := q2.String(); got != "cpus:1;disk:3;gpus:1;ports:[5-6]" {
		t.Errorf("q2 = %q", got)
	}
}

func TestMinusDoesNotAlias(t *testing.T) {
	a := mustParse(t, "cpus:1;mem:2;disk:3")
	_ = a.Minus(mustParse(t, "cpus:1"))
	_ = a.Minus(mustParse(t, "mem:1"))
	if got := a.String(); got != "cpus:1;mem:2;disk:3" {
		t.Errorf("a changed by Minus: %q", got)
	}
}

func TestContainsMissingAndZero(t *testing.T) {
	a := mustParse(t, "cpus:1")
	if a.Contains(mustParse(t, "gpus:1")) {
		t.Errorf("cpus:1 contains gpus:1")
	}
	zero := Resources{{Name: proto.String("gpus"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(0)}}}
	if !a.Contains(zero) {
		t.Errorf("cpus:1 does not contain gpus:0")
	}
	if !a.Contains(nil) {
		t.Errorf("does not contain nothing")
	}
}

func TestAllocationInfoIgnoredForMerging(t *testing.T) {
	a := mustParse(t, "cpus:2")
	off := mustParse(t, "cpus:1").WithAllocation("web")
	if off[0].GetAllocationInfo().GetRole() != "web" {
		t.Fatalf("WithAllocation did not set the role")
	}
	if !a.Contains(off) {
		t.Errorf("cpus:2 does not contain cpus:1 with allocation info")
	}
	if got := a.Minus(off).String(); got != "cpus:1" {
		t.Errorf("minus = %q", got)
	}
	sum := a.Plus(off)
	if got := sum.String(); got != "cpus:3" {
		t.Errorf("plus = %q", got)
	}
	for _, r := range sum {
		if r.AllocationInfo != nil {
			t.Errorf("allocation info kept in merged list: %v", r)
		}
	}
	// WithAllocation copies.
	if mustParse(t, "cpus:1")[0].AllocationInfo != nil {
		t.Fatal("unexpected")
	}
	orig := mustParse(t, "cpus:1")
	_ = orig.WithAllocation("x")
	if orig[0].AllocationInfo != nil {
		t.Errorf("WithAllocation changed its receiver")
	}
}

func TestCloneIsDeep(t *testing.T) {
	a := mustParse(t, "cpus:1")
	c := a.Clone()
	c[0].Scalar.Value = proto.Float64(9)
	if a.Scalar("cpus") != 1 {
		t.Errorf("Clone shares messages")
	}
}

func TestScalarSumsReservations(t *testing.T) {
	r := mustParse(t, "cpus:1;cpus(web):2.5;mem:10")
	if got := r.Scalar("cpus"); got != 3.5 {
		t.Errorf("Scalar(cpus) = %v, want 3.5", got)
	}
	if got := r.Scalar("gpus"); got != 0 {
		t.Errorf("Scalar(gpus) = %v", got)
	}
}

func TestEmpty(t *testing.T) {
	if !Resources(nil).Empty() {
		t.Error("nil not empty")
	}
	if mustParse(t, "cpus:0.001").Empty() {
		t.Error("cpus:0.001 empty")
	}
}

func TestStateJSON(t *testing.T) {
	cases := []struct {
		in   string
		want string
	}{
		{"", `{"cpus":0,"disk":0,"gpus":0,"mem":0}`},
		{"cpus:2;mem:1024;disk:4096;ports:[31000-32000]", `{"cpus":2,"disk":4096,"gpus":0,"mem":1024,"ports":"[31000-32000]"}`},
		{"ports:[1-2,5-9]", `{"cpus":0,"disk":0,"gpus":0,"mem":0,"ports":"[1-2, 5-9]"}`},
		{"cpus:0.1;cpus(web):0.2;zones:{a,b}", `{"cpus":0.3,"disk":0,"gpus":0,"mem":0,"zones":"{a, b}"}`},
		{"gpus:1", `{"cpus":0,"disk":0,"gpus":1,"mem":0}`},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			b, err := json.Marshal(mustParse(t, c.in).StateJSON())
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != c.want {
				t.Errorf("StateJSON(%q) = %s, want %s", c.in, b, c.want)
			}
		})
	}
}

func TestStringParseRoundTrip(t *testing.T) {
	for _, s := range []string{"cpus:2;mem:1024;disk:10;ports:[1-5,7-9];zones:{a,b}", "cpus(web):0.5;mem(db):3"} {
		r := mustParse(t, s)
		again := mustParse(t, r.String())
		if !r.Contains(again) || !again.Contains(r) {
			t.Errorf("round trip of %q: %q", s, again)
		}
	}
}
