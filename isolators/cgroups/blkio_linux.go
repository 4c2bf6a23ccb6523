package cgroups

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/corral/corral/container"
	"github.com/corral/corral/container/cgroupfs"
)

// NewBlkio builds cgroups/blkio: a proportional I/O weight, blkio.weight
// (CFQ) or blkio.bfq.weight (BFQ) on v1, io.weight (io.cost) or
// io.bfq.weight on v2. Where the host has no proportional I/O scheduler the
// isolator says so at construction and sets nothing.
func NewBlkio(o container.Options) (container.Isolator, error) {
	def, err := container.SettingsOf[*Settings](o).blkioWeight()
	if err != nil {
		return nil, fmt.Errorf("cgroups/blkio: %w", err)
	}
	b, err := newBase("cgroups/blkio", o, []string{"blkio"}, []string{"io"})
	if err != nil {
		return nil, err
	}
	p := &blkioPolicy{def: def, log: b}
	if !b.unified {
		m := b.mounts["blkio"]
		switch {
		case exists(filepath.Join(m, "blkio.weight")):
			p.v1File = "blkio.weight"
		case exists(filepath.Join(m, "blkio.bfq.io_service_bytes")):
			// BFQ's weight file is not on the root cgroup, its statistics are.
			p.v1File = "blkio.bfq.weight"
		default:
			b.log.Warn("no proportional-weight I/O scheduler (CFQ or BFQ) in the blkio hierarchy: I/O weights are not set")
		}
	}
	return newIsolator(b, p), nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// blkioToIOWeight converts a v1 weight (10..1000) to io.weight (1..10000)
// as runc does.
func blkioToIOWeight(w uint64) uint64 { return 1 + (w-10)*9999/990 }

type blkioPolicy struct {
	def    uint64
	v1File string // empty: nothing to set
	log    *base

	warnOnce sync.Once
}

func (p *blkioPolicy) weight(r *container.Resources) (uint64, error) {
	if s, ok := r.Labels[BlkioWeightLabel]; ok {
		w, err := parseBlkioWeight(s)
		if err != nil {
			return 0, fmt.Errorf("cgroups/blkio: label %s: %w", BlkioWeightLabel, err)
		}
		return w, nil
	}
	return p.def, nil
}

func (p *blkioPolicy) check(r *container.Resources) error {
	_, err := p.weight(r)
	return err
}

func (p *blkioPolicy) apply(d dirs, r *container.Resources, _ bool) error {
	w, err := p.weight(r)
	if err != nil {
		return err
	}
	if d.unified == "" {
		if p.v1File == "" {
			return nil
		}
		if p.v1File == "blkio.bfq.weight" {
			w = min(w, 1000)
		}
		return cgroupfs.Write(d.of("blkio"), p.v1File, strconv.FormatUint(w, 10))
	}
	// v2: io.weight when the io.cost controller is built in, else BFQ's.
	ok, err := cgroupfs.WriteOptional(d.unified, "io.weight", "default "+strconv.FormatUint(blkioToIOWeight(w), 10))
	if ok || err != nil {
		return err
	}
	ok, err = cgroupfs.WriteOptional(d.unified, "io.bfq.weight", strconv.FormatUint(w, 10))
	if ok || err != nil {
		return err
	}
	p.warnOnce.Do(func() {
		p.log.log.Warn("no io.weight or io.bfq.weight in the container cgroup: I/O weights are not set")
	})
	return nil
}
