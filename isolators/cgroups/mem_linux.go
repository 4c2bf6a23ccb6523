package cgroups

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/corral/corral/container"
	"github.com/corral/corral/container/cgroupfs"
)

// minMemory is the smallest hard limit set, as Mesos' MIN_MEMORY: a smaller
// mem resource is raised to it.
const minMemory = 32 << 20

// ReasonMemory is the TaskStatus reason of a container OOM-killed at its
// limit.
const ReasonMemory = "REASON_CONTAINER_LIMITATION_MEMORY"

// NewMem builds cgroups/mem: a hard memory limit from mem; swap off by
// default (--cgroups_limit_swap: v1 memory.memsw.limit_in_bytes = the
// limit, v2 memory.swap.max = 0; Mesos' default is the opposite, Corral
// turns swap off unless told otherwise); an optional soft limit
// (--cgroups_memory_soft_limit: v1 memory.soft_limit_in_bytes, v2
// memory.high, where the kernel throttles and reclaims before the hard
// limit's OOM kill); OOM detection; and on v2 memory.oom.group so a
// container dies whole.
func NewMem(o container.Options) (container.Isolator, error) {
	return newMem(o)
}

func newMem(o container.Options) (*Mem, error) {
	s := container.SettingsOf[*Settings](o)
	soft, limitSwap := s.MemorySoftLimit, s.LimitSwap
	b, err := newBase("cgroups/mem", o, []string{"memory"}, []string{"memory"})
	if err != nil {
		return nil, err
	}
	p := &memPolicy{soft: soft, limitSwap: limitSwap}
	if !b.unified && limitSwap {
		// Without swap accounting (swapaccount=0) there is no memsw file and
		// a container may swap; say so once.
		_, err := os.Stat(filepath.Join(b.mounts["memory"], "memory.memsw.limit_in_bytes"))
		p.memsw = err == nil
		if !p.memsw {
			b.log.Warn("no memory.memsw.limit_in_bytes (swap accounting off): containers' swap is not limited")
		}
	}
	m := &Mem{isolator: newIsolator(b, p), pol: p, watches: map[string]*oomWatch{}, wds: map[int]*oomWatch{}}
	return m, nil
}

type memPolicy struct {
	soft      bool
	limitSwap bool
	// memsw: v1 memory.memsw.limit_in_bytes is written (swap limited and
	// the kernel accounts swap).
	memsw bool
}

func memLimit(r *container.Resources) uint64 {
	if r.MemBytes == 0 {
		return 0
	}
	return max(r.MemBytes, minMemory)
}

func (p *memPolicy) check(*container.Resources) error { return nil }

func (p *memPolicy) apply(d dirs, r *container.Resources, initial bool) error {
	lim := memLimit(r)
	if d.unified != "" {
		dir := d.unified
		if initial {
			// The container dies whole on OOM: a task half killed (a
			// worker gone, its supervisor left) is worse than a clean end.
			if _, err := cgroupfs.WriteOptional(dir, "memory.oom.group", "1"); err != nil {
				return err
			}
			if p.limitSwap {
				// memory.swap.max is absent without swap accounting
				// (CONFIG_MEMCG_SWAP off): nothing to limit then.
				if _, err := cgroupfs.WriteOptional(dir, "memory.swap.max", "0"); err != nil {
					return err
				}
			}
		}
		if lim == 0 {
			return nil
		}
		v := strconv.FormatUint(lim, 10)
		if p.soft {
			if err := cgroupfs.Write(dir, "memory.high", v); err != nil {
				return err
			}
		}
		return cgroupfs.Write(dir, "memory.max", v)
	}
	dir := d.of("memory")
	if lim == 0 {
		return nil
	}
	v := strconv.FormatUint(lim, 10)
	// v1 wants limit_in_bytes <= memsw.limit_in_bytes at every step: when
	// growing, raise memsw first; when shrinking, lower the limit first.
	memswFirst := false
	if !initial && p.memsw {
		cur, err := cgroupfs.ReadUint(dir, "memory.limit_in_bytes")
		if err != nil {
			return err
		}
		memswFirst = lim > cur
	}
	steps := []string{"memory.limit_in_bytes"}
	if p.memsw {
		if memswFirst {
			steps = []string{"memory.memsw.limit_in_bytes", "memory.limit_in_bytes"}
		} else {
			steps = append(steps, "memory.memsw.limit_in_bytes")
		}
	}
	for _, f := range steps {
		if err := cgroupfs.Write(dir, f, v); err != nil {
			if errors.Is(err, unix.EBUSY) {
				return fmt.Errorf("cgroups/mem: cannot set the limit to %s below the container's usage: %w", bytesString(lim), err)
			}
			return err
		}
	}
	if p.soft {
		return cgroupfs.Write(dir, "memory.soft_limit_in_bytes", v)
	}
	return nil
}

