package cgroupfs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestCleanRoot(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{"", DefaultRoot, false},
		{"corral", "corral", false},
		{"/corral/", "corral", false},
		{"agents//corral", "agents/corral", false},
		{"corral.slice/corral-executors.slice/corral.scope/corral", "corral.slice/corral-executors.slice/corral.scope/corral", false},
		{"a..b", "a..b", false},
		{"/", "", true},
		{"..", "", true},
		{"../corral", "", true},
		{"a/../../b", "", true},
		{"a/..", "", true},
	}
	for _, tc := range tests {
		got, err := CleanRoot(tc.in)
		if tc.bad {
			if err == nil || !strings.Contains(err.Error(), "invalid cgroups root") {
				t.Errorf("CleanRoot(%q) = %q, %v; want an error", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("CleanRoot(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	if d := Backoff(0, time.Millisecond, time.Second); d != time.Millisecond {
		t.Errorf("attempt 0: %v", d)
	}
	if d := Backoff(3, time.Millisecond, time.Second); d != 8*time.Millisecond {
		t.Errorf("attempt 3: %v", d)
	}
	if d := Backoff(1000, time.Millisecond, time.Second); d != time.Second {
		t.Errorf("attempt 1000: %v, want the cap", d)
	}
}

// Plain files stand in for kernfs: cgroup.procs parsing, a buffer that has
// to grow, the subtree in parent-first order.
func TestReadPidsAndSubtree(t *testing.T) {
	dir := t.TempDir()
	var want []int
	var b strings.Builder
	for pid := 1; pid <= 400; pid++ { // > 512 bytes: ReadSmall grows its buffer
		want = append(want, pid)
		fmt.Fprintf(&b, "%d\n", pid)
	}
	must(t, os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(b.String()+"junk\n0\n"), 0o644))
	got, err := ReadPids(dir)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("ReadPids = %v, %v", got, err)
	}
	must(t, os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755))
	must(t, os.Mkdir(filepath.Join(dir, "c"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "a", "b", "cgroup.procs"), []byte("7\n"), 0o644))
	sub := Subtree(dir)
	if len(sub) != 4 || sub[0] != dir || sub[3] != filepath.Join(dir, "a", "b") {
		t.Fatalf("Subtree = %v", sub)
	}
	if n := len(TreePids(dir)); n != 401 {
		t.Errorf("TreePids found %d processes, want 401", n)
	}
	if _, err := ReadPids(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Errorf("ReadPids of a missing cgroup: %v, want not-exist", err)
	}
	if s := DescribePids(want[:12]); s != "[1 2 3 4 5 6 7 8 9 10] and 2 more" {
		t.Errorf("DescribePids = %q", s)
	}
}

func TestCgroupOfSelf(t *testing.T) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skip(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		ctrl := ""
		if parts[0] != "0" {
			ctrl = strings.Split(parts[1], ",")[0]
			if ctrl == "" || strings.HasPrefix(ctrl, "name=") {
				continue
			}
		}
		got, ok, err := CgroupOf(os.Getpid(), ctrl)
		if err != nil || !ok || got != parts[2] {
			t.Errorf("CgroupOf(self, %q) = %q, %v, %v; want %q", ctrl, got, ok, err, parts[2])
		}
	}
	if _, ok, err := CgroupOf(os.Getpid(), "no-such-controller"); ok || err != nil {
		t.Errorf("CgroupOf with an unknown controller: %v %v", ok, err)
	}
}

// hierarchies where the kill and removal can run for real: the v1
// freezer hierarchy and a cgroup2 mount (unified, or hybrid's
// /sys/fs/cgroup/unified, which kills and freezes like any other).
func hierarchies(t *testing.T) map[string]string {
	if os.Geteuid() != 0 {
		t.Skip("needs root (real cgroups)")
	}
	out := map[string]string{}
	if _, v1, _ := FSType(filepath.Join(DefaultMount, "freezer")); v1 {
		out["v1"] = filepath.Join(DefaultMount, "freezer")
	}
	for _, p := range []string{DefaultMount, filepath.Join(DefaultMount, "unified")} {
		if v2, _, _ := FSType(p); v2 {
			out["v2"] = p
			break
		}
	}
	return out
}

func prefix() string {
	return fmt.Sprintf("corraltest-%d-%d-", os.Getpid(), time.Now().UnixNano()%1e9)
}

