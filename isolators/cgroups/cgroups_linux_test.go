package cgroups_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	ocgroups "github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"

	"github.com/corral/corral/container"
	"github.com/corral/corral/container/containerizer"
	"github.com/corral/corral/internal/testsupport"
	"github.com/corral/corral/isolators/cgroups"
	"github.com/corral/corral/launcher/posix"
)

const mb = 1 << 20

// v1Unlimited is what a v1 memory limit file reads when there is none
// (PAGE_COUNTER_MAX pages of 4 KiB).
const v1Unlimited = "9223372036854771712"

func cpuWeight(shares uint64) string {
	return strconv.FormatUint(ocgroups.ConvertCPUSharesToCgroupV2Value(shares), 10)
}

// The limits each isolator writes, at launch and after Update, read back
// from the kernel's files. Keys are "controller/file" on v1 and "file" on v2.
func TestLimitFiles(t *testing.T) {
	tests := []struct {
		name      string
		isolation string
		flags     []string
		res       container.Resources
		v1, v2    map[string]string
		update    *container.Resources
		// v1After and v2After are checked after Update.
		v1After, v2After map[string]string
	}{
		{
			name: "cpu-shares", isolation: "cgroups/cpu",
			res:     container.Resources{CPUs: 0.5},
			v1:      map[string]string{"cpu/cpu.shares": "512", "cpu/cpu.cfs_quota_us": "-1"},
			v2:      map[string]string{"cpu.weight": cpuWeight(512), "cpu.max": "max 100000"},
			update:  &container.Resources{CPUs: 1.5},
			v1After: map[string]string{"cpu/cpu.shares": "1536", "cpu/cpu.cfs_quota_us": "-1"},
			v2After: map[string]string{"cpu.weight": cpuWeight(1536), "cpu.max": "max 100000"},
		},
		{
			name: "cpu-cfs", isolation: "cgroups/cpu", flags: []string{"--cgroups_enable_cfs"},
			res:     container.Resources{CPUs: 0.5},
			v1:      map[string]string{"cpu/cpu.shares": "512", "cpu/cpu.cfs_period_us": "100000", "cpu/cpu.cfs_quota_us": "50000"},
			v2:      map[string]string{"cpu.weight": cpuWeight(512), "cpu.max": "50000 100000"},
			update:  &container.Resources{CPUs: 2},
			v1After: map[string]string{"cpu/cpu.shares": "2048", "cpu/cpu.cfs_quota_us": "200000"},
			v2After: map[string]string{"cpu.weight": cpuWeight(2048), "cpu.max": "200000 100000"},
		},
		{
			// Mesos' minimums: 2 shares, a 1 ms quota.
			name: "cpu-minimum", isolation: "cgroups/cpu", flags: []string{"--cgroups_enable_cfs"},
			res: container.Resources{CPUs: 0.001},
			v1:  map[string]string{"cpu/cpu.shares": "2", "cpu/cpu.cfs_quota_us": "1000"},
			v2:  map[string]string{"cpu.weight": cpuWeight(2), "cpu.max": "1000 100000"},
		},
		{
			// Swap off by default: memory+swap limited to the memory limit.
			name: "mem", isolation: "cgroups/mem",
			res: container.Resources{MemBytes: 64 * mb},
			v1:  map[string]string{"memory/memory.limit_in_bytes": "67108864", "memory/memory.memsw.limit_in_bytes": "67108864"},
			v2: map[string]string{"memory.max": "67108864", "memory.swap.max": "0", "memory.oom.group": "1",
				"memory.high": "max"},
			update:  &container.Resources{MemBytes: 128 * mb},
			v1After: map[string]string{"memory/memory.limit_in_bytes": "134217728", "memory/memory.memsw.limit_in_bytes": "134217728"},
			v2After: map[string]string{"memory.max": "134217728", "memory.swap.max": "0"},
		},
		{
			// Shrinking lowers the limit before memsw (v1 wants limit <=
			// memsw at every step).
			name: "mem-shrink", isolation: "cgroups/mem",
			res:     container.Resources{MemBytes: 128 * mb},
			v1:      map[string]string{"memory/memory.limit_in_bytes": "134217728"},
			v2:      map[string]string{"memory.max": "134217728"},
			update:  &container.Resources{MemBytes: 48 * mb},
			v1After: map[string]string{"memory/memory.limit_in_bytes": "50331648", "memory/memory.memsw.limit_in_bytes": "50331648"},
			v2After: map[string]string{"memory.max": "50331648"},
		},
		{
			name: "mem-minimum", isolation: "cgroups/mem",
			res: container.Resources{MemBytes: 1 * mb},
			v1:  map[string]string{"memory/memory.limit_in_bytes": "33554432"},
			v2:  map[string]string{"memory.max": "33554432"},
		},
		{
			name: "mem-soft-limit", isolation: "cgroups/mem", flags: []string{"--cgroups_memory_soft_limit"},
			res:     container.Resources{MemBytes: 64 * mb},
			v1:      map[string]string{"memory/memory.soft_limit_in_bytes": "67108864"},
			v2:      map[string]string{"memory.high": "67108864"},
			update:  &container.Resources{MemBytes: 96 * mb},
			v1After: map[string]string{"memory/memory.soft_limit_in_bytes": "100663296"},
			v2After: map[string]string{"memory.high": "100663296"},
		},
		{
			name: "mem-swap-allowed", isolation: "cgroups/mem", flags: []string{"--cgroups_limit_swap=false"},
			res: container.Resources{MemBytes: 64 * mb},
			v1:  map[string]string{"memory/memory.limit_in_bytes": "67108864", "memory/memory.memsw.limit_in_bytes": v1Unlimited},
			v2:  map[string]string{"memory.max": "67108864", "memory.swap.max": "max"},
		},
		{
			name: "pids-default", isolation: "cgroups/pids",
			v1: map[string]string{"pids/pids.max": "max"},
			v2: map[string]string{"pids.max": "max"},
		},
		{
			name: "pids-flag", isolation: "cgroups/pids", flags: []string{"--cgroups_pids_max=100"},
			v1: map[string]string{"pids/pids.max": "100"},
			v2: map[string]string{"pids.max": "100"},
		},
		{
			name: "pids-label", isolation: "cgroups/pids", flags: []string{"--cgroups_pids_max=100"},
			res:     container.Resources{Labels: map[string]string{cgroups.PidsLabel: "50"}},
			v1:      map[string]string{"pids/pids.max": "50"},
			v2:      map[string]string{"pids.max": "50"},
			update:  &container.Resources{Labels: map[string]string{cgroups.PidsLabel: "70"}},
			v1After: map[string]string{"pids/pids.max": "70"},
			v2After: map[string]string{"pids.max": "70"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.isolation == "cgroups/mem" && !unified() && !exists(filepath.Join(cgroupRoot, "memory", "memory.memsw.limit_in_bytes")) {
				for k := range tc.v1 {
					if strings.Contains(k, "memsw") {
						delete(tc.v1, k)
						delete(tc.v1After, k)
					}
				}
			}
			e := setup(t, tc.flags, tc.isolation)
			id := e.prefix + "c"
			e.launch(t, &container.Config{ID: id, Resources: tc.res}, "exec sleep 1000")
			e.checkFiles(t, id, tc.v1, tc.v2)
			if tc.update == nil {
				return
			}
			if err := e.c.Update(context.Background(), id, *tc.update); err != nil {
				t.Fatalf("Update: %v", err)
			}
			e.checkFiles(t, id, tc.v1After, tc.v2After)
		})
	}
}

