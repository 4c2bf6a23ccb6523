// Package testsupport builds Corral's binaries for tests and checks that a
// test left nothing behind.
package testsupport

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// BinDir returns a folder holding the corral and corral-init binaries. With
// CORRAL_BIN_DIR set (the VM tier, which has no Go toolchain) it is used as
// is; otherwise the binaries are built once per test process.
func BinDir(tb testing.TB) string {
	tb.Helper()
	if d := os.Getenv("CORRAL_BIN_DIR"); d != "" {
		return d
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "corral-testbin-")
		if buildErr != nil {
			return
		}
		root := moduleRoot()
		cmd := exec.Command("go", "build", "-o", binDir+"/", "./cmd/corral", "./cmd/corral-init")
		cmd.Dir = root
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out.String())
		}
	})
	if buildErr != nil {
		tb.Fatalf("building binaries: %v", buildErr)
	}
	return binDir
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// RequireRoot skips a test that needs root, saying so.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root (real cgroups, namespaces or mounts)")
	}
}

// Prefix returns a container-ID prefix unique to this test; everything the
// test makes carries it, so CheckLeaks can find what was left.
func Prefix(tb testing.TB) string {
	tb.Helper()
	return fmt.Sprintf("corraltest-%d-%d-", os.Getpid(), time.Now().UnixNano()%1e9)
}

// CheckLeaks registers a cleanup that fails the test if any process,
// cgroup, mount, network namespace or link named by prefix is still there
// after the test's own cleanups ran. Processes are found by prefix in their
// command line or environment (sandbox paths hold the container ID).
func CheckLeaks(tb testing.TB, prefix string) {
	tb.Helper()
	tb.Cleanup(func() {
		var leaks []string
		// Processes may take a moment to be reaped after a destroy.
		deadline := time.Now().Add(3 * time.Second)
		for {
			leaks = Leaks(prefix)
			if len(leaks) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if len(leaks) > 0 {
			tb.Errorf("test left behind (prefix %s):\n  %s", prefix, strings.Join(leaks, "\n  "))
		}
	})
}

// Leaks lists what carries prefix on this machine.
func Leaks(prefix string) []string {
	var out []string
	self := fmt.Sprint(os.Getpid())
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if p.Name() == self || p.Name()[0] < '0' || p.Name()[0] > '9' {
			continue
		}
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile(filepath.Join("/proc", p.Name(), f))
			if err == nil && bytes.Contains(b, []byte(prefix)) {
				out = append(out, fmt.Sprintf("process %s: %s", p.Name(), strings.ReplaceAll(string(b[:min(len(b), 120)]), "\x00", " ")))
				break
			}
		}
	}
	_ = filepath.WalkDir("/sys/fs/cgroup", func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if strings.Contains(d.Name(), prefix) {
			out = append(out, "cgroup "+path)
			return filepath.SkipDir
		}
		return nil
	})
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, prefix) {
				out = append(out, "mount "+line)
			}
		}
	}
	if ns, err := os.ReadDir("/run/netns"); err == nil {
		for _, n := range ns {
			if strings.Contains(n.Name(), prefix) {
				out = append(out, "netns "+n.Name())
			}
		}
	}
	if links, err := os.ReadDir("/sys/class/net"); err == nil {
		for _, l := range links {
			if strings.Contains(l.Name(), prefix) {
				out = append(out, "link "+l.Name())
			}
		}
	}
	return out
}
