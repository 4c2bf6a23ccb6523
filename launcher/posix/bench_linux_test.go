package posix_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/corral/corral/container"
	"github.com/corral/corral/internal/testsupport"
)

// BenchmarkPosixContainers launches 1000 containers (init + sleep), then
// destroys them, and prints launch latency, totals and the per-container
// cost in processes and memory. Run with -benchtime 1x.
func BenchmarkPosixContainers(b *testing.B) {
	const n = 1000
	prefix := testsupport.Prefix(b)
	testsupport.CheckLeaks(b, prefix)
	c := newContainerizer(b)
	root := b.TempDir()
	for iter := 0; iter < b.N; iter++ {
		runtime.GC()
		rssBefore := testsupport.SelfRSS()
		lat := make([]time.Duration, 0, n)
		ids := make([]string, 0, n)
		start := time.Now()
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("%s%d-%d", prefix, iter, i)
			sandbox := filepath.Join(root, id)
			if err := os.Mkdir(sandbox, 0o755); err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			err := c.Launch(context.Background(), &container.Config{ID: id, Sandbox: sandbox, Argv: []string{"sleep", "1000"}, Env: []string{"MARKER=" + id}})
			lat = append(lat, time.Since(t0))
			if err != nil {
				b.Fatal(err)
			}
			ids = append(ids, id)
		}
		launchAll := time.Since(start)
		time.Sleep(500 * time.Millisecond) // let every task exec
		runtime.GC()
		rssAfter := testsupport.SelfRSS()
		pss, procs := testsupport.ContainerCost(prefix)
		start = time.Now()
		var wg sync.WaitGroup
		for _, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := c.Destroy(context.Background(), id); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
		destroyAll := time.Since(start)
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		p50, p99 := lat[n/2], lat[n*99/100]
		b.ReportMetric(float64(p50.Microseconds())/1000, "launch-p50-ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, "launch-p99-ms")
		b.ReportMetric(launchAll.Seconds(), "launch-1000-s")
		b.ReportMetric(destroyAll.Seconds(), "destroy-1000-s")
		b.ReportMetric(float64(pss)/float64(n)/1024, "container-pss-KiB")
		b.ReportMetric(float64(procs)/float64(n), "procs/container")
		b.ReportMetric(float64(int64(rssAfter)-int64(rssBefore))/float64(n)/1024, "agent-rss-KiB/container")
		fmt.Printf("posix launcher, %d containers: launch p50 %v p99 %v; all launched in %v, destroyed in %v; "+
			"per container %.1f processes, %.0f KiB PSS (init+task), agent RSS +%.1f KiB\n",
			n, p50, p99, launchAll.Round(time.Millisecond), destroyAll.Round(time.Millisecond),
			float64(procs)/n, float64(pss)/n/1024, float64(int64(rssAfter)-int64(rssBefore))/n/1024)
	}
}
