package disk

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral/corral/internal/testsupport"
)

func init() {
	// The isolators log every measurement error and limitation; tests
	// read the results instead.
	if os.Getenv("CORRAL_TEST_LOG") == "" {
		slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	}
}

// loopFS makes a file system of kind ("xfs" or "ext4") on an image file in
// the test's temporary directory, attaches it to a loop device and mounts
// it at a directory named by prefix (so CheckLeaks finds it if it stays),
// with project quotas when quota is set. Unmounting and detaching the loop
// device are registered as cleanups. A missing mkfs, or a kernel whose
// file system lacks quota support, skips the test, saying which.
func loopFS(t testing.TB, kind, prefix string, quota bool) string {
	t.Helper()
	return loopFSFor(t, kind, prefix, quota, 0)
}

// loopFSFor is loopFS with room for at least files small files.
func loopFSFor(t testing.TB, kind, prefix string, quota bool, files int) string {
	t.Helper()
	testsupport.RequireRoot(t)
	mkfs := "mkfs." + kind
	if _, err := exec.LookPath(mkfs); err != nil {
		pkg := map[string]string{"xfs": "xfsprogs", "ext4": "e2fsprogs"}[kind]
		t.Skipf("%s is not installed (apt-get install %s)", mkfs, pkg)
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("losetup is not installed (util-linux)")
	}
	tmp := t.TempDir()
	img := filepath.Join(tmp, kind+".img")
	// XFS refuses file systems under 300 MB; the image is sparse.
	size := int64(320 << 20)
	if kind == "ext4" {
		size = 256 << 20
	}
	size = max(size, int64(files)*5<<10+256<<20)
	inodes := max(400000, files+files/100+1000)
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	args := []string{"-q", "-f", img}
	if kind == "ext4" {
		// -N leaves room for the benchmarks' files. Project quotas need
		// the quota and project features and room in the inode for the
		// project ID.
		args = []string{"-q", "-F", "-N", strconv.Itoa(inodes), img}
		if quota {
			args = append([]string{"-O", "quota,project", "-I", "256"}, args...)
		}
	}
	sh(t, mkfs, args...)
	dev := strings.TrimSpace(sh(t, "losetup", "--find", "--show", img))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
		// A device still open (udev probing it) is detached when closed.
		var out []byte
		for i := 0; i < 100; i++ {
			if out, _ = exec.Command("losetup", "-j", img).Output(); len(bytes.TrimSpace(out)) == 0 {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Errorf("loop device still attached: %s", out)
	})
	mnt := filepath.Join(tmp, prefix+kind)
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	data := ""
	if quota {
		data = "prjquota"
	}
	if err := unix.Mount(dev, mnt, kind, 0, data); err != nil {
		if quota {
			// XFS mounts without the option on a kernel without
			// CONFIG_XFS_QUOTA; ext4 made with the quota feature does not
			// mount at all without CONFIG_QFMT_V2.
			if kind == "xfs" && unix.Mount(dev, mnt, kind, 0, "") == nil {
				_ = unix.Unmount(mnt, 0)
			} else if kind == "xfs" {
				t.Fatalf("mount %s (%s) on %s: %v", dev, kind, mnt, err)
			}
			cfg := map[string]string{"xfs": "CONFIG_XFS_QUOTA", "ext4": "CONFIG_QUOTA and CONFIG_QFMT_V2"}[kind]
			t.Skipf("this kernel (%s) has no %s project quotas (%s): mount -o prjquota: %v; the VM tier (Debian kernel) runs this test", kernel(), kind, cfg, err)
		}
		t.Fatalf("mount %s (%s) on %s: %v", dev, kind, mnt, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("umount %s: %v", mnt, err)
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	return mnt
}

func kernel() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

func sh(t testing.TB, name string, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// writeFile writes n bytes of non-zero data (real blocks, not a sparse
// hole) and syncs, so both du and the quota see them. It returns the
// first error: EDQUOT may come at write or at fsync.
func writeFile(path string, n int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	buf := bytes.Repeat([]byte{'x'}, 64<<10)
	for n > 0 {
		k := min(n, len(buf))
		if _, err := f.Write(buf[:k]); err != nil {
			f.Close()
			return err
		}
		n -= k
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeAsTask writes as a task does: without CAP_SYS_RESOURCE, which lets
// a process past quota hard limits on ext4 (the VFS quota layer exempts
// it; XFS does not). Capabilities are per thread: the write runs on a
// locked thread that drops it and is discarded afterwards (the goroutine
// ends locked).
func writeAsTask(path string, n int) error {
	res := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			res <- err
			return
		}
		data[unix.CAP_SYS_RESOURCE/32].Effective &^= 1 << (unix.CAP_SYS_RESOURCE % 32)
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			res <- err
			return
		}
		res <- writeFile(path, n)
	}()
	return <-res
}

// overQuota is the error a write past a project's hard limit gets: XFS
// answers ENOSPC for project quotas (a project is a directory tree that
// looks like a smaller file system), ext4 EDQUOT.
func overQuota(kind string) error {
	if kind == "xfs" {
		return unix.ENOSPC
	}
	return unix.EDQUOT
}
