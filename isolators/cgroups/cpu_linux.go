package cgroups

import (
	"fmt"
	"math"
	"strconv"

	ocgroups "github.com/opencontainers/cgroups"

	"github.com/corral/corral/container"
	"github.com/corral/corral/container/cgroupfs"
)

// Mesos' constants (slave/containerizer/mesos/isolators/cgroups/constants.hpp).
const (
	cpuSharesPerCPU = 1024
	minCPUShares    = 2
	cfsPeriodUs     = 100000 // 100 ms
	minCFSQuotaUs   = 1000   // 1 ms
	// userHZ is the unit of cpuacct.stat, 100 on every Linux architecture
	// Go supports.
	userHZ = 100
)

// NewCPU builds cgroups/cpu: cpu shares (v1) or weight (v2) from cpus and,
// with --cgroups_enable_cfs, a hard CFS bandwidth limit (quota = cpus ×
// period). On v1 it owns the cpu and cpuacct hierarchies (co-mounted or
// not).
func NewCPU(o container.Options) (container.Isolator, error) {
	cfs := container.SettingsOf[*Settings](o).EnableCFS
	b, err := newBase("cgroups/cpu", o, []string{"cpu", "cpuacct"}, []string{"cpu"})
	if err != nil {
		return nil, err
	}
	return newIsolator(b, &cpuPolicy{cfs: cfs}), nil
}

type cpuPolicy struct{ cfs bool }

func cpuShares(cpus float64) uint64 {
	return max(minCPUShares, uint64(cpus*cpuSharesPerCPU))
}

func cfsQuotaUs(cpus float64) uint64 {
	return max(minCFSQuotaUs, uint64(cpus*cfsPeriodUs))
}

// cpuWeight converts shares to a v2 weight exactly as runc does.
func cpuWeight(shares uint64) uint64 { return ocgroups.ConvertCPUSharesToCgroupV2Value(shares) }

func (p *cpuPolicy) check(r *container.Resources) error {
	if math.IsNaN(r.CPUs) || math.IsInf(r.CPUs, 0) || r.CPUs < 0 {
		return fmt.Errorf("cgroups/cpu: invalid cpus %v", r.CPUs)
	}
	return nil
}

func (p *cpuPolicy) apply(d dirs, r *container.Resources, initial bool) error {
	if r.CPUs == 0 {
		// No cpus resource: the kernel's defaults stand.
		return nil
	}
	shares := cpuShares(r.CPUs)
	if d.unified != "" {
		if err := cgroupfs.Write(d.unified, "cpu.weight", strconv.FormatUint(cpuWeight(shares), 10)); err != nil {
			return err
		}
		if p.cfs {
			return cgroupfs.Write(d.unified, "cpu.max", fmt.Sprintf("%d %d", cfsQuotaUs(r.CPUs), cfsPeriodUs))
		}
		return nil
	}
	dir := d.of("cpu")
	if err := cgroupfs.Write(dir, "cpu.shares", strconv.FormatUint(shares, 10)); err != nil {
		return err
	}
	if p.cfs {
		if initial {
			if err := cgroupfs.Write(dir, "cpu.cfs_period_us", strconv.Itoa(cfsPeriodUs)); err != nil {
				return err
			}
		}
		return cgroupfs.Write(dir, "cpu.cfs_quota_us", strconv.FormatUint(cfsQuotaUs(r.CPUs), 10))
	}
	return nil
}

func (p *cpuPolicy) usage(d dirs, r *container.Resources, u *container.Usage) error {
	if r.CPUs > 0 {
		u.CPUsLimit = r.CPUs
		u.Set["cpus_limit"] = true
	}
	if d.unified != "" {
		st, err := cgroupfs.ReadKV(d.unified, "cpu.stat")
		if err != nil {
			return fmt.Errorf("cgroups/cpu: %w", err)
		}
		u.CPUsUserTimeSecs = float64(st["user_usec"]) / 1e6
		u.CPUsSystemTimeSecs = float64(st["system_usec"]) / 1e6
		u.Set["cpus_user_time_secs"], u.Set["cpus_system_time_secs"] = true, true
		setThrottling(u, st, "throttled_usec", 1e6)
		setCounts(u, d.unified, "cgroup.threads")
		return nil
	}
	acctDir := d.of("cpuacct")
	// The user/system split (cpuacct.usage_user/_sys in ns, or
	// cpuacct.stat in USER_HZ ticks) is sampled at the scheduler tick and
	// can be far off for a throttled task; cpuacct.usage is the exact total.
	// The split is scaled to the total, as the kernel's cputime_adjust does
	// for /proc/<pid>/stat and cgroup v2's cpu.stat.
	var user, sys float64
	uu, uerr := cgroupfs.ReadUint(acctDir, "cpuacct.usage_user")
	us, serr := cgroupfs.ReadUint(acctDir, "cpuacct.usage_sys")
	if uerr == nil && serr == nil {
		user, sys = float64(uu)/1e9, float64(us)/1e9
	} else {
		acct, err := cgroupfs.ReadKV(acctDir, "cpuacct.stat")
		if err != nil {
			return fmt.Errorf("cgroups/cpu: %w", err)
		}
		user, sys = float64(acct["user"])/userHZ, float64(acct["system"])/userHZ
	}
	if total, err := cgroupfs.ReadUint(acctDir, "cpuacct.usage"); err == nil && total != cgroupfs.Unlimited {
		t := float64(total) / 1e9
		if user+sys > 0 {
			user, sys = t*user/(user+sys), t*sys/(user+sys)
		} else {
			user = t
		}
	}
	u.CPUsUserTimeSecs, u.CPUsSystemTimeSecs = user, sys
	u.Set["cpus_user_time_secs"], u.Set["cpus_system_time_secs"] = true, true
	st, err := cgroupfs.ReadKV(d.of("cpu"), "cpu.stat")
	if err != nil {
		return fmt.Errorf("cgroups/cpu: %w", err)
	}
	setThrottling(u, st, "throttled_time", 1e9)
	// Mesos' cgroups/cpu reports the container's processes and threads
	// too, from the cpu hierarchy's cgroup.procs and tasks.
	setCounts(u, d.of("cpu"), "tasks")
	return nil
}

// setCounts fills processes and threads from a cgroup's cgroup.procs and its
// thread list (tasks on v1, cgroup.threads on v2), unless another isolator
// (cgroups/pids) already did.
func setCounts(u *container.Usage, dir, threadsFile string) {
	if u.Set["processes"] {
		return
	}
	procs, err := cgroupfs.CountLines(dir, "cgroup.procs")
	if err != nil {
		return
	}
	threads, err := cgroupfs.CountLines(dir, threadsFile)
	if err != nil {
		return
	}
	u.Processes, u.Threads = procs, threads
	u.Set["processes"], u.Set["threads"] = true, true
}

func setThrottling(u *container.Usage, st map[string]uint64, throttledKey string, perSec float64) {
	if n, ok := st["nr_periods"]; ok {
		u.CPUsNrPeriods = uint32(n)
		u.Set["cpus_nr_periods"] = true
	}
	if n, ok := st["nr_throttled"]; ok {
		u.CPUsNrThrottled = uint32(n)
		u.Set["cpus_nr_throttled"] = true
	}
	if n, ok := st[throttledKey]; ok {
		u.CPUsThrottledTimeSecs = float64(n) / perSec
		u.Set["cpus_throttled_time_secs"] = true
	}
}
