package cgroups

import (
	"fmt"

	"github.com/corral/corral/container"
	"github.com/corral/corral/container/cgroupfs"
)

// NewPids builds cgroups/pids: pids.max from --cgroups_pids_max (a
// positive number; empty or "max" for no limit, the default as in Mesos),
// overridden per task by the corral.pids.max label. The limit counts
// threads as well as processes.
func NewPids(o container.Options) (container.Isolator, error) {
	def, err := parsePidsMax(container.SettingsOf[*Settings](o).PidsMax)
	if err != nil {
		return nil, fmt.Errorf("cgroups/pids: --cgroups_pids_max: %w", err)
	}
	b, err := newBase("cgroups/pids", o, []string{"pids"}, []string{"pids"})
	if err != nil {
		return nil, err
	}
	return newIsolator(b, &pidsPolicy{def: def}), nil
}

type pidsPolicy struct{ def string }

func (p *pidsPolicy) limit(r *container.Resources) (string, error) {
	if v, ok := r.Labels[PidsLabel]; ok {
		l, err := parsePidsMax(v)
		if err != nil {
			return "", fmt.Errorf("cgroups/pids: label %s: %w", PidsLabel, err)
		}
		return l, nil
	}
	return p.def, nil
}

func (p *pidsPolicy) check(r *container.Resources) error {
	_, err := p.limit(r)
	return err
}

func (p *pidsPolicy) apply(d dirs, r *container.Resources, initial bool) error {
	l, err := p.limit(r)
	if err != nil {
		return err
	}
	if initial && l == "max" && d.unified == "" {
		return nil // a new v1 cgroup starts at max
	}
	return cgroupfs.Write(d.of("pids"), "pids.max", l)
}

func (p *pidsPolicy) usage(d dirs, _ *container.Resources, u *container.Usage) error {
	dir := d.of("pids")
	procs, err := cgroupfs.CountLines(dir, "cgroup.procs")
	if err != nil {
		return fmt.Errorf("cgroups/pids: %w", err)
	}
	// pids.current counts tasks, i.e. threads.
	threads, err := cgroupfs.ReadUint(dir, "pids.current")
	if err != nil {
		return fmt.Errorf("cgroups/pids: %w", err)
	}
	u.Processes, u.Threads = procs, uint32(threads)
	u.Set["processes"], u.Set["threads"] = true, true
	return nil
}
