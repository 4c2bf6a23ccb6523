package master

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

func TestRefuseDuration(t *testing.T) {
	year := 365 * 24 * time.Hour
	for _, c := range []struct {
		name     string
		f        *mesos.Filters
		interval time.Duration
		want     time.Duration
	}{
		{"unset is Mesos' default 5s", nil, time.Second, 5 * time.Second},
		{"unset refuse_seconds", &mesos.Filters{}, time.Second, 5 * time.Second},
		{"zero is no filter", &mesos.Filters{RefuseSeconds: proto.Float64(0)}, time.Second, 0},
		{"negative is the default", &mesos.Filters{RefuseSeconds: proto.Float64(-3)}, time.Second, 5 * time.Second},
		{"NaN is the default", &mesos.Filters{RefuseSeconds: proto.Float64(math.NaN())}, time.Second, 5 * time.Second},
		{"above a year is a year", &mesos.Filters{RefuseSeconds: proto.Float64(1e300)}, time.Second, year},
		{"infinity is a year", &mesos.Filters{RefuseSeconds: proto.Float64(math.Inf(1))}, time.Second, year},
		{"at least one allocation interval", &mesos.Filters{RefuseSeconds: proto.Float64(0.1)}, time.Second, time.Second},
		{"as given", &mesos.Filters{RefuseSeconds: proto.Float64(2.5)}, time.Second, 2500 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := refuseDuration(c.f, c.interval); got != c.want {
				t.Errorf("refuseDuration = %v, want %v", got, c.want)
			}
		})
	}
}

func res(t *testing.T, s string) resources.Resources {
	t.Helper()
	r, err := resources.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// An offer is filtered only when it is within what was refused, for the
// refusing role on that agent, until the refusal expires.
func TestOfferFilters(t *testing.T) {
	now := time.Now()
	f := offerFilters{}
	f.add("*", "a1", res(t, "cpus:1;mem:512;ports:[31000-31004]"), now.Add(5*time.Second))
	for _, c := range []struct {
		name, role, agent, offer string
		at                       time.Duration
		want                     bool
	}{
		{"the refused set", "*", "a1", "cpus:1;mem:512;ports:[31000-31004]", 0, true},
		{"a part of it", "*", "a1", "cpus:0.5;ports:[31001-31002]", time.Second, true},
		{"more cpus (a task ended)", "*", "a1", "cpus:2;mem:512", time.Second, false},
		{"a port not refused", "*", "a1", "cpus:1;ports:[31005-31005]", time.Second, false},
		{"another agent", "*", "a2", "cpus:1", 0, false},
		{"another role", "web", "a1", "cpus:1", 0, false},
		{"after expiry", "*", "a1", "cpus:1", 5 * time.Second, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := f.filtered(c.role, c.agent, res(t, c.offer), now.Add(c.at)); got != c.want {
				t.Errorf("filtered(%s) = %v, want %v", c.offer, got, c.want)
			}
		})
	}
	if len(f) != 0 {
		t.Errorf("expired refusals kept: %v", f)
	}
}

func TestOfferFiltersMergeAndBound(t *testing.T) {
	now := time.Now()
	f := offerFilters{}
	f.add("*", "a1", res(t, "cpus:1"), now.Add(time.Second))
	// A larger, longer refusal covers the first.
	f.add("*", "a1", res(t, "cpus:2"), now.Add(2*time.Second))
	// A smaller, shorter one adds nothing.
	f.add("*", "a1", res(t, "cpus:0.5"), now.Add(time.Second))
	if n := len(f["*"]["a1"]); n != 1 {
		t.Fatalf("%d refusals after covering ones, want 1", n)
	}
	for i := range 3 * maxFiltersPerAgent {
		// Disjoint port sets: none covers another.
		p := 1000 + i
		f.add("*", "a1", res(t, fmt.Sprintf("ports:[%d-%d]", p, p)), now.Add(time.Duration(i+10)*time.Second))
	}
	if n := len(f["*"]["a1"]); n != maxFiltersPerAgent {
		t.Errorf("%d refusals kept, want the bound %d", n, maxFiltersPerAgent)
	}
	f.clearRoles([]string{"*"})
	if len(f) != 0 {
		t.Errorf("REVIVE left %v", f)
	}
}
