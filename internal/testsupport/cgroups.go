package testsupport

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
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
