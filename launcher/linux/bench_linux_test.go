package linux_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/corral/corral/container"
	"github.com/corral/corral/container/containerizer"
	"github.com/corral/corral/internal/testsupport"
	"github.com/corral/corral/launcher/linux"
	"github.com/corral/corral/launcher/posix"
)

// containment is what the agent puts in front of --isolation with the linux
// launcher unless --host_privileges (agent.Config.isolators).
var containment = []string{"namespaces/cgroup", "filesystem/masking", "linux/capabilities", "linux/nnp", "linux/seccomp"}

// BenchmarkLinuxContainers measures the linux launcher, to quote against
// BenchmarkPosixContainers (launcher/posix) and issue 3's targets:
//
//   - single: one container at a time, launch → destroy, for clean per-call
//     latencies (launch p50/p99, destroy p50/p99);
//   - batch: CORRAL_BENCH_CONTAINERS (default 1000) containers launched one
//     after another and kept running, then destroyed all at once: launch
//     p50/p99 under a growing load, the totals, and per container the
//     processes, PSS and agent RSS they cost.
//
// Each runs bare (the launcher alone: a cgroup per container), fully
// isolated (cgroups/cpu,mem,pids + namespaces/pid,ipc,uts +
// filesystem/linux, host privileges) and contained (the same with the
// default containment), so that containment's cost reads as contained over
// isolated in one run. containment-cost runs isolated and contained
// containers to their end by turns, for the whole of the containment's
// cost. Run with -benchtime 1x; figures are printed.
func BenchmarkLinuxContainers(b *testing.B) {
	testsupport.RequireRoot(b)
	m := modes()
	mode := m[0] // v1 where there is a freezer hierarchy, as the agent picks
	if mode.hierarchy == "" {
		mode = m[1]
	}
	if mode.hierarchy == "" {
		b.Skip("no usable cgroup hierarchy")
	}
	n := 1000
	if s := os.Getenv("CORRAL_BENCH_CONTAINERS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 10 {
			b.Fatalf("CORRAL_BENCH_CONTAINERS=%q: want a number >= 10", s)
		}
		n = v
	}
	// The same single-container loop on the posix launcher, for the
	// launcher's own cost.
	b.Run("posix-baseline/single", func(b *testing.B) {
		prefix := testsupport.Prefix(b)
		testsupport.CheckLeaks(b, prefix)
		c, err := containerizer.New(posix.New(), nil, filepath.Join(testsupport.BinDir(b), "corral-init"), b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		for iter := 0; iter < b.N; iter++ {
			benchSingle(b, c, prefix, iter, min(n, 200), "posix launcher", "none")
		}
	})
	isolated := []string{"cgroups/cpu", "cgroups/mem", "cgroups/pids", "namespaces/pid", "namespaces/ipc", "namespaces/uts", "filesystem/linux"}
	for _, setup := range []struct {
		name      string
		isolation []string
		// contained adds the agent's default containment (the isolators
		// --host_privileges leaves out, filesystem/linux's read-only root).
		contained bool
	}{
		{"bare", nil, false},
		{"isolated", isolated, false},
		{"contained", append(slices.Clone(containment), isolated...), true},
	} {
		b.Run(setup.name+"/single", func(b *testing.B) {
			c, prefix := benchContainerizer(b, mode, setup.isolation, setup.contained)
			for iter := 0; iter < b.N; iter++ {
				benchSingle(b, c, prefix, iter, min(n, 200), "linux launcher, "+setup.name, mode.name)
			}
		})
		b.Run(setup.name+"/batch", func(b *testing.B) {
			c, prefix := benchContainerizer(b, mode, setup.isolation, setup.contained)
			for iter := 0; iter < b.N; iter++ {
				benchBatch(b, c, prefix, iter, n, setup.name, mode.name)
			}
		})
	}
	b.Run("containment-cost", func(b *testing.B) {
		for iter := 0; iter < b.N; iter++ {
			benchContainmentCost(b, mode, isolated, min(n, 200))
		}
	})
}

