// Package resources does arithmetic on Mesos resource lists: parsing the
// --resources text form, adding, subtracting and checking containment over
// scalars (with Mesos' fixed point of 0.001), ranges and sets.
package resources

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

// Resources is a resource list kept merged: at most one entry per name and
// reservation. The zero value is empty.
type Resources []*mesos.Resource

// New merges a resource list from the wire. It rejects what Mesos rejects:
// missing names, a type that does not match its value, negative scalars and
// inverted ranges.
func New(list []*mesos.Resource) (Resources, error) {
	var out Resources
	for _, r := range list {
		if err := validate(r); err != nil {
			return nil, err
		}
		out = out.add(r)
	}
	return out, nil
}

func validate(r *mesos.Resource) error {
	if r.GetName() == "" {
		return fmt.Errorf("resource without a name")
	}
	switch r.GetType() {
	case mesos.Value_SCALAR:
		if r.Scalar == nil {
			return fmt.Errorf("resource %s: scalar type without a scalar value", r.GetName())
		}
		if v := r.GetScalar().GetValue(); v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("resource %s: invalid scalar value %v", r.GetName(), v)
		}
	case mesos.Value_RANGES:
		if r.Ranges == nil {
			return fmt.Errorf("resource %s: ranges type without ranges", r.GetName())
		}
		for _, rg := range r.GetRanges().GetRange() {
			if rg.GetBegin() > rg.GetEnd() {
				return fmt.Errorf("resource %s: range [%d-%d] begins after it ends", r.GetName(), rg.GetBegin(), rg.GetEnd())
			}
		}
	case mesos.Value_SET:
		if r.Set == nil {
			return fmt.Errorf("resource %s: set type without a set", r.GetName())
		}
	default:
		return fmt.Errorf("resource %s: unsupported type %v", r.GetName(), r.GetType())
	}
	return nil
}

// key identifies which entries merge: the same name, type and reservation.
// Allocation info is not part of it: offers to multi-role frameworks carry
// it, the agent's totals do not.
func key(r *mesos.Resource) string {
	var b strings.Builder
	b.WriteString(r.GetName())
	b.WriteByte('|')
	b.WriteString(r.GetType().String())
	b.WriteByte('|')
	b.WriteString(Role(r))
	for _, rv := range r.GetReservations() {
		b.WriteByte('|')
		b.WriteString(rv.GetRole())
		b.WriteByte('/')
		b.WriteString(rv.GetPrincipal())
	}
	if r.Disk != nil {
		b.WriteString("|disk:")
		b.WriteString(r.GetDisk().GetPersistence().GetId())
		b.WriteString(r.GetDisk().GetVolume().GetContainerPath())
	}
	if r.Revocable != nil {
		b.WriteString("|revocable")
	}
	return b.String()
}

// Role is the role a resource is reserved for, "*" when unreserved.
func Role(r *mesos.Resource) string {
	if n := len(r.GetReservations()); n > 0 {
		return r.GetReservations()[n-1].GetRole()
	}
	if r.Role != nil {
		return r.GetRole()
	}
	return "*"
}

// Clone deep-copies the list.
func (rs Resources) Clone() Resources {
	out := make(Resources, len(rs))
	for i, r := range rs {
		out[i] = proto.Clone(r).(*mesos.Resource)
	}
	return out
}

func (rs Resources) find(k string) int {
	for i, r := range rs {
		if key(r) == k {
			return i
		}
	}
	return -1
}

