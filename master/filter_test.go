package master_test

import (
	"testing"
	"time"

	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/api/v1/scheduler"
	"github.com/corral/corral/master"
	"google.golang.org/protobuf/proto"
)

func isOffers(ev *scheduler.Event) bool { return ev.GetType() == scheduler.Event_OFFERS }

// TestRefusalFiltersOnlyTheRefusedResources: an ACCEPT with Mesos' default
// filter (refuse_seconds 5) refuses only the unused remainder of the offer,
// as Mesos' allocator does (RefusedOfferFilter: an offer is filtered when it
// is within what was refused). While the task runs the remainder is not
// offered again; once the task ends, the free set (remainder plus the
// task's resources) is more than was refused, and it is offered at the next
// allocation, long before the 5 s are over. A DECLINE keeps the declined
// set away until its filter expires.
func TestRefusalFiltersOnlyTheRefusedResources(t *testing.T) {
	tm, _, prefix := setup(t)
	s := subscribe(t, tm, codec.JSON)
	o := s.offer(offerWait)
	id := prefix + "short"
	call := acceptCall([]*mesos.OfferID{o.GetId()}, task(prefix, "short", o, "cpus:1;mem:64", "sleep 1"))
	call.Accept.Filters = nil // Mesos' default: refuse_seconds 5
	accepted := time.Now()
	s.mustCall(call)

	// The remainder stays refused while the task runs; once it ends, the
	// free set is the whole agent, which no refusal covers. The task
	// sleeps 1s: its resources must be offered again well before the 5s
	// are over.
	var got *mesos.Offer
	deadline := accepted.Add(4 * time.Second)
	for got == nil {
		ev := s.find(time.Until(deadline), isOffers)
		if ev == nil {
			t.Fatal("no offer of the freed resources within 4s of an ACCEPT with the default 5s filter (the task sleeps 1s): resources freed after a refusal must be re-offered at the next allocation")
		}
		off := ev.GetOffers().GetOffers()[0]
		if c := scalar(off.GetResources(), "cpus"); c < 2 {
			t.Fatalf("the refused remainder (cpus %v) was offered again %v after ACCEPT, within its 5s filter", c, time.Since(accepted))
		}
		got = off
	}
	t.Logf("freed resources re-offered %v after ACCEPT", time.Since(accepted).Round(time.Millisecond))
	if m := scalar(got.GetResources(), "mem"); m != 1024 {
		t.Errorf("re-offer mem %v, want the whole agent's 1024 (remainder and freed task resources)", m)
	}
	if st := s.update(id, 5*time.Second, mesos.TaskState_TASK_FINISHED, mesos.TaskState_TASK_FAILED, mesos.TaskState_TASK_LOST); st.GetState() != mesos.TaskState_TASK_FINISHED {
		t.Fatalf("task %v (%s), want TASK_FINISHED", st.GetState(), st.GetMessage())
	}

	// A declined offer stays filtered until refuse_seconds pass.
	s.mustCall(&scheduler.Call{Type: scheduler.Call_DECLINE.Enum(), Decline: &scheduler.Call_Decline{
		OfferIds: []*mesos.OfferID{got.GetId()}, Filters: &mesos.Filters{RefuseSeconds: proto.Float64(1.5)},
	}})
	declined := time.Now()
	s.noEvent(scheduler.Event_OFFERS, 1200*time.Millisecond)
	if s.find(3*time.Second, isOffers) == nil {
		t.Fatal("no offer after the 1.5s DECLINE filter expired")
	}
	if d := time.Since(declined); d < 1500*time.Millisecond {
		t.Errorf("re-offered %v after DECLINE, before its 1.5s filter expired", d)
	}
}

// TestFreedResourcesReofferedWithinAllocationInterval: with Mesos' default
// allocation interval (1s), resources a finished task gives back are
// offered within one interval of the task's end, although the ACCEPT that
// launched it left the rest of the offer refused for the default 5s.
func TestFreedResourcesReofferedWithinAllocationInterval(t *testing.T) {
	tm := startMasterWith(t, func(c *master.Config) { c.AllocationInterval = time.Second })
	fa := connectFakeAgent(t, tm, "", nil, nil)
	s := subscribe(t, tm, codec.JSON)
	o := s.offer(offerWait)
	ti := task("", "t", o, "cpus:1;mem:64", "true")
	call := acceptCall([]*mesos.OfferID{o.GetId()}, ti)
	call.Accept.Filters = &mesos.Filters{} // refuse_seconds unset: 5s
	s.mustCall(call)
	fa.Next(cluster.Event_RUN_TASK)
	s.noEvent(scheduler.Event_OFFERS, 1500*time.Millisecond) // the refused remainder
	fa.Update(s.id, ti, mesos.TaskState_TASK_FINISHED)
	s.update("t", 5*time.Second, mesos.TaskState_TASK_FINISHED)
	ended := time.Now()
	ev := s.find(time.Second, isOffers)
	if ev == nil {
		t.Fatal("the finished task's resources were not offered within one allocation interval (1s) of its end")
	}
	if c := scalar(ev.GetOffers().GetOffers()[0].GetResources(), "cpus"); c != 2 {
		t.Errorf("re-offer cpus %v, want 2", c)
	}
	t.Logf("re-offered %v after the task's end", time.Since(ended).Round(time.Millisecond))
}

// TestRefusalIsPerRole: a multi-role framework that refuses an offer made
// for one role still gets the agent's resources offered for its other role,
// as Mesos keeps refusals per role; REVIVE of that role ends its refusal.
func TestRefusalIsPerRole(t *testing.T) {
	tm := startMaster(t)
	connectFakeAgent(t, tm, "", nil, nil)
	s := subscribe(t, tm, codec.JSON, func(fi *mesos.FrameworkInfo) {
		fi.Roles = []string{"a", "b"}
		fi.Capabilities = append(fi.Capabilities, &mesos.FrameworkInfo_Capability{Type: mesos.FrameworkInfo_Capability_MULTI_ROLE.Enum()})
	})
	o := s.offer(offerWait)
	if r := o.GetAllocationInfo().GetRole(); r != "a" {
		t.Fatalf("first offer for role %q, want a", r)
	}
	s.decline(o, 60)
	o2 := s.offer(2 * time.Second)
	if r := o2.GetAllocationInfo().GetRole(); r != "b" {
		t.Fatalf("offer after refusing role a is for role %q, want b", r)
	}
	s.decline(o2, 60)
	s.noEvent(scheduler.Event_OFFERS, 500*time.Millisecond)
	s.mustCall(&scheduler.Call{Type: scheduler.Call_REVIVE.Enum(), Revive: &scheduler.Call_Revive{Roles: []string{"b"}}})
	if o3 := s.offer(2 * time.Second); o3.GetAllocationInfo().GetRole() != "b" {
		t.Errorf("offer after REVIVE of b is for role %q, want b (a is still refused)", o3.GetAllocationInfo().GetRole())
	}
}