func (e *env) checkFiles(t *testing.T, id string, v1, v2 map[string]string) {
	t.Helper()
	if unified() {
		for file, want := range v2 {
			if got := readFile(t, e.dir("", id), file); got != want {
				t.Errorf("%s = %q, want %q", file, got, want)
			}
		}
		return
	}
	for key, want := range v1 {
		ctrl, file, _ := strings.Cut(key, "/")
		if got := readFile(t, e.dir(ctrl, id), file); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
}

// A task over its memory limit is OOM-killed and the container ends with
// REASON_CONTAINER_LIMITATION_MEMORY and a message naming limit and usage:
// whether the task keeps running (the limitation destroys it), exits by
// itself right after the kill (the limitation must still be found), or runs
// as PID 1's child in a PID namespace.
func TestOOMLimitation(t *testing.T) {
	// tail keeps the whole of a newline-free input in memory.
	const hog = "head -c 1024M /dev/zero | tail"
	tests := []struct {
		name      string
		isolation []string
		script    string
	}{
		{name: "keeps-running", isolation: []string{"cgroups/mem"}, script: hog + "; exec sleep 1000"},
		{name: "exits-after-oom", isolation: []string{"cgroups/mem"}, script: hog + "; exit 0"},
		{name: "pid-namespace", isolation: []string{"cgroups/mem", "namespaces/pid"}, script: hog + "; exec sleep 1000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, nil, tc.isolation...)
			id := e.prefix + "oom"
			e.launch(t, &container.Config{ID: id, Resources: container.Resources{MemBytes: 64 * mb}}, tc.script)
			term := e.wait(t, id)
			if term.Limitation == nil || term.Limitation.Reason != cgroups.ReasonMemory {
				t.Fatalf("termination %+v, want limitation %s", term, cgroups.ReasonMemory)
			}
			msg := term.Limitation.Message
			if !strings.Contains(msg, "Memory limit exceeded") || !strings.Contains(msg, "Requested: 64MB") || !strings.Contains(msg, "Maximum Used: ") {
				t.Errorf("limitation message %q, want one naming the 64MB limit and the usage", msg)
			}
			if term.Message != msg {
				t.Errorf("termination message %q, want the limitation's", term.Message)
			}
			for _, ctrl := range []string{"memory", "freezer"} {
				if dir := e.dir(ctrl, id); exists(dir) {
					t.Errorf("cgroup %s left after the OOM", dir)
				}
			}
			t.Logf("%s", msg)
		})
	}
}

