package posix_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/corral/corral/container"
	"github.com/corral/corral/container/containerizer"
	"github.com/corral/corral/internal/testsupport"
	"github.com/corral/corral/launcher/posix"

	_ "github.com/corral/corral/isolators/posix"
)

// Each container's usage is its own session's, even when one /proc walk
// serves all of them: a busy container with a memory hog and a tree of
// processes, next to an idle one.
func TestUsageBySession(t *testing.T) {
	testsupport.RequireRoot(t)
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	var isos []container.Isolator
	for _, name := range []string{"posix/cpu", "posix/mem"} {
		iso, err := container.NewIsolator(name, container.Options{})
		if err != nil {
			t.Fatal(err)
		}
		isos = append(isos, iso)
	}
	c, err := containerizer.New(posix.New(), isos, filepath.Join(testsupport.BinDir(t), "corral-init"), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	launch := func(name, script string) string {
		id := prefix + name
		box := filepath.Join(t.TempDir(), id)
		if err := os.Mkdir(box, 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := &container.Config{ID: id, Sandbox: box, Argv: []string{"/bin/sh", "-c", script}, Env: []string{"MARKER=" + id}}
		if err := c.Launch(context.Background(), cfg); err != nil {
			t.Fatalf("launch %s: %v", id, err)
		}
		t.Cleanup(func() { _, _ = c.Destroy(context.Background(), id) })
		return id
	}
	// 64 MiB held by tail (a newline-free input is kept whole, and the
	// reader that never reads keeps tail from finishing), a spinning shell
	// and a sleep, with the container's init.
	busy := launch("busy", "head -c 64M /dev/zero | tail | sleep 1000 & while :; do :; done & exec sleep 1000")
	idle := launch("idle", "exec sleep 1000")

	deadline := time.Now().Add(30 * time.Second)
	var b, i *container.Usage
	for {
		if b, err = c.Usage(context.Background(), busy); err != nil {
			t.Fatal(err)
		}
		if i, err = c.Usage(context.Background(), idle); err != nil {
			t.Fatal(err)
		}
		if b.CPUsUserTimeSecs+b.CPUsSystemTimeSecs >= 2 && b.MemRSSBytes >= 64<<20 && b.Processes >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("busy container's usage after 30s: cpu %.2fs+%.2fs, rss %d, %d processes; want ≥2s of CPU, ≥64 MiB, ≥4 processes",
				b.CPUsUserTimeSecs, b.CPUsSystemTimeSecs, b.MemRSSBytes, b.Processes)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The idle one's own start costs some CPU (much more under emulation
	// in the VM tier), never the busy one's spinning.
	if busyCPU, idleCPU := b.CPUsUserTimeSecs+b.CPUsSystemTimeSecs, i.CPUsUserTimeSecs+i.CPUsSystemTimeSecs; i.Processes < 1 || i.Processes > 2 ||
		i.MemRSSBytes >= 32<<20 || idleCPU >= busyCPU/2 {
		t.Errorf("idle container's usage: cpu %.2fs+%.2fs, rss %d, %d processes; want its init and sleep only, small, and far less CPU than the busy one's %.2fs",
			i.CPUsUserTimeSecs, i.CPUsSystemTimeSecs, i.MemRSSBytes, i.Processes, busyCPU)
	}
}

// BenchmarkUsage1000: usage of 1000 containers, as /state reads it, costs
// about one walk of /proc, not one per container.
func BenchmarkUsage1000(b *testing.B) {
	testsupport.RequireRoot(b)
	prefix := testsupport.Prefix(b)
	testsupport.CheckLeaks(b, prefix)
	iso, err := container.NewIsolator("posix/mem", container.Options{})
	if err != nil {
		b.Fatal(err)
	}
	c, err := containerizer.New(posix.New(), []container.Isolator{iso}, filepath.Join(testsupport.BinDir(b), "corral-init"), b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	var ids []string
	for n := range 1000 {
		id := fmt.Sprintf("%sc%04d", prefix, n)
		box := filepath.Join(b.TempDir(), id)
		if err := os.Mkdir(box, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := c.Launch(context.Background(), &container.Config{ID: id, Sandbox: box, Argv: []string{"/bin/sleep", "1000"}, Env: []string{"MARKER=" + id}}); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, id)
	}
	b.Cleanup(func() {
		for _, id := range ids {
			_, _ = c.Destroy(context.Background(), id)
		}
	})
	b.ResetTimer()
	for range b.N {
		for _, id := range ids {
			if _, err := c.Usage(context.Background(), id); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/all-1000")
}
