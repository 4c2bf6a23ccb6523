package master

import (
	"math"
	"time"

	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/v1/mesos"
)

// maxRefuseSeconds is Mesos' cap on refuse_seconds (365 days); it also keeps
// the time.Duration in range.
const maxRefuseSeconds = 365 * 24 * 3600

// maxFiltersPerAgent bounds the refusals a framework keeps for one role on
// one agent. Refusals that another one covers are merged away, so real
// frameworks stay far below it; past it the one that expires first goes,
// which errs toward offering.
const maxFiltersPerAgent = 32

// refusal is one refused-offer filter, Mesos' RefusedOfferFilter: the
// resources a framework declined (or left unused in an ACCEPT) and when the
// refusal ends.
type refusal struct {
	resources resources.Resources
	expires   time.Time
}

// offerFilters are a framework's refusals by role, then agent, as Mesos'
// allocator keeps them. An offer is filtered only when everything it would
// hold is within one refusal: resources freed later (a task ended) make the
// free set larger than what was refused, and it is offered again at once.
type offerFilters map[string]map[string][]refusal

// refuseDuration is how long Filters keep resources away, as Mesos'
// allocator reads them: unset means the default 5 s, a negative or invalid
// value also means the default, zero means no filter, and anything above a
// year is a year. The filter outlives at least one allocation interval so
// that it cannot expire before the next allocation looks at the agent
// (MESOS-4302).
func refuseDuration(f *mesos.Filters, allocationInterval time.Duration) time.Duration {
	secs := f.GetRefuseSeconds()
	switch {
	case math.IsNaN(secs) || secs < 0:
		secs = mesos.Default_Filters_RefuseSeconds
	case secs == 0:
		return 0
	case secs > maxRefuseSeconds:
		secs = maxRefuseSeconds
	}
	d := time.Duration(secs * float64(time.Second))
	return max(d, allocationInterval)
}

// add keeps r of agent away from role until expires.
func (f offerFilters) add(role, agent string, r resources.Resources, expires time.Time) {
	if r.Empty() {
		return
	}
	byAgent := f[role]
	if byAgent == nil {
		byAgent = map[string][]refusal{}
		f[role] = byAgent
	}
	var kept []refusal
	for _, old := range byAgent[agent] {
		if old.resources.Contains(r) && !old.expires.Before(expires) {
			// Already refused for at least as long.
			return
		}
		if r.Contains(old.resources) && !expires.Before(old.expires) {
			// The new refusal covers this one.
			continue
		}
		kept = append(kept, old)
	}
	kept = append(kept, refusal{resources: r.Clone(), expires: expires})
	if len(kept) > maxFiltersPerAgent {
		first := 0
		for i, k := range kept {
			if k.expires.Before(kept[first].expires) {
				first = i
			}
		}
		kept = append(kept[:first], kept[first+1:]...)
	}
	byAgent[agent] = kept
}

// filtered reports whether offering r of agent to role is refused at now.
// Expired refusals are dropped on the way.
func (f offerFilters) filtered(role, agent string, r resources.Resources, now time.Time) bool {
	list := f[role][agent]
	if len(list) == 0 {
		return false
	}
	kept := list[:0]
	hit := false
	for _, ref := range list {
		if !now.Before(ref.expires) {
			continue
		}
		kept = append(kept, ref)
		if ref.resources.Contains(r) {
			hit = true
		}
	}
	switch {
	case len(kept) == 0 && len(f[role]) == 1:
		delete(f, role)
	case len(kept) == 0:
		delete(f[role], agent)
	default:
		f[role][agent] = kept
	}
	return hit
}

// clearRoles drops every refusal of these roles (REVIVE).
func (f offerFilters) clearRoles(roles []string) {
	for _, r := range roles {
		delete(f, r)
	}
}

// clearAgent drops the refusals of an agent that left the cluster.
func (f offerFilters) clearAgent(agent string) {
	for role, byAgent := range f {
		delete(byAgent, agent)
		if len(byAgent) == 0 {
			delete(f, role)
		}
	}
}