// A fork bomb stays under pids.max and the container is destroyed whole.
func TestForkBombContained(t *testing.T) {
	const limit = 64
	e := setup(t, nil, "cgroups/pids")
	id := e.prefix + "bomb"
	// The bomb waits for the test's go-ahead, given only once pids.max is
	// seen in place: a broken isolator must not bomb the host.
	sandbox := e.launch(t, &container.Config{ID: id, Resources: container.Resources{
		Labels: map[string]string{cgroups.PidsLabel: strconv.Itoa(limit)},
	}}, `while [ ! -e go ]; do sleep 0.05; done; bomb() { bomb | bomb & }; bomb & exec sleep 1000`)
	dir := e.dir("pids", id)
	if got := readFile(t, dir, "pids.max"); got != strconv.Itoa(limit) {
		t.Fatalf("pids.max = %q, want %d; not starting the bomb", got, limit)
	}
	if procs := readFile(t, dir, "cgroup.procs"); procs == "" {
		t.Fatal("the container's processes are not in its pids cgroup; not starting the bomb")
	}
	if err := os.WriteFile(filepath.Join(sandbox, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "forks refused at pids.max", func() bool {
		ev := readFile(t, dir, "pids.events")
		n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(ev, "max")))
		return n > 0
	})
	peak := 0
	for i := 0; i < 20; i++ {
		cur, _ := strconv.Atoi(readFile(t, dir, "pids.current"))
		peak = max(peak, cur)
		time.Sleep(10 * time.Millisecond)
	}
	if peak > limit {
		t.Fatalf("pids.current reached %d, over pids.max %d", peak, limit)
	}
	events := readFile(t, dir, "pids.events")
	start := time.Now()
	term, err := e.c.Destroy(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bomb peaked at %d tasks (pids.max %d, pids.events %q); destroyed in %v", peak, limit, events, time.Since(start))
	if !term.Destroyed {
		t.Errorf("termination %+v, want destroyed", term)
	}
	for _, ctrl := range []string{"pids", "freezer"} {
		if d := e.dir(ctrl, id); exists(d) {
			t.Errorf("cgroup %s survived the destroy", d)
		}
	}
	if leaks := testsupport.Leaks(id); len(leaks) > 0 {
		t.Fatalf("%d processes escaped the destroy, e.g. %s", len(leaks), leaks[0])
	}
}