// benchContainmentCost runs `true` to its end in an isolated and a
// contained container by turns, so that both see the same noise: launch to
// exit covers what the init does after its go-ahead (the mounts, the
// capability drop, the seccomp load), which Launch alone does not wait for.
func benchContainmentCost(b *testing.B, m mode, isolated []string, k int) {
	iso, prefix := benchContainerizer(b, m, isolated, false)
	con, _ := benchContainerizer(b, m, append(slices.Clone(containment), isolated...), true)
	root := b.TempDir()
	var lat [2][]time.Duration
	for i := 0; i < k; i++ {
		for j, c := range []*containerizer.Containerizer{iso, con} {
			cfg := benchConfig(b, root, fmt.Sprintf("%sc%d-%d", prefix, j, i))
			cfg.Argv = []string{"true"}
			t0 := time.Now()
			if err := c.Launch(context.Background(), cfg); err != nil {
				b.Fatal(err)
			}
			term, err := c.Wait(context.Background(), cfg.ID)
			if err != nil {
				b.Fatal(err)
			}
			lat[j] = append(lat[j], time.Since(t0))
			if !term.StatusKnown || !term.Status.Exited() || term.Status.ExitStatus() != 0 {
				b.Fatalf("true in %s: %+v", cfg.ID, term)
			}
			c.Forget(cfg.ID)
		}
	}
	ip50, ip99 := percentiles(lat[0])
	cp50, cp99 := percentiles(lat[1])
	b.ReportMetric(ms(ip50), "isolated-p50-ms")
	b.ReportMetric(ms(cp50), "contained-p50-ms")
	b.ReportMetric(float64(cp50)/float64(ip50), "p50-ratio")
	b.ReportMetric(float64(cp99)/float64(ip99), "p99-ratio")
	fmt.Printf("launch to exit of `true` (cgroup %s), %d each, interleaved: isolated p50 %v p99 %v; contained p50 %v p99 %v; contained/isolated p50 %.2fx p99 %.2fx (goal <= 1.2x)\n",
		m.name, k, ip50.Round(time.Microsecond), ip99.Round(time.Microsecond), cp50.Round(time.Microsecond), cp99.Round(time.Microsecond),
		float64(cp50)/float64(ip50), float64(cp99)/float64(ip99))
}

// benchContainerizer is setup() for a benchmark: a launcher and isolators on
// a cgroups root of the benchmark's own, removed at the end.
func benchContainerizer(b *testing.B, m mode, isolation []string, contained bool) (*containerizer.Containerizer, string) {
	prefix := testsupport.Prefix(b)
	testsupport.CheckLeaks(b, prefix)
	root := prefix + "root"
	o := container.Options{CgroupsRoot: root, RuntimeDir: b.TempDir(), CgroupsHierarchy: m.hierarchy,
		HostPrivileges: !contained, WorkDir: b.TempDir()}
	l, err := linux.New(o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := l.RemoveRoot(); err != nil {
			b.Errorf("removing cgroups root: %v", err)
		}
		testsupport.RemoveCgroupsRoot(b, root)
	})
	var isos []container.Isolator
	for _, name := range isolation {
		iso, err := container.NewIsolator(name, o)
		if err != nil {
			b.Skipf("%s: %v", name, err)
		}
		isos = append(isos, iso)
	}
	c, err := containerizer.New(l, isos, filepath.Join(testsupport.BinDir(b), "corral-init"), o.RuntimeDir, nil)
	if err != nil {
		b.Fatal(err)
	}
	return c, prefix
}

func benchConfig(b *testing.B, root, id string) *container.Config {
	sandbox := filepath.Join(root, id)
	if err := os.Mkdir(sandbox, 0o755); err != nil {
		b.Fatal(err)
	}
	return &container.Config{
		ID: id, Sandbox: sandbox, Argv: []string{"sleep", "1000"}, Env: []string{"MARKER=" + id},
		Resources: container.Resources{CPUs: 0.01, MemBytes: 64 << 20},
	}
}

