package master

import (
	"github.com/corral/corral/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

// Mesos has two ways to write a reservation on a Resource. Before
// reservation refinement it was `role` (with `reservation` for dynamic
// ones); since, it is the `reservations` stack, and `role` is unset. The
// master keeps the new form, as Mesos does, and converts at the edges like
// Mesos' convertResourceFormat (src/common/resources_utils.cpp): frameworks
// without the RESERVATION_REFINEMENT capability get and may send the old
// form, and /slaves writes both at once for operators' tools.

// upgradeResources rewrites list in place into the reservations form: what
// frameworks and agents send is compared with what the master holds, and
// the two must agree on the form.
func upgradeResources(list []*mesos.Resource) {
	for _, r := range list {
		upgradeResource(r)
	}
}

func upgradeResource(r *mesos.Resource) {
	if len(r.GetReservations()) > 0 {
		r.Role, r.Reservation = nil, nil
		return
	}
	if r.Role == nil || r.GetRole() == "*" {
		r.Role, r.Reservation = nil, nil
		return
	}
	rv := &mesos.Resource_ReservationInfo{Type: mesos.Resource_ReservationInfo_STATIC.Enum()}
	if old := r.GetReservation(); old != nil {
		rv.Type = mesos.Resource_ReservationInfo_DYNAMIC.Enum()
		rv.Principal, rv.Labels = old.Principal, old.Labels
	}
	rv.Role = r.Role
	r.Reservations = []*mesos.Resource_ReservationInfo{rv}
	r.Role, r.Reservation = nil, nil
}

// preRefinement returns a copy of list in the old form, for a framework
// without RESERVATION_REFINEMENT: `role` is "*" for unreserved resources
// and the reservation's role otherwise. Resources with refined (stacked)
// reservations have no old form; the allocator never offers them to such
// frameworks.
func preRefinement(list []*mesos.Resource) []*mesos.Resource {
	out := make([]*mesos.Resource, 0, len(list))
	for _, r := range list {
		c := proto.Clone(r).(*mesos.Resource)
		toEndpointForm(c)
		c.Reservations = nil
		out = append(out, c)
	}
	return out
}

// endpointForm returns a copy of list as Mesos' endpoints write resources
// (its ENDPOINT format): `role` (and `reservation`) as in the old form, with
// `reservations` kept.
func endpointForm(list []*mesos.Resource) []*mesos.Resource {
	out := make([]*mesos.Resource, 0, len(list))
	for _, r := range list {
		c := proto.Clone(r).(*mesos.Resource)
		toEndpointForm(c)
		out = append(out, c)
	}
	return out
}

func toEndpointForm(r *mesos.Resource) {
	rvs := r.GetReservations()
	if len(rvs) == 0 {
		r.Role = proto.String("*")
		r.Reservation = nil
		return
	}
	if len(rvs) > 1 {
		// Refined reservations have no `role` form; Mesos leaves them as
		// they are.
		return
	}
	last := rvs[0]
	r.Role = proto.String(last.GetRole())
	r.Reservation = nil
	if last.GetType() == mesos.Resource_ReservationInfo_DYNAMIC {
		r.Reservation = &mesos.Resource_ReservationInfo{Principal: last.Principal, Labels: last.Labels}
	}
}

// refined reports whether r carries a refined reservation (more than one
// level), which only RESERVATION_REFINEMENT frameworks may be offered.
func refined(r *mesos.Resource) bool { return len(r.GetReservations()) > 1 }
