package testsupport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/corral/corral/launcher/systemd"
)

// CgroupsRoot returns a --cgroups_root for an agent started by a test (named
// by prefix, so it never touches a real agent's "corral") and registers a
// cleanup that removes it, by then empty, from every hierarchy: the linux
// launcher's and the v1 isolators'. Register it before starting the agent so
// that the removal runs after the agent has stopped.
func CgroupsRoot(tb testing.TB, prefix string) string {
	tb.Helper()
	root := prefix + "root"
	tb.Cleanup(func() { RemoveCgroupsRoot(tb, root) })
	return root
}

// RemoveCgroupsRoot removes root below /sys/fs/cgroup and below each mounted
// hierarchy there. What is absent is fine; so is EROFS, which systemd's
// read-only /sys/fs/cgroup on hybrid hosts gives for a root that was never
// made there.
func RemoveCgroupsRoot(tb testing.TB, root string) {
	tb.Helper()
	stopContainersScope(tb, root)
	const base = "/sys/fs/cgroup"
	dirs := []string{filepath.Join(base, root)}
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		dirs = append(dirs, filepath.Join(base, e.Name(), root))
	}
	for _, d := range dirs {
		err := syscall.Rmdir(d)
		if err != nil && !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ENOTDIR) && !errors.Is(err, syscall.EROFS) {
			tb.Errorf("removing %s: %v", d, err)
		}
	}
}

// stopContainersScope stops the systemd scope that an agent with this
// cgroups root made for its containers (launcher/systemd; only where systemd
// is PID 1). The scope outlives agents by design, so a test stops it; a
// process in it other than its keeper is a leaked container, reported
// before the stop kills it.
func stopContainersScope(tb testing.TB, root string) {
	tb.Helper()
	if !systemd.Booted() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	unit := systemd.UnitName(root)
	pids, err := systemd.Processes(ctx, unit)
	if err != nil {
		tb.Errorf("listing the processes of scope %s: %v", unit, err)
	}
	for _, pid := range pids {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := bytes.Split(bytes.TrimRight(cmdline, "\x00"), []byte{0})
		if len(args) == 3 && string(args[1]) == systemd.KeeperArg {
			continue
		}
		tb.Errorf("test left process %d (%s) in scope %s", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}), unit)
	}
	if err := systemd.Stop(ctx, unit); err != nil {
		tb.Errorf("stopping scope %s: %v", unit, err)
	}
}
