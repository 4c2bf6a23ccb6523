//go:build linux

package testsupport

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Full-disk tests: a work_dir on a small loop-mounted ext4 that a file has
// filled to its last block, as a task writing its sandbox full would.

// LoopExt4 makes an ext4 of sizeMB (4 KiB blocks, nothing reserved for
// root: full means full for the agent too) on an image in the test's
// temporary directory, mounts it at a directory named by prefix (so
// CheckLeaks finds a mount left behind) and registers its
// unmount and the loop device's detach as cleanups, which run even when
// the test fails.
func LoopExt4(t testing.TB, prefix string, sizeMB int) string {
	t.Helper()
	RequireRoot(t)
	for _, tool := range []string{"mkfs.ext4", "losetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (e2fsprogs, util-linux)", tool)
		}
	}
	tmp := t.TempDir()
	img := filepath.Join(tmp, "ext4.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, int64(sizeMB)<<20); err != nil {
		t.Fatal(err)
	}
	runTool(t, "mkfs.ext4", "-q", "-F", "-b", "4096", "-m", "0", img)
	dev := strings.TrimSpace(runTool(t, "losetup", "--find", "--show", img))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
		for i := 0; i < 100; i++ {
			if out, _ := exec.Command("losetup", "-j", img).Output(); len(bytes.TrimSpace(out)) == 0 {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Errorf("loop device %s still attached", dev)
	})
	mnt := filepath.Join(tmp, prefix+"ext4")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(dev, mnt, "ext4", 0, ""); err != nil {
		t.Fatalf("mount %s on %s: %v", dev, mnt, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("umount %s: %v", mnt, err)
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	return mnt
}

func runTool(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// FillDisk writes path until the file system has no block left for anyone
// (statfs' f_bavail is 0 and a new 4 KiB file cannot be written), as a task
// writing its sandbox full would. It returns the file's size.
func FillDisk(t testing.TB, path string) int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := bytes.Repeat([]byte{0xa5}, 1<<20)
	// ext4 gives blocks back after a flush (delayed-allocation reservations,
	// journal commits), and under emulation that can land after the writes
	// have stopped: rounds of writing and flushing until statfs agrees.
	for round := 0; ; round++ {
		for _, chunk := range []int{1 << 20, 64 << 10, 4 << 10, 512} {
			for {
				n, err := f.Write(buf[:chunk])
				if err != nil && !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				if n == 0 {
					if err := f.Sync(); err != nil && !errors.Is(err, syscall.ENOSPC) {
						t.Fatal(err)
					}
					if n, _ = f.Write(buf[:chunk]); n == 0 {
						break
					}
				}
			}
		}
		if err := f.Sync(); err != nil && !errors.Is(err, syscall.ENOSPC) {
			t.Fatal(err)
		}
		// The last free blocks may be out of the file's reach (growing
		// it needs an extent block as well) yet fit a small new file, as
		// a task's next file would: taken by files of their own.
		for i := 0; fillExtra(t, fmt.Sprintf("%s.%d.%d", path, round, i)); i++ {
		}
		unix.Sync()
		var st unix.Statfs_t
		if err := unix.Statfs(filepath.Dir(path), &st); err != nil {
			t.Fatal(err)
		}
		if st.Bavail == 0 {
			break
		}
		if round == 50 {
			t.Fatalf("%s: %d blocks still available after %d rounds of filling", filepath.Dir(path), st.Bavail, round)
		}
		time.Sleep(100 * time.Millisecond)
	}
	RequireFull(t, filepath.Dir(path))
	fi, _ := f.Stat()
	return fi.Size()
}

// fillExtra writes one 4 KiB file at path; it reports whether it took
// room, and leaves no empty file behind.
func fillExtra(t testing.TB, path string) bool {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, syscall.ENOSPC) {
		return false // not even an inode
	}
	if err != nil {
		t.Fatal(err)
	}
	n, werr := f.Write(bytes.Repeat([]byte{0xa5}, 4096))
	serr := f.Sync()
	f.Close()
	for _, err := range []error{werr, serr} {
		if err != nil && !errors.Is(err, syscall.ENOSPC) {
			t.Fatal(err)
		}
	}
	if n == 0 {
		os.Remove(path)
		return false
	}
	return true
}

// RequireFull fails the test unless the file system of dir has no space
// left: nothing free for the agent and no room for a new 4 KiB file.
func RequireFull(t testing.TB, dir string) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Bavail != 0 {
		t.Fatalf("%s is not full: %d blocks available", dir, st.Bavail)
	}
	probe := filepath.Join(dir, "probe")
	err := os.WriteFile(probe, bytes.Repeat([]byte{1}, 4096), 0o600)
	if err == nil {
		f, _ := os.Open(probe)
		err = f.Sync()
		f.Close()
	}
	os.Remove(probe)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("%s is not full: writing a 4 KiB file: %v", dir, err)
	}
}