func (p *memPolicy) usage(d dirs, _ *container.Resources, u *container.Usage) error {
	if d.unified != "" {
		dir := d.unified
		cur, err := cgroupfs.ReadUint(dir, "memory.current")
		if err != nil {
			return fmt.Errorf("cgroups/mem: %w", err)
		}
		st, err := cgroupfs.ReadKV(dir, "memory.stat")
		if err != nil {
			return fmt.Errorf("cgroups/mem: %w", err)
		}
		u.MemTotalBytes, u.MemRSSBytes, u.MemCacheBytes = cur, st["anon"], st["file"]
		u.Set["mem_total_bytes"], u.Set["mem_rss_bytes"], u.Set["mem_cache_bytes"] = true, true, true
		if sw, err := cgroupfs.ReadUint(dir, "memory.swap.current"); err == nil {
			u.MemSwapBytes = sw
			u.Set["mem_swap_bytes"] = true
		}
		setLimit(u, dir, "memory.max", &u.MemLimitBytes, "mem_limit_bytes")
		setLimit(u, dir, "memory.high", &u.MemSoftLimitBytes, "mem_soft_limit_bytes")
		// memory.pressure is absent on kernels without PSI (or psi=0).
		if b, err := os.ReadFile(filepath.Join(dir, "memory.pressure")); err == nil {
			if some, full, err := parsePressure(string(b)); err == nil {
				u.MemPressureSome, u.MemPressureFull = some, full
				u.Set["mem_pressure"] = true
			}
		}
		return nil
	}
	dir := d.of("memory")
	cur, err := cgroupfs.ReadUint(dir, "memory.usage_in_bytes")
	if err != nil {
		return fmt.Errorf("cgroups/mem: %w", err)
	}
	st, err := cgroupfs.ReadKV(dir, "memory.stat")
	if err != nil {
		return fmt.Errorf("cgroups/mem: %w", err)
	}
	// The total_* entries include nested cgroups, as Mesos reads them.
	u.MemTotalBytes, u.MemRSSBytes, u.MemCacheBytes = cur, st["total_rss"], st["total_cache"]
	u.Set["mem_total_bytes"], u.Set["mem_rss_bytes"], u.Set["mem_cache_bytes"] = true, true, true
	if sw, ok := st["total_swap"]; ok {
		u.MemSwapBytes = sw
		u.Set["mem_swap_bytes"] = true
	}
	setLimit(u, dir, "memory.limit_in_bytes", &u.MemLimitBytes, "mem_limit_bytes")
	setLimit(u, dir, "memory.soft_limit_in_bytes", &u.MemSoftLimitBytes, "mem_soft_limit_bytes")
	return nil
}

// setLimit fills a limit field unless the file says "no limit".
func setLimit(u *container.Usage, dir, file string, field *uint64, name string) {
	if v, err := cgroupfs.ReadUint(dir, file); err == nil && v != cgroupfs.Unlimited {
		*field = v
		u.Set[name] = true
	}
}

// Mem is the cgroups/mem isolator. Besides the Isolator interfaces it
// reports OOM kills (container.Watcher), can be asked for a limitation
// it has not delivered yet (Finalize), and reads memory pressure (Pressure).
type Mem struct {
	*isolator
	pol *memPolicy

	wmu     sync.Mutex
	watches map[string]*oomWatch
	// v2: one inotify instance watches every container's memory.events;
	// wds maps its watch descriptors to the containers.
	inoFD int
	ino   *os.File
	wds   map[int]*oomWatch
}

type oomWatch struct {
	id     string
	dir    string
	mem    uint64 // the requested limit, for the message
	report func(container.Limitation)
	fired  bool
	efd    *os.File // v1: the OOM eventfd
	wd     int      // v2: the inotify watch descriptor, -1 when none
}