// add merges one resource into the list, copying as needed.
func (rs Resources) add(r *mesos.Resource) Resources {
	if isEmpty(r) {
		return rs
	}
	i := rs.find(key(r))
	if i < 0 {
		c := proto.Clone(r).(*mesos.Resource)
		c.AllocationInfo = nil
		// A fresh backing array: the caller's list must never change under it.
		out := make(Resources, len(rs), len(rs)+1)
		copy(out, rs)
		return append(out, c)
	}
	cur := proto.Clone(rs[i]).(*mesos.Resource)
	switch r.GetType() {
	case mesos.Value_SCALAR:
		cur.Scalar.Value = proto.Float64(round(cur.GetScalar().GetValue() + r.GetScalar().GetValue()))
	case mesos.Value_RANGES:
		cur.Ranges = toRanges(mergeRanges(fromRanges(cur.GetRanges()), fromRanges(r.GetRanges())))
	case mesos.Value_SET:
		cur.Set = toSet(union(cur.GetSet().GetItem(), r.GetSet().GetItem()))
	}
	out := append(Resources(nil), rs...)
	out[i] = cur
	return out
}

// Plus returns rs + other.
func (rs Resources) Plus(other Resources) Resources {
	out := rs
	for _, r := range other {
		out = out.add(r)
	}
	return out
}

// Minus returns rs - other, dropping what becomes empty. Subtracting more
// than there is floors at empty; use Contains first where that matters.
func (rs Resources) Minus(other Resources) Resources {
	out := append(Resources(nil), rs...)
	for _, r := range other {
		i := out.find(key(r))
		if i < 0 {
			continue
		}
		cur := proto.Clone(out[i]).(*mesos.Resource)
		switch r.GetType() {
		case mesos.Value_SCALAR:
			cur.Scalar.Value = proto.Float64(math.Max(0, round(cur.GetScalar().GetValue()-r.GetScalar().GetValue())))
		case mesos.Value_RANGES:
			cur.Ranges = toRanges(subtractRanges(fromRanges(cur.GetRanges()), fromRanges(r.GetRanges())))
		case mesos.Value_SET:
			cur.Set = toSet(difference(cur.GetSet().GetItem(), r.GetSet().GetItem()))
		}
		if isEmpty(cur) {
			out = append(out[:i], out[i+1:]...)
		} else {
			out[i] = cur
		}
	}
	return out
}

// Contains reports whether every resource of other is within rs.
func (rs Resources) Contains(other Resources) bool {
	for _, r := range other {
		if isEmpty(r) {
			continue
		}
		i := rs.find(key(r))
		if i < 0 {
			return false
		}
		cur := rs[i]
		switch r.GetType() {
		case mesos.Value_SCALAR:
			if round(r.GetScalar().GetValue()) > round(cur.GetScalar().GetValue()) {
				return false
			}
		case mesos.Value_RANGES:
			if len(subtractRanges(fromRanges(r.GetRanges()), fromRanges(cur.GetRanges()))) > 0 {
				return false
			}
		case mesos.Value_SET:
			if len(difference(r.GetSet().GetItem(), cur.GetSet().GetItem())) > 0 {
				return false
			}
		}
	}
	return true
}

// Empty reports whether nothing is left.
func (rs Resources) Empty() bool {
	for _, r := range rs {
		if !isEmpty(r) {
			return false
		}
	}
	return true
}

// Scalar sums the named scalar across reservations.
func (rs Resources) Scalar(name string) float64 {
	var v float64
	for _, r := range rs {
		if r.GetName() == name && r.GetType() == mesos.Value_SCALAR {
			v += r.GetScalar().GetValue()
		}
	}
	return round(v)
}

// WithAllocation returns a copy whose entries carry allocation_info.role, as
// offers to multi-role frameworks must.
func (rs Resources) WithAllocation(role string) Resources {
	out := rs.Clone()
	for _, r := range out {
		r.AllocationInfo = &mesos.Resource_AllocationInfo{Role: proto.String(role)}
	}
	return out
}

// String renders the text form, e.g. "cpus:2;mem:1024;ports:[31000-32000]".
func (rs Resources) String() string {
	parts := make([]string, 0, len(rs))
	for _, r := range rs {
		name := r.GetName()
		if role := Role(r); role != "*" {
			name += "(" + role + ")"
		}
		switch r.GetType() {
		case mesos.Value_SCALAR:
			parts = append(parts, name+":"+strconv.FormatFloat(r.GetScalar().GetValue(), 'f', -1, 64))
		case mesos.Value_RANGES:
			var rgs []string
			for _, rg := range r.GetRanges().GetRange() {
				rgs = append(rgs, fmt.Sprintf("%d-%d", rg.GetBegin(), rg.GetEnd()))
			}
			parts = append(parts, name+":["+strings.Join(rgs, ",")+"]")
		case mesos.Value_SET:
			parts = append(parts, name+":{"+strings.Join(r.GetSet().GetItem(), ",")+"}")
		}
	}
	return strings.Join(parts, ";")
}