// benchSingle launches and destroys k containers one at a time.
func benchSingle(b *testing.B, c *containerizer.Containerizer, prefix string, iter, k int, setup, mode string) {
	root := b.TempDir()
	launch := make([]time.Duration, 0, k)
	destroy := make([]time.Duration, 0, k)
	for i := 0; i < k; i++ {
		cfg := benchConfig(b, root, fmt.Sprintf("%ss%d-%d", prefix, iter, i))
		t0 := time.Now()
		if err := c.Launch(context.Background(), cfg); err != nil {
			b.Fatal(err)
		}
		launch = append(launch, time.Since(t0))
		t0 = time.Now()
		if _, err := c.Destroy(context.Background(), cfg.ID); err != nil {
			b.Fatal(err)
		}
		destroy = append(destroy, time.Since(t0))
	}
	lp50, lp99 := percentiles(launch)
	dp50, dp99 := percentiles(destroy)
	b.ReportMetric(ms(lp50), "launch-p50-ms")
	b.ReportMetric(ms(lp99), "launch-p99-ms")
	b.ReportMetric(ms(dp50), "destroy-p50-ms")
	b.ReportMetric(ms(dp99), "destroy-p99-ms")
	fmt.Printf("%s (cgroup %s), %d containers one at a time: launch p50 %v p99 %v; destroy p50 %v p99 %v\n",
		setup, mode, k, lp50.Round(time.Microsecond), lp99.Round(time.Microsecond), dp50.Round(time.Microsecond), dp99.Round(time.Microsecond))
}

// benchBatch launches n containers, keeps them running, then destroys them
// all concurrently (as an agent shutting down or a framework torn down).
func benchBatch(b *testing.B, c *containerizer.Containerizer, prefix string, iter, n int, setup, mode string) {
	root := b.TempDir()
	runtime.GC()
	rssBefore := testsupport.SelfRSS()
	lat := make([]time.Duration, 0, n)
	ids := make([]string, 0, n)
	b.Cleanup(func() {
		for _, id := range ids {
			_, _ = c.Destroy(context.Background(), id)
		}
	})
	start := time.Now()
	for i := 0; i < n; i++ {
		cfg := benchConfig(b, root, fmt.Sprintf("%sb%d-%d", prefix, iter, i))
		t0 := time.Now()
		err := c.Launch(context.Background(), cfg)
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatalf("container %d: %v", i, err)
		}
		ids = append(ids, cfg.ID)
	}
	launchAll := time.Since(start)
	time.Sleep(500 * time.Millisecond) // let every task exec
	runtime.GC()
	rssAfter := testsupport.SelfRSS()
	pss, procs := testsupport.ContainerCost(prefix)
	dlat := make([]time.Duration, len(ids))
	start = time.Now()
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			if _, err := c.Destroy(context.Background(), id); err != nil {
				b.Error(err)
			}
			dlat[i] = time.Since(t0)
		}()
	}
	wg.Wait()
	destroyAll := time.Since(start)
	ids = nil
	p50, p99 := percentiles(lat)
	dp50, dp99 := percentiles(dlat)
	b.ReportMetric(ms(p50), "launch-p50-ms")
	b.ReportMetric(ms(p99), "launch-p99-ms")
	b.ReportMetric(launchAll.Seconds(), "launch-all-s")
	b.ReportMetric(destroyAll.Seconds(), "destroy-all-s")
	b.ReportMetric(float64(pss)/float64(n)/1024, "container-pss-KiB")
	b.ReportMetric(float64(procs)/float64(n), "procs/container")
	b.ReportMetric(float64(int64(rssAfter)-int64(rssBefore))/float64(n)/1024, "agent-rss-KiB/container")
	fmt.Printf("linux launcher (cgroup %s, %s), %d containers: launch p50 %v p99 %v; all launched in %v, destroyed together in %v "+
		"(each destroy p50 %v p99 %v); per container %.1f processes, %.0f KiB PSS (init+task), agent RSS %+.1f KiB (%.0f MiB at %d running)\n",
		mode, setup, n, p50.Round(time.Microsecond), p99.Round(time.Microsecond), launchAll.Round(time.Millisecond), destroyAll.Round(time.Millisecond),
		dp50.Round(time.Microsecond), dp99.Round(time.Microsecond),
		float64(procs)/float64(n), float64(pss)/float64(n)/1024, float64(int64(rssAfter)-int64(rssBefore))/float64(n)/1024, float64(rssAfter)/(1<<20), n)
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	return testsupport.Percentile(d, 50), testsupport.Percentile(d, 99)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
