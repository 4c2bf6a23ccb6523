// Package librarybench measures containerd/cgroups/v3 against cgroupfs on
// a real kernel, as root: the figures in ../../doc.go. It is a module of
// its own so that the library's cgroup1/cgroup2 packages (and their
// cilium/ebpf, logrus and runtime-spec dependencies) stay out of Corral's.
//
//	cd container/cgroupfs/testdata/librarybench && go test -bench . -benchtime 300x
package librarybench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"
	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	"github.com/containerd/cgroups/v3/cgroup2"

	"github.com/corral/corral/container/cgroupfs"
)

// v2hier is a cgroup2 mount: hybrid hosts' /sys/fs/cgroup/unified kills
// and removes like a unified one.
const v2hier = "/sys/fs/cgroup/unified"

var prefix = fmt.Sprintf("corraltest-%d-", os.Getpid())

// start makes a cgroup with one sleeping process (CLONE_INTO_CGROUP).
func start(b *testing.B, dir string) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	fd, err := syscall.Open(dir, 0x200000|syscall.O_DIRECTORY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer syscall.Close(fd)
	cmd := exec.Command("sleep", "300")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go cmd.Wait()
}

func BenchmarkDestroyV2(b *testing.B) {
	if v2, _, _ := cgroupfs.FSType(v2hier); !v2 || os.Geteuid() != 0 {
		b.Skip("needs root and a cgroup2 mount at " + v2hier)
	}
	for _, impl := range []string{"cgroupfs", "containerd"} {
		b.Run(impl, func(b *testing.B) {
			var total time.Duration
			fails := 0
			for i := 0; i < b.N; i++ {
				rel := fmt.Sprintf("%s%s-%d", prefix, impl, i)
				dir := filepath.Join(v2hier, rel)
				start(b, dir)
				t0 := time.Now()
				if impl == "cgroupfs" {
					if err := cgroupfs.Kill(context.Background(), dir, true, cgroupfs.HasKill(dir)); err != nil {
						b.Fatal(err)
					}
					if err := cgroupfs.RemoveTree(context.Background(), dir, cgroupfs.RemoveOptions{Timeout: 3 * time.Second}); err != nil {
						b.Fatal(err)
					}
				} else {
					m, err := cgroup2.Load("/"+rel, cgroup2.WithMountpoint(v2hier))
					if err != nil {
						b.Fatal(err)
					}
					if err := m.Kill(); err != nil {
						b.Fatal(err)
					}
					// Kill does not wait for the cgroup to empty: Delete
					// refuses while the killed process is still listed.
					for tries := 0; ; tries++ {
						if err := m.Delete(); err == nil {
							break
						} else if tries == 0 {
							fails++
						}
						if tries > 1000 {
							b.Fatal("not deleted")
						}
						time.Sleep(50 * time.Microsecond)
					}
				}
				total += time.Since(t0)
			}
			b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs/destroy")
			b.ReportMetric(float64(fails)/float64(b.N), "delete-refused/op")
		})
	}
}

func BenchmarkMemStatsV1(b *testing.B) {
	mnt := "/sys/fs/cgroup/memory"
	if _, v1, _ := cgroupfs.FSType(mnt); !v1 || os.Geteuid() != 0 {
		b.Skip("needs root and a cgroup v1 memory hierarchy at " + mnt)
	}
	rel := prefix + "mem"
	dir := filepath.Join(mnt, rel)
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	defer os.Remove(dir)
	b.Run("hand", func(b *testing.B) {
		buf := make([]byte, 4096)
		for i := 0; i < b.N; i++ {
			for _, f := range []string{"memory.usage_in_bytes", "memory.limit_in_bytes", "memory.soft_limit_in_bytes"} {
				s, err := cgroupfs.ReadSmall(filepath.Join(dir, f), buf)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = strconv.ParseUint(string(bytes.TrimSpace(s)), 10, 64)
			}
			s, err := os.ReadFile(filepath.Join(dir, "memory.stat"))
			if err != nil {
				b.Fatal(err)
			}
			m := map[string]uint64{}
			for _, l := range bytes.Split(s, []byte("\n")) {
				k, v, ok := bytes.Cut(l, []byte(" "))
				if ok {
					n, _ := strconv.ParseUint(string(v), 10, 64)
					m[string(k)] = n
				}
			}
		}
	})
	b.Run("containerd", func(b *testing.B) {
		mc := cgroup1.NewMemory("/sys/fs/cgroup", cgroup1.OptionalSwap())
		for i := 0; i < b.N; i++ {
			var m v1.Metrics
			if err := mc.Stat(rel, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