// With --cgroups_enable_cfs a busy loop on two cores is held near its quota.
// Only the upper bound is asserted: a noisy machine lowers usage, never
// raises it over what CFS allows.
func TestCFSQuotaHoldsBusyLoop(t *testing.T) {
	const cpus = 0.5
	e := setup(t, []string{"--cgroups_enable_cfs"}, "cgroups/cpu")
	id := e.prefix + "busy"
	e.launch(t, &container.Config{ID: id, Resources: container.Resources{CPUs: cpus}},
		"while :; do :; done & while :; do :; done & wait")
	used := func() (float64, *container.Usage) {
		u, err := e.c.Usage(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return u.CPUsUserTimeSecs + u.CPUsSystemTimeSecs, u
	}
	waitFor(t, "busy loops running", func() bool { c, _ := used(); return c > 0.05 })
	c0, _ := used()
	t0 := time.Now()
	time.Sleep(2 * time.Second)
	c1, u := used()
	wall := time.Since(t0).Seconds()
	rate := (c1 - c0) / wall
	t.Logf("%.3f cpus used over %.2fs with a quota of %.2f; throttled %d of %d periods", rate, wall, cpus, u.CPUsNrThrottled, u.CPUsNrPeriods)
	// One period of slack for where the window falls, plus rounding.
	if rate > cpus*1.15 {
		t.Errorf("busy loop used %.3f cpus, over its %.2f quota", rate, cpus)
	}
	if !u.Set["cpus_nr_throttled"] || !u.Set["cpus_nr_periods"] || !u.Set["cpus_throttled_time_secs"] {
		t.Errorf("usage lacks the CFS statistics: %+v", u)
	}
	// Throttling shows only if the loops got more than their quota's worth
	// of the machine; a busy host may not give it.
	if rate >= cpus*0.9 && (u.CPUsNrThrottled == 0 || u.CPUsThrottledTimeSecs <= 0) {
		t.Errorf("the loops ran at the quota yet usage shows no throttling: %+v", u)
	}
	if u.CPUsLimit != cpus {
		t.Errorf("cpus_limit %v, want %v", u.CPUsLimit, cpus)
	}
}

// cgroups/devices: the default allow list lets a task use /dev/null and
// /dev/zero; making a device node, or opening a block device through a node
// the host made, is denied.
func TestDevicesAllowList(t *testing.T) {
	e := setup(t, nil, "cgroups/devices")
	id := e.prefix + "dev"
	sandbox := filepath.Join(t.TempDir(), id)
	if err := os.Mkdir(sandbox, 0o755); err != nil {
		t.Fatal(err)
	}
	blk, why := hostBlockNode(sandbox)
	script := `echo x > /dev/null && echo null-ok
head -c 1 /dev/zero > /dev/null && echo zero-ok
if mknod made b 7 0 2>/dev/null; then echo mknod-allowed; else echo mknod-denied; fi
if [ -e blk ]; then if head -c 1 blk > /dev/null 2>&1; then echo blk-allowed; else echo blk-denied; fi; fi`
	e.launch(t, &container.Config{ID: id, Sandbox: sandbox}, script)
	term := e.wait(t, id)
	out := sandboxFile(sandbox, "stdout")
	if !term.StatusKnown || term.Status.ExitStatus() != 0 {
		t.Fatalf("task ended %s:\n%s\nstderr: %s", term.Message, out, sandboxFile(sandbox, "stderr"))
	}
	for _, want := range []string{"null-ok", "zero-ok", "mknod-denied"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("want %s in the task's output:\n%s", want, out)
		}
	}
	if blk == "" {
		t.Logf("block device check skipped: %s", why)
	} else if !strings.Contains(out, "blk-denied\n") {
		t.Errorf("the task could read block device %s:\n%s", blk, out)
	}
}

