package master

import (
	"math"
	"sort"

	"github.com/corral/corral/api/resources"
)

// The allocator's books, kept as things change rather than summed again
// at every allocation: what each agent has in use and on offer (and so
// free), what each framework holds (its dominant share), the cluster's
// total and its agents in order. An allocation pass after one ACCEPT then
// costs work for the agents that changed, not for the cluster's every
// task. Every change of agent.used, agent.offered or a framework's
// holdings goes through these methods, all called with m.mu held.

// holdings are the amounts of the resources a dominant share is taken
// over (shareNames). Only scalars: a framework's ranges from different
// agents (ports) would merge and could not be taken apart again.
type holdings [4]float64

var shareNames = [len(holdings{})]string{"cpus", "mem", "disk", "gpus"}

func holdingsOf(r resources.Resources) holdings {
	var h holdings
	for i, name := range shareNames {
		h[i] = r.Scalar(name)
	}
	return h
}

// add adds (sign 1) or takes away (-1) r, rounded as resource arithmetic
// rounds, so that no error piles up over many changes.
func (h *holdings) add(r resources.Resources, sign float64) {
	for i, name := range shareNames {
		h[i] = math.Round((h[i]+sign*r.Scalar(name))*1000) / 1000
	}
}

// charge counts r, used on a by a task or executor of fw.
func (m *Master) charge(fw *framework, a *agent, r resources.Resources) {
	a.used = a.used.Plus(r)
	a.freeStale = true
	fw.allocated.add(r, 1)
}

// refund gives back what charge counted.
func (m *Master) refund(fw *framework, a *agent, r resources.Resources) {
	a.used = a.used.Minus(r)
	a.freeStale = true
	fw.allocated.add(r, -1)
}

// offered counts an offer made; withdrawn, one that is gone.
func (m *Master) offered(o *offer) {
	o.agent.offered = o.agent.offered.Plus(o.resources)
	o.agent.freeStale = true
	o.fw.allocated.add(o.resources, 1)
}

func (m *Master) withdrawn(o *offer) {
	o.agent.offered = o.agent.offered.Minus(o.resources)
	o.agent.freeStale = true
	o.fw.allocated.add(o.resources, -1)
}

// free is what the agent has neither in use nor on offer.
func (a *agent) freeResources() resources.Resources {
	if a.freeStale || a.free == nil {
		a.free = a.total.Minus(a.used).Minus(a.offered)
		a.freeStale = false
	}
	return a.free
}

// agentsChanged says an agent came, went, (dis)connected or changed its
// total: the cluster's total and order are taken again at the next
// allocation.
func (m *Master) agentsChanged() { m.clusterStale = true }

// cluster is the connected agents in ID order and their total.
func (m *Master) cluster() ([]*agent, holdings) {
	if m.clusterStale || m.connected == nil {
		m.connected = m.connected[:0]
		for _, a := range m.agents {
			if a.connected {
				m.connected = append(m.connected, a)
			}
		}
		sort.Slice(m.connected, func(i, j int) bool { return m.connected[i].id < m.connected[j].id })
		m.total = holdings{}
		for _, a := range m.connected {
			m.total.add(a.total, 1)
		}
		m.clusterStale = false
	}
	return m.connected, m.total
}