// startIn starts a sleep and moves it into dir; it is reaped in the
// background.
func startIn(t *testing.T, dir string) int {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait() }()
	if err := WriteFile(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(cmd.Process.Pid)); err != nil {
		_ = cmd.Process.Kill()
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// Kill ends every process of a cgroup and of the cgroups below it, and
// RemoveTree then removes them, children first.
func TestKillAndRemove(t *testing.T) {
	for mode, hier := range hierarchies(t) {
		t.Run(mode, func(t *testing.T) {
			v2 := mode == "v2"
			dir := filepath.Join(hier, prefix()+"kill")
			must(t, os.MkdirAll(filepath.Join(dir, "child", "grandchild"), 0o755))
			t.Cleanup(func() { _ = RemoveTree(context.Background(), dir, RemoveOptions{Timeout: time.Second, KillBusy: true}) })
			pids := []int{startIn(t, dir), startIn(t, filepath.Join(dir, "child")), startIn(t, filepath.Join(dir, "child", "grandchild"))}
			if n := len(TreePids(dir)); n != 3 {
				t.Fatalf("%d processes in the tree, want 3", n)
			}
			if err := Kill(context.Background(), dir, v2, v2 && HasKill(dir)); err != nil {
				t.Fatal(err)
			}
			if left := TreePids(dir); len(left) != 0 {
				t.Fatalf("after Kill the tree still holds %v", left)
			}
			waitGone(t, pids)
			if err := RemoveTree(context.Background(), dir, RemoveOptions{Timeout: time.Second}); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Fatalf("%s still there: %v", dir, err)
			}
			// Absent: neither is an error.
			if err := Kill(context.Background(), dir, v2, false); err != nil {
				t.Errorf("Kill of a removed cgroup: %v", err)
			}
			if err := RemoveTree(context.Background(), dir, RemoveOptions{Timeout: time.Second}); err != nil {
				t.Errorf("RemoveTree of a removed cgroup: %v", err)
			}
		})
	}
}

// v2 without cgroup.kill (kernels before 5.14): freeze, kill, thaw.
func TestKillV2Fallback(t *testing.T) {
	hier, ok := hierarchies(t)["v2"]
	if !ok {
		t.Skip("no cgroup2 mount")
	}
	dir := filepath.Join(hier, prefix()+"fallback")
	must(t, os.Mkdir(dir, 0o755))
	t.Cleanup(func() { _ = RemoveTree(context.Background(), dir, RemoveOptions{Timeout: time.Second, KillBusy: true}) })
	pids := []int{startIn(t, dir), startIn(t, dir)}
	if err := Kill(context.Background(), dir, true, false); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pids)
	if b, _ := os.ReadFile(filepath.Join(dir, "cgroup.freeze")); strings.TrimSpace(string(b)) != "0" {
		t.Errorf("cgroup.freeze = %q after the kill, want thawed", b)
	}
}

// RemoveTree with KillBusy kills what is still in the cgroup (an orphan in
// a hierarchy without a freezer) and removes it.
func TestRemoveKillsBusy(t *testing.T) {
	h, err := ReadHost()
	if err != nil {
		t.Skip(err)
	}
	var hier string
	for mode, dir := range hierarchies(t) {
		if mode == "v2" {
			hier = dir
		}
	}
	if m, ok := h.V1["pids"]; ok {
		hier = m
	}
	if hier == "" {
		t.Skip("no hierarchy")
	}
	dir := filepath.Join(hier, prefix()+"busy")
	must(t, os.MkdirAll(filepath.Join(dir, "nested"), 0o755))
	pids := []int{startIn(t, dir), startIn(t, filepath.Join(dir, "nested"))}
	t.Cleanup(func() {
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	})
	// Without KillBusy a busy cgroup is an error once the timeout is spent.
	err = RemoveTree(context.Background(), dir, RemoveOptions{Timeout: 20 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "still busy") {
		t.Fatalf("RemoveTree of a busy cgroup: %v, want still busy", err)
	}
	if err := RemoveTree(context.Background(), dir, RemoveOptions{Timeout: 5 * time.Second, KillBusy: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s still there: %v", dir, err)
	}
	waitGone(t, pids)
}

// Thaw unfreezes a frozen cgroup and leaves a thawed one alone.
func TestThaw(t *testing.T) {
	for mode, hier := range hierarchies(t) {
		t.Run(mode, func(t *testing.T) {
			v2 := mode == "v2"
			dir := filepath.Join(hier, prefix()+"thaw")
			must(t, os.Mkdir(dir, 0o755))
			t.Cleanup(func() { _ = RemoveTree(context.Background(), dir, RemoveOptions{Timeout: time.Second, KillBusy: true}) })
			file, frozen, thawed := "freezer.state", "FROZEN", "THAWED"
			if v2 {
				file, frozen, thawed = "cgroup.freeze", "1", "0"
			}
			pid := startIn(t, dir)
			must(t, WriteFile(filepath.Join(dir, file), frozen))
			if err := Thaw(dir, v2); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, file)); strings.TrimSpace(string(b)) != thawed {
				t.Errorf("%s = %q after Thaw", file, b)
			}
			if err := Thaw(dir, v2); err != nil {
				t.Errorf("Thaw of a thawed cgroup: %v", err)
			}
			if err := Kill(context.Background(), dir, v2, v2 && HasKill(dir)); err != nil {
				t.Fatal(err)
			}
			waitGone(t, []int{pid})
			if err := Thaw(filepath.Join(dir, "missing"), v2); err != nil {
				t.Errorf("Thaw of a missing cgroup: %v", err)
			}
		})
	}
}

func waitGone(t *testing.T, pids []int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range pids {
		for alive(p) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d still alive", p)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