// Watch implements container.Watcher. v1: an eventfd registered for
// memory.oom_control through cgroup.event_control; v2: inotify on
// memory.events. Both are read through Go's poller: no thread and no
// polling loop per container. A container that was OOM-killed before the
// watch began (while the agent was down) is reported at once.
func (m *Mem) Watch(id string, report func(container.Limitation)) error {
	st, err := m.get(id)
	if err != nil {
		return err
	}
	w := &oomWatch{id: id, dir: st.d.of("memory"), mem: memLimit(&st.res), report: report, wd: -1}
	m.wmu.Lock()
	old := m.watches[id]
	m.wmu.Unlock()
	if old != nil {
		m.unwatch(old)
	}
	if m.unified {
		err = m.watchV2(w)
	} else {
		err = m.watchV1(w)
	}
	if err != nil {
		return fmt.Errorf("cgroups/mem: watching for OOM in %s: %w", w.dir, err)
	}
	m.check(w)
	return nil
}

func (m *Mem) watchV1(w *oomWatch) error {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	ctl, err := os.Open(filepath.Join(w.dir, "memory.oom_control"))
	if err != nil {
		unix.Close(efd)
		return err
	}
	// The registration holds its own reference to oom_control.
	err = cgroupfs.Write(w.dir, "cgroup.event_control", fmt.Sprintf("%d %d", efd, ctl.Fd()))
	ctl.Close()
	if err != nil {
		unix.Close(efd)
		return err
	}
	f := os.NewFile(uintptr(efd), "oom-eventfd:"+w.id)
	w.efd = f
	m.wmu.Lock()
	m.watches[w.id] = w
	m.wmu.Unlock()
	go func() {
		buf := make([]byte, 8)
		for {
			// The kernel signals the eventfd when the cgroup goes OOM and
			// when it is removed. Closing f ends the loop.
			if _, err := f.Read(buf); err != nil {
				return
			}
			m.oomEvent(w)
		}
	}()
	return nil
}

func (m *Mem) watchV2(w *oomWatch) error {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	if m.ino == nil {
		fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
		if err != nil {
			return fmt.Errorf("inotify: %w", err)
		}
		m.inoFD, m.ino = fd, os.NewFile(uintptr(fd), "cgroups-mem-inotify")
		go m.readInotify(m.ino)
	}
	wd, err := unix.InotifyAddWatch(m.inoFD, filepath.Join(w.dir, "memory.events"), unix.IN_MODIFY)
	if err != nil {
		return fmt.Errorf("inotify on memory.events: %w", err)
	}
	w.wd = wd
	m.wds[wd] = w
	m.watches[w.id] = w
	return nil
}

func (m *Mem) readInotify(f *os.File) {
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := f.Read(buf)
		if err != nil {
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			off += unix.SizeofInotifyEvent + int(ev.Len)
			m.wmu.Lock()
			w := m.wds[int(ev.Wd)]
			if ev.Mask&unix.IN_IGNORED != 0 {
				delete(m.wds, int(ev.Wd))
				if w != nil {
					w.wd = -1
				}
				w = nil
			}
			m.wmu.Unlock()
			if w != nil {
				m.check(w)
			}
		}
	}
}

// check reports the container's OOM kill if there was one and it is not yet
// reported.
func (m *Mem) check(w *oomWatch) {
	n, err := m.oomKills(w.dir)
	if err != nil || n == 0 {
		return
	}
	m.fire(w)
}

// oomEvent handles a v1 OOM eventfd notification. The kernel sends it when
// the cgroup's OOM killer is about to run (memcg1_oom_prepare), before the
// kill is counted in oom_kill, and no second one follows the kill; so the
// event itself is the OOM, as in Mesos. The other cause of an event, the
// cgroup's removal, is told apart by the cgroup being gone.
func (m *Mem) oomEvent(w *oomWatch) {
	if _, err := os.Stat(filepath.Join(w.dir, "memory.oom_control")); err != nil {
		return
	}
	m.fire(w)
}

// fire reports the OOM once per watch. The message is read before the watch
// is marked fired: Finalize relies on a fired watch's message being complete,
// since the cgroup (and with it the peak usage) may go as soon as it returns.
func (m *Mem) fire(w *oomWatch) {
	msg := m.message(w)
	m.wmu.Lock()
	if w.fired || m.watches[w.id] != w {
		m.wmu.Unlock()
		return
	}
	w.fired = true
	m.wmu.Unlock()
	w.report(container.Limitation{Reason: ReasonMemory, Message: msg})
}

// oomKills reads how many processes the OOM killer killed in the container.
func (m *Mem) oomKills(dir string) (uint64, error) {
	if m.unified {
		ev, err := cgroupfs.ReadKV(dir, "memory.events")
		if err != nil {
			return 0, err
		}
		return ev["oom_kill"] + ev["oom_group_kill"], nil
	}
	oc, err := cgroupfs.ReadKV(dir, "memory.oom_control")
	if err != nil {
		return 0, err
	}
	if n, ok := oc["oom_kill"]; ok {
		return n, nil
	}
	// Kernels before 4.13 have no counter: only a cgroup under OOM right
	// now is known to have had one (the eventfd reports the others).
	return oc["under_oom"], nil
}

