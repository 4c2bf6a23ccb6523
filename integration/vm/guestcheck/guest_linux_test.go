package guestcheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/corral/corral/integration/vm/vmenv"
)

func TestGuestSystemdIsPID1(t *testing.T) {
	vmenv.Require(t)
	comm, err := os.ReadFile("/proc/1/comm")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(comm)); got != "systemd" {
		t.Fatalf("PID 1 is %q, want systemd", got)
	}
	// The runner starts after multi-user.target as a Type=exec unit, so the
	// boot is over: "running", or "degraded" with the failed units named.
	out, _ := exec.Command("systemctl", "is-system-running").Output()
	if state := strings.TrimSpace(string(out)); state != "running" {
		failed, _ := exec.Command("systemctl", "--failed", "--no-legend", "--plain").CombinedOutput()
		t.Fatalf("systemctl is-system-running = %q; failed units:\n%s", state, failed)
	}
}

func TestGuestCgroupMode(t *testing.T) {
	vmenv.Require(t)
	var st syscall.Statfs_t
	if err := syscall.Statfs("/sys/fs/cgroup", &st); err != nil {
		t.Fatal(err)
	}
	const cgroup2Magic, tmpfsMagic = 0x63677270, 0x01021994
	switch vmenv.Mode() {
	case vmenv.V2:
		if st.Type != cgroup2Magic {
			t.Fatalf("/sys/fs/cgroup has fs type %#x, want cgroup2", st.Type)
		}
		b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
		if err != nil {
			t.Fatal(err)
		}
		have := strings.Fields(string(b))
		for _, c := range []string{"cpu", "memory", "pids", "io"} {
			if !slices.Contains(have, c) {
				t.Errorf("controller %s not available at the root (have %v)", c, have)
			}
		}
	case vmenv.V1:
		if st.Type != tmpfsMagic {
			t.Fatalf("/sys/fs/cgroup has fs type %#x, want tmpfs (v1 hierarchies)", st.Type)
		}
		for _, c := range []string{"memory", "cpu,cpuacct", "pids", "freezer", "systemd", "unified"} {
			if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", c)); err != nil {
				t.Errorf("hybrid hierarchy lacks %s: %v", c, err)
			}
		}
	default:
		t.Fatalf("unknown CORRAL_VM_MODE %q", vmenv.Mode())
	}
}

func TestGuestBinDir(t *testing.T) {
	vmenv.Require(t)
	dir := os.Getenv("CORRAL_BIN_DIR")
	if dir == "" {
		t.Fatal("CORRAL_BIN_DIR is not set")
	}
	for _, b := range []string{"corral", "corral-init"} {
		fi, err := os.Stat(filepath.Join(dir, b))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&0o111 == 0 {
			t.Errorf("%s is not executable", b)
		}
	}
	if os.Geteuid() != 0 {
		t.Errorf("tests run as uid %d in the guest, want root", os.Geteuid())
	}
}