// hostBlockNode makes, in dir, a node for a block device that the host (no
// devices cgroup) can open, so that the container's failure to open it is
// the allow list's doing.
func hostBlockNode(dir string) (dev, why string) {
	entries, err := os.ReadDir("/sys/dev/block")
	if err != nil || len(entries) == 0 {
		return "", "no block devices in /sys/dev/block"
	}
	node := filepath.Join(dir, "blk")
	for _, e := range entries {
		var maj, min uint32
		if _, err := fmt.Sscanf(e.Name(), "%d:%d", &maj, &min); err != nil {
			continue
		}
		_ = os.Remove(node)
		if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(unix.Mkdev(maj, min))); err != nil {
			return "", fmt.Sprintf("mknod on the host: %v", err)
		}
		f, err := os.Open(node)
		if err != nil {
			why = fmt.Sprintf("the host cannot open %s either: %v (nodev mount?)", e.Name(), err)
			continue
		}
		f.Close()
		return e.Name(), ""
	}
	_ = os.Remove(node)
	return "", why
}

// A busy task's usage: cpu times, memory, counts and limits are filled and
// sane.
func TestUsageOfBusyTask(t *testing.T) {
	e := setup(t, nil, "cgroups/cpu", "cgroups/mem", "cgroups/pids")
	id := e.prefix + "usage"
	e.launch(t, &container.Config{ID: id, Resources: container.Resources{CPUs: 1, MemBytes: 256 * mb}},
		// tail holds its newline-free input until it can write it out, and
		// a sleep that never reads keeps it there: the 40M stays resident
		// however late the cpu time arrives on a loaded machine.
		"while :; do :; done & head -c 40M /dev/zero | tail | sleep 1000 & exec sleep 1000")
	var u *container.Usage
	waitFor(t, "cpu and memory used", func() bool {
		var err error
		u, err = e.c.Usage(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return u.CPUsUserTimeSecs > 0.1 && u.MemRSSBytes > 30*mb
	})
	for _, f := range []string{"cpus_user_time_secs", "cpus_system_time_secs", "cpus_limit", "cpus_nr_periods",
		"mem_total_bytes", "mem_rss_bytes", "mem_cache_bytes", "mem_limit_bytes", "processes", "threads"} {
		if !u.Set[f] {
			t.Errorf("%s not set: %+v", f, u)
		}
	}
	if u.CPUsLimit != 1 || u.MemLimitBytes != 256*mb {
		t.Errorf("limits cpus %v mem %d, want 1 and %d", u.CPUsLimit, u.MemLimitBytes, 256*mb)
	}
	if u.MemTotalBytes < u.MemRSSBytes || u.MemTotalBytes > 256*mb {
		t.Errorf("mem_total_bytes %d, want between rss %d and the limit", u.MemTotalBytes, u.MemRSSBytes)
	}
	// init, the loop's subshell, tail, the sleep it writes to, and the
	// sleep that replaced sh (head has ended).
	if u.Processes < 4 || u.Threads < u.Processes {
		t.Errorf("processes %d threads %d, want at least 4 and threads >= processes", u.Processes, u.Threads)
	}
	t.Logf("usage: user %.2fs sys %.2fs rss %d total %d procs %d threads %d", u.CPUsUserTimeSecs, u.CPUsSystemTimeSecs,
		u.MemRSSBytes, u.MemTotalBytes, u.Processes, u.Threads)
	t.Run("memory-pressure", func(t *testing.T) {
		if !unified() {
			t.Skip("per-container memory PSI needs cgroup v2 (this host is v1/hybrid); the VM tier runs it")
		}
		if !exists(filepath.Join(e.dir("memory", id), "memory.pressure")) {
			t.Skip("the kernel has no PSI (CONFIG_PSI off or psi=0)")
		}
		if !u.Set["mem_pressure"] {
			t.Errorf("memory.pressure exists but usage has no mem_pressure: %+v", u)
		}
	})
}

// cgroup v2 only: memory.oom.group makes an OOM kill take the whole
// container, not only the biggest process.
func TestOOMGroupKillsWholeContainer(t *testing.T) {
	if !unified() {
		testsupport.RequireRoot(t)
		t.Skip("memory.oom.group is a cgroup v2 feature (this host is v1/hybrid); the VM tier runs it")
	}
	e := setup(t, nil, "cgroups/mem")
	id := e.prefix + "oomgroup"
	sandbox := e.launch(t, &container.Config{ID: id, Resources: container.Resources{MemBytes: 64 * mb}},
		"sleep 1000 & head -c 1024M /dev/zero | tail; echo survived; wait")
	term := e.wait(t, id)
	if term.Limitation == nil || term.Limitation.Reason != cgroups.ReasonMemory {
		t.Fatalf("termination %+v, want limitation %s", term, cgroups.ReasonMemory)
	}
	if strings.Contains(sandboxFile(sandbox, "stdout"), "survived") {
		t.Errorf("the shell outlived the OOM kill: memory.oom.group had no effect")
	}
}

// The cgroups isolators own their v1 hierarchies and so also work with the
// posix launcher; on v2 the container's cgroup is the linux launcher's, and
// the combination is refused when the containerizer is built.
func TestCgroupsWithPosixLauncher(t *testing.T) {
	testsupport.RequireRoot(t)
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	root := prefix + "root"
	o := container.Options{CgroupsRoot: root}
	l := posix.New()
	iso, err := container.NewIsolator("cgroups/mem", o)
	if err != nil {
		t.Fatal(err)
	}
	c, err := containerizer.New(l, []container.Isolator{iso}, filepath.Join(testsupport.BinDir(t), "corral-init"), t.TempDir(), nil)
	if unified() {
		if err == nil || !strings.Contains(err.Error(), "--launcher=linux") {
			t.Fatalf("containerizer.New(posix, cgroups/mem) on v2: %v, want an error asking for --launcher=linux", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeIsolatorRoots(t, root) })
	e := &env{c: c, prefix: prefix, root: root}
	id := prefix + "posix"
	e.launch(t, &container.Config{ID: id, Resources: container.Resources{MemBytes: 64 * mb}}, "exec sleep 1000")
	e.checkFiles(t, id, map[string]string{"memory/memory.limit_in_bytes": "67108864"}, nil)
	if procs := readFile(t, e.dir("memory", id), "cgroup.procs"); procs == "" {
		t.Error("the container's processes are not in its memory cgroup")
	}
	if _, err := c.Destroy(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if exists(e.dir("memory", id)) {
		t.Error("memory cgroup left after destroy")
	}
}

// Bad flag values are refused by the flag set or when the isolator is
// built, naming the flag;
// a bad task label fails that launch, naming the label, and leaves nothing.
func TestBadInput(t *testing.T) {
	flags := []struct {
		isolation, key, value string
	}{
		{"cgroups/pids", "cgroups_pids_max", "lots"},
		{"cgroups/pids", "cgroups_pids_max", "0"},
		{"cgroups/cpu", "cgroups_enable_cfs", "maybe"},
		{"cgroups/mem", "cgroups_limit_swap", "sometimes"},
		{"cgroups/mem", "cgroups_memory_soft_limit", "2"},
		{"cgroups/blkio", "cgroups_blkio_weight", "5000"},
	}
	for _, f := range flags {
		t.Run(f.key+"="+f.value, func(t *testing.T) {
			o, err := optionsWithFlags([]string{"--" + f.key + "=" + f.value})
			if err == nil {
				_, err = container.NewIsolator(f.isolation, o)
			}
			if err == nil || !strings.Contains(err.Error(), "--"+f.key) {
				t.Fatalf("NewIsolator(%s, --%s=%s): %v, want an error naming the flag", f.isolation, f.key, f.value, err)
			}
		})
	}
	labels := []struct {
		isolation, label, value string
	}{
		{"cgroups/pids", cgroups.PidsLabel, "many"},
		{"cgroups/blkio", cgroups.BlkioWeightLabel, "1"},
	}
	for _, lb := range labels {
		t.Run(lb.label+"="+lb.value, func(t *testing.T) {
			e := setup(t, nil, lb.isolation)
			id := e.prefix + "badlabel"
			err := e.c.Launch(context.Background(), &container.Config{ID: id, Sandbox: t.TempDir(), Argv: []string{"true"},
				Resources: container.Resources{Labels: map[string]string{lb.label: lb.value}}})
			if err == nil || !strings.Contains(err.Error(), lb.label) {
				t.Fatalf("launch with label %s=%s: %v, want an error naming the label", lb.label, lb.value, err)
			}
			if exists(e.l.CgroupPath(id)) {
				t.Error("a failed launch left its cgroup")
			}
		})
	}
}

// cgroups/blkio writes the weight into whichever proportional-weight file
// the kernel offers (CFQ's or BFQ's on v1, io.weight or io.bfq.weight on
// v2).
func TestBlkioWeight(t *testing.T) {
	e := setup(t, []string{"--cgroups_blkio_weight=300"}, "cgroups/blkio")
	id := e.prefix + "io"
	e.launch(t, &container.Config{ID: id, Resources: container.Resources{
		Labels: map[string]string{cgroups.BlkioWeightLabel: "200"},
	}}, "exec sleep 1000")
	dir := e.dir("blkio", id)
	if unified() {
		dir = e.dir("io", id)
	}
	for file, want := range map[string]string{"blkio.weight": "200", "blkio.bfq.weight": "200", "io.weight": "default 1920", "io.bfq.weight": "default 200"} {
		if !exists(filepath.Join(dir, file)) {
			continue
		}
		got := readFile(t, dir, file)
		// io.bfq.weight reads "default N"; blkio.bfq.weight reads "N" or
		// "default N" depending on the kernel.
		if got != want && "default "+got != want && got != "default "+want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
		return
	}
	t.Skip("no proportional I/O weight file (neither CFQ nor BFQ, nor io.cost) in " + dir)
}

// Destroying a container whose init was stopped works like any other (the
// freezer does not wait on a stopped task).
func TestDestroyStoppedWithCgroups(t *testing.T) {
	e := setup(t, nil, "cgroups/cpu", "cgroups/mem", "cgroups/pids")
	id := e.prefix + "stopped"
	e.launch(t, &container.Config{ID: id, Resources: container.Resources{CPUs: 0.1, MemBytes: 64 * mb}},
		"sleep 1000 & kill -STOP $$; wait")
	waitFor(t, "processes started", func() bool {
		n, _ := strconv.Atoi(readFile(t, e.dir("pids", id), "pids.current"))
		return n >= 3
	})
	term, err := e.c.Destroy(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !term.Destroyed || !term.StatusKnown || term.Status.Signal() != syscall.SIGKILL {
		t.Errorf("termination %+v, want destroyed by SIGKILL", term)
	}
	for _, ctrl := range []string{"cpu", "memory", "pids"} {
		if exists(e.dir(ctrl, id)) {
			t.Errorf("%s cgroup left after destroy", ctrl)
		}
	}
}
