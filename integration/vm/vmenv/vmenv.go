// Package vmenv tells a test whether it runs in one of Corral's test VMs
// (the VM tier, integration/vm) and in which cgroup mode, so a test that
// only makes sense there — systemd as PID 1, cgroup v2 controllers, scopes
// and slices — can skip with a reason everywhere else.
//
// The guests set CORRAL_VM_MODE to "v2" (unified cgroup hierarchy) or "v1"
// (hybrid), and CORRAL_VM to "qemu" (make vm-test) or "vagrant" (the
// Vagrantfile's boxes). Any package's tests can use it; the VM tier runs by
// default the packages of vm.DefaultPatterns (launcher, isolators, agent,
// integration/e2e and guestcheck), CORRAL_VM_PKGS chooses others.
package vmenv

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// Modes of the VM tier's matrix.
const (
	V2 = "v2" // cgroup v2, systemd.unified_cgroup_hierarchy=1
	V1 = "v1" // cgroup v1 hybrid, systemd.unified_cgroup_hierarchy=0
)

// Mode returns the cgroup mode of the test VM this process runs in, or ""
// outside the VM tier.
func Mode() string { return os.Getenv("CORRAL_VM_MODE") }

// Kind returns "qemu" (make vm-test), "vagrant", or "" outside the VM tier.
func Kind() string { return os.Getenv("CORRAL_VM") }

// Require skips the test unless it runs in a test VM and, when modes are
// given, in one of them.
func Require(tb testing.TB, modes ...string) {
	tb.Helper()
	m := Mode()
	if m == "" {
		tb.Skip("needs a Corral test VM (make vm-test sets CORRAL_VM_MODE)")
	}
	if len(modes) > 0 && !slices.Contains(modes, m) {
		tb.Skipf("needs cgroup mode %s; this VM is %s", strings.Join(modes, " or "), m)
	}
}