// Parse reads the --resources forms Mesos accepts: a JSON array of Resource
// messages, or "name(role):value;..." where value is a scalar, [a-b,c-d]
// ranges or {x,y} a set.
func Parse(s string) (Resources, error) {
	list, err := ParseList(s)
	if err != nil {
		return nil, err
	}
	return New(list)
}

// ParseList is Parse without merging: every entry as written, zero values
// included, so a caller can tell "cpus:0" from no cpus at all.
func ParseList(s string) ([]*mesos.Resource, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	// The text form never is valid JSON ("ports:[1-2]" is not), so validity
	// tells the two forms apart.
	if strings.HasPrefix(s, "[") && json.Valid([]byte(s)) {
		return parseJSON(s)
	}
	var list []*mesos.Resource
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, value, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("resource %q: want name:value", part)
		}
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		r := &mesos.Resource{}
		if i := strings.IndexByte(name, '('); i >= 0 {
			if !strings.HasSuffix(name, ")") {
				return nil, fmt.Errorf("resource %q: unbalanced role parentheses", part)
			}
			role := name[i+1 : len(name)-1]
			name = name[:i]
			if role != "*" && role != "" {
				r.Reservations = []*mesos.Resource_ReservationInfo{{
					Type: mesos.Resource_ReservationInfo_STATIC.Enum(), Role: proto.String(role),
				}}
			}
		}
		if name == "" {
			return nil, fmt.Errorf("resource %q: empty name", part)
		}
		r.Name = proto.String(name)
		switch {
		case strings.HasPrefix(value, "["):
			rg, err := parseRanges(value)
			if err != nil {
				return nil, fmt.Errorf("resource %s: %w", name, err)
			}
			r.Type, r.Ranges = mesos.Value_RANGES.Enum(), toRanges(rg)
		case strings.HasPrefix(value, "{"):
			if !strings.HasSuffix(value, "}") {
				return nil, fmt.Errorf("resource %s: unterminated set %q", name, value)
			}
			var items []string
			for _, it := range strings.Split(value[1:len(value)-1], ",") {
				if it = strings.TrimSpace(it); it != "" {
					items = append(items, it)
				}
			}
			r.Type, r.Set = mesos.Value_SET.Enum(), toSet(union(nil, items))
		default:
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				return nil, fmt.Errorf("resource %s: %q is not a number", name, value)
			}
			r.Type, r.Scalar = mesos.Value_SCALAR.Enum(), &mesos.Value_Scalar{Value: proto.Float64(v)}
		}
		if err := validate(r); err != nil {
			return nil, err
		}
		list = append(list, r)
	}
	return list, nil
}

func parseJSON(s string) ([]*mesos.Resource, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(s), &raw); err != nil {
		return nil, fmt.Errorf("resources JSON: %w", err)
	}
	list := make([]*mesos.Resource, 0, len(raw))
	for i, m := range raw {
		r := &mesos.Resource{}
		if err := codec.JSON.Unmarshal(m, r); err != nil {
			return nil, fmt.Errorf("resources JSON entry %d: %w", i, err)
		}
		if err := validate(r); err != nil {
			return nil, fmt.Errorf("resources JSON entry %d: %w", i, err)
		}
		list = append(list, r)
	}
	return list, nil
}