// message names the limit and the peak usage, as Mesos does.
func (m *Mem) message(w *oomWatch) string {
	limFile, peakFiles := "memory.limit_in_bytes", []string{"memory.max_usage_in_bytes"}
	if m.unified {
		limFile, peakFiles = "memory.max", []string{"memory.peak", "memory.current"}
	}
	lim, err := cgroupfs.ReadUint(w.dir, limFile)
	if err != nil || lim == cgroupfs.Unlimited {
		lim = w.mem
	}
	msg := "Memory limit exceeded: Requested: " + bytesString(lim)
	for _, f := range peakFiles {
		if peak, err := cgroupfs.ReadUint(w.dir, f); err == nil {
			msg += " Maximum Used: " + bytesString(peak)
			break
		}
	}
	return msg
}

// Finalize reports an OOM kill that the watch has not delivered yet. The
// containerizer should call it after the container's init exited and before
// the launcher removes the container's cgroup: on v2 the kernel's
// notification may still be in flight when the task's death is seen. On v1
// Cleanup does the same, since the memory cgroup is ours until then.
func (m *Mem) Finalize(_ context.Context, id string) {
	m.wmu.Lock()
	w := m.watches[id]
	m.wmu.Unlock()
	if w != nil {
		m.check(w)
	}
}

func (m *Mem) unwatch(w *oomWatch) {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	if m.watches[w.id] == w {
		delete(m.watches, w.id)
	}
	if w.efd != nil {
		w.efd.Close()
		w.efd = nil
	}
	if w.wd >= 0 {
		_, _ = unix.InotifyRmWatch(m.inoFD, uint32(w.wd))
		delete(m.wds, w.wd)
		w.wd = -1
	}
}

// Cleanup implements container.Isolator: a last look for an OOM kill
// (v1), then the watch and the cgroup go.
func (m *Mem) Cleanup(ctx context.Context, id string) error {
	m.wmu.Lock()
	w := m.watches[id]
	m.wmu.Unlock()
	if w != nil {
		m.check(w)
		m.unwatch(w)
	}
	return m.isolator.Cleanup(ctx, id)
}

// Pressure reads the container's memory.pressure (cgroup v2 with PSI). It
// returns an error wrapping fs.ErrNotExist where there is none (cgroup v1,
// or a kernel without PSI).
func (m *Mem) Pressure(id string) (some, full container.PSI, err error) {
	st, err := m.get(id)
	if err != nil {
		return some, full, err
	}
	if !m.unified {
		return some, full, fmt.Errorf("cgroups/mem: per-container memory pressure needs cgroup v2: %w", fs.ErrNotExist)
	}
	b, err := os.ReadFile(filepath.Join(st.d.unified, "memory.pressure"))
	if err != nil {
		return some, full, err
	}
	return parsePressure(string(b))
}

// parsePressure parses a PSI file: "some avg10=0.00 avg60=0.00 avg300=0.00
// total=0" and the same for "full".
func parsePressure(s string) (some, full container.PSI, err error) {
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		var dst *container.PSI
		switch f[0] {
		case "some":
			dst = &some
		case "full":
			dst = &full
		default:
			continue
		}
		for _, kv := range f[1:] {
			k, v, _ := strings.Cut(kv, "=")
			var err error
			switch k {
			case "avg10":
				dst.Avg10, err = strconv.ParseFloat(v, 64)
			case "avg60":
				dst.Avg60, err = strconv.ParseFloat(v, 64)
			case "avg300":
				dst.Avg300, err = strconv.ParseFloat(v, 64)
			case "total":
				dst.TotalMicros, err = strconv.ParseUint(v, 10, 64)
			}
			if err != nil {
				return some, full, fmt.Errorf("parsing pressure %q: %w", line, err)
			}
		}
	}
	return some, full, nil
}

// bytesString formats a byte count as Mesos' Bytes does: the largest unit
// that loses nothing ("64MB", "1536KB", "12345B").
func bytesString(b uint64) string {
	if b == 0 {
		return "0B"
	}
	units := []string{"B", "KB", "MB", "GB", "TB"}
	i := 0
	for i < len(units)-1 && b%1024 == 0 {
		b /= 1024
		i++
	}
	return strconv.FormatUint(b, 10) + units[i]
}
