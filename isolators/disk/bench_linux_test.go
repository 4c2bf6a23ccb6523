package disk

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral/corral/container"
	"github.com/corral/corral/internal/testsupport"
)

// benchSizes are the sandbox file counts measured: 10^3 and 10^5 by
// default (make bench stays within minutes); CORRAL_DISK_BENCH_FILES adds
// more, e.g. CORRAL_DISK_BENCH_FILES=1000000.
func benchSizes(b *testing.B) []int {
	sizes := []int{1000, 100000}
	for _, f := range strings.FieldsFunc(os.Getenv("CORRAL_DISK_BENCH_FILES"), func(r rune) bool { return r == ',' || r == ' ' }) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			b.Fatalf("CORRAL_DISK_BENCH_FILES: %q is not a file count", f)
		}
		sizes = append(sizes, n)
	}
	return sizes
}

// fillSandbox writes n files of 100 bytes, 1000 to a directory.
func fillSandbox(b *testing.B, dir string, n int) {
	b.Helper()
	data := []byte(strings.Repeat("x", 100))
	for i := 0; i < n; i++ {
		sub := filepath.Join(dir, fmt.Sprint("d", i/1000))
		if i%1000 == 0 {
			if err := os.MkdirAll(sub, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprint("f", i)), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDiskUsage compares one usage reading of a sandbox of n small
// files: disk/du's walk (a helper process, as the isolator runs it) and
// disk/xfs's quota read (one quotactl), on XFS and ext4 where the kernel
// has project quotas. Reported: ns/read, and for du the CPU the agent
// spent (agent-cpu-ns/read: starting and reaping the helper) against the
// helper's (helper-cpu-ns/read). Run with -benchtime 1x.
func BenchmarkDiskUsage(b *testing.B) {
	for _, n := range benchSizes(b) {
		b.Run(fmt.Sprintf("files=%d/du", n), func(b *testing.B) { benchDU(b, n, 1) })
		for _, kind := range quotaKinds {
			b.Run(fmt.Sprintf("files=%d/quota-%s", n, kind), func(b *testing.B) { benchQuota(b, kind, n) })
		}
	}
}

// BenchmarkDUBatch is disk/du's steady state with many containers: one
// helper measures maxBatch sandboxes (of 1000 files) in turn. Reported per
// container, and the agent's CPU share (percent of one core) that 1000
// containers measured every 15s would cost at this rate.
func BenchmarkDUBatch(b *testing.B) {
	benchDU(b, 1000, maxBatch)
}

func benchDU(b *testing.B, n, sandboxes int) {
	prefix := testsupport.Prefix(b)
	testsupport.CheckLeaks(b, prefix)
	dirs := make([]string, sandboxes)
	for i := range dirs {
		dirs[i] = filepath.Join(b.TempDir(), fmt.Sprint(prefix, "sandbox", i))
		fillSandbox(b, dirs[i], n)
	}
	cg := prefix + "du"
	if os.Getenv("CORRAL_DISK_BENCH_NOCG") != "" {
		cg = "none"
	}
	d, err := newDU(options("", func(s *Settings) { s.WatchInterval, s.DUCgroup = time.Hour, cg }))
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	// Warm the dentry and inode caches as the steady state is: the walk
	// runs every interval over the same files.
	if _, err := d.runner.du(context.Background(), dirs); err != nil {
		b.Fatal(err)
	}
	var helper time.Duration
	// Not the filling's garbage: collect it now, outside the measure.
	runtime.GC()
	cpu0 := selfCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := d.runner.du(context.Background(), dirs)
		if err != nil {
			b.Fatal(err)
		}
		for k := range dirs {
			if res.Errs[k] != nil || res.Bytes[k] < uint64(n)*100 {
				b.Fatalf("du says %d bytes (%v) for %d files of 100 bytes", res.Bytes[k], res.Errs[k], n)
			}
		}
		helper += res.CPU
	}
	b.StopTimer()
	agent := selfCPU() - cpu0
	reads := float64(b.N * sandboxes)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/reads, "ns/read")
	b.ReportMetric(float64(agent.Nanoseconds())/reads, "agent-cpu-ns/read")
	b.ReportMetric(float64(helper.Nanoseconds())/reads, "helper-cpu-ns/read")
	if sandboxes > 1 {
		perCtr := float64(agent.Nanoseconds()) / reads
		b.ReportMetric(perCtr*1000/15e9*100, "agent-%core-1000ctr")
	}
}

func benchQuota(b *testing.B, kind string, n int) {
	prefix := testsupport.Prefix(b)
	testsupport.CheckLeaks(b, prefix)
	mnt := loopFSFor(b, kind, prefix, true, n)
	x, err := newXFS(options(mnt, func(s *Settings) { s.Enforce = true }))
	if err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	sb := filepath.Join(mnt, "sandbox")
	if err := os.Mkdir(sb, 0o755); err != nil {
		b.Fatal(err)
	}
	id := prefix + "c"
	if _, err := x.Prepare(context.Background(), &container.Config{ID: id, Sandbox: sb, Resources: container.Resources{DiskBytes: 1 << 40}}); err != nil {
		b.Fatal(err)
	}
	defer x.Cleanup(context.Background(), id)
	fillSandbox(b, sb, n) // the files inherit the project
	syscall.Sync()
	// A reading is one quotactl: too fast for one to time, so 1000 per
	// iteration.
	const reads = 1000
	u := &container.Usage{Set: map[string]bool{}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k := 0; k < reads; k++ {
			if err := x.Usage(context.Background(), id, u); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	if u.DiskUsedBytes < uint64(n)*100 {
		b.Fatalf("quota says %d bytes for %d files of 100 bytes", u.DiskUsedBytes, n)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*reads), "ns/read")
}