func parseRanges(v string) ([]span, error) {
	if !strings.HasSuffix(v, "]") {
		return nil, fmt.Errorf("unterminated ranges %q", v)
	}
	var out []span
	for _, part := range strings.Split(v[1:len(v)-1], ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		a, b, ok := strings.Cut(part, "-")
		if !ok {
			b = a
		}
		lo, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 64)
		hi, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 64)
		if err1 != nil || err2 != nil || lo > hi {
			return nil, fmt.Errorf("bad range %q", part)
		}
		out = append(out, span{lo, hi})
	}
	return mergeRanges(nil, out), nil
}

func isEmpty(r *mesos.Resource) bool {
	switch r.GetType() {
	case mesos.Value_SCALAR:
		return round(r.GetScalar().GetValue()) <= 0
	case mesos.Value_RANGES:
		return len(r.GetRanges().GetRange()) == 0
	case mesos.Value_SET:
		return len(r.GetSet().GetItem()) == 0
	}
	return true
}

// round keeps Mesos' fixed point: three decimal digits.
func round(v float64) float64 { return math.Round(v*1000) / 1000 }

type span struct{ lo, hi uint64 }

func fromRanges(r *mesos.Value_Ranges) []span {
	out := make([]span, 0, len(r.GetRange()))
	for _, x := range r.GetRange() {
		out = append(out, span{x.GetBegin(), x.GetEnd()})
	}
	return out
}

func toRanges(s []span) *mesos.Value_Ranges {
	out := &mesos.Value_Ranges{Range: make([]*mesos.Value_Range, 0, len(s))}
	for _, x := range s {
		out.Range = append(out.Range, &mesos.Value_Range{Begin: proto.Uint64(x.lo), End: proto.Uint64(x.hi)})
	}
	return out
}

func mergeRanges(a, b []span) []span {
	all := append(append([]span(nil), a...), b...)
	sort.Slice(all, func(i, j int) bool { return all[i].lo < all[j].lo })
	var out []span
	for _, s := range all {
		if n := len(out); n > 0 && s.lo <= out[n-1].hi+1 {
			if s.hi > out[n-1].hi {
				out[n-1].hi = s.hi
			}
			continue
		}
		out = append(out, s)
	}
	return out
}

func subtractRanges(a, b []span) []span {
	out := mergeRanges(nil, a)
	for _, x := range b {
		var next []span
		for _, s := range out {
			if x.hi < s.lo || x.lo > s.hi {
				next = append(next, s)
				continue
			}
			if x.lo > s.lo {
				next = append(next, span{s.lo, x.lo - 1})
			}
			if x.hi < s.hi {
				next = append(next, span{x.hi + 1, s.hi})
			}
		}
		out = next
	}
	return out
}

func toSet(items []string) *mesos.Value_Set { return &mesos.Value_Set{Item: items} }

func union(a, b []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range append(append([]string(nil), a...), b...) {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	sort.Strings(out)
	return out
}

func difference(a, b []string) []string {
	drop := map[string]bool{}
	for _, x := range b {
		drop[x] = true
	}
	var out []string
	for _, x := range a {
		if !drop[x] {
			out = append(out, x)
		}
	}
	return out
}

// StateJSON renders the resources as Mesos' /state endpoints do: scalars as
// numbers (cpus, mem, disk and gpus always present), ranges as "[a-b, c-d]"
// and sets as "{x, y}".
func (rs Resources) StateJSON() map[string]any {
	out := map[string]any{"cpus": 0.0, "mem": 0.0, "disk": 0.0, "gpus": 0.0}
	for _, r := range rs {
		switch r.GetType() {
		case mesos.Value_SCALAR:
			v, _ := out[r.GetName()].(float64)
			out[r.GetName()] = round(v + r.GetScalar().GetValue())
		case mesos.Value_RANGES:
			var rgs []string
			for _, rg := range r.GetRanges().GetRange() {
				rgs = append(rgs, fmt.Sprintf("%d-%d", rg.GetBegin(), rg.GetEnd()))
			}
			out[r.GetName()] = "[" + strings.Join(rgs, ", ") + "]"
		case mesos.Value_SET:
			out[r.GetName()] = "{" + strings.Join(r.GetSet().GetItem(), ", ") + "}"
		}
	}
	return out
}
