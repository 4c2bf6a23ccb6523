package gc

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkPrune10000 removes 10,000 finished sandboxes (stdout, stderr and
// a file in a subdirectory each, as the agent schedules them: run,
// executor and framework directories) with one Prune, at the default
// parallelism. Making the sandboxes is not timed. Run with -benchtime 1x.
func BenchmarkPrune10000(b *testing.B) {
	const n = 10000
	for iter := 0; iter < b.N; iter++ {
		b.StopTimer()
		dir, _ := workDir(b)
		g, err := New(Config{WorkDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < n; i++ {
			fw := filepath.Join(dir, "frameworks", fmt.Sprint("f", i/100))
			ex := filepath.Join(fw, "executors", fmt.Sprint("e", i))
			run := sandbox(b, filepath.Join(ex, "runs", "r"))
			for _, p := range []string{run, ex, fw} {
				if err := g.Schedule(p, g.Delay()); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StartTimer()
		t0 := time.Now()
		removed := g.Prune(0)
		el := time.Since(t0)
		b.StopTimer()
		if m := g.Metrics(); m.Pending != 0 || m.Failed != 0 {
			b.Fatalf("after the prune: %+v", m)
		}
		if _, err := os.Stat(filepath.Join(dir, "frameworks", "f0")); err == nil {
			b.Fatal("a framework directory was left")
		}
		b.ReportMetric(float64(el.Nanoseconds())/n, "ns/sandbox")
		b.ReportMetric(float64(n)/el.Seconds(), "sandboxes/s")
		_ = removed
		b.StartTimer()
	}
}
