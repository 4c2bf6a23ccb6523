package gc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// StatfsUsage measures the file system holding path with statfs(2), as
// Mesos' fs::usage: (blocks - free) / blocks, and likewise for inodes (0
// where the file system has no fixed inode count, e.g. btrfs).
func StatfsUsage(path string) (Usage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return Usage{}, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	var u Usage
	if st.Blocks > 0 {
		u.Blocks = float64(st.Blocks-st.Bfree) / float64(st.Blocks)
	}
	if st.Files > 0 {
		u.Inodes = float64(st.Files-st.Ffree) / float64(st.Files)
	}
	return u, nil
}

// unmountBelow detaches every mount at or below one of paths, deepest
// first, and returns how many it detached. The mount table is read once for
// all paths: one read per removal batch, never per launch. MNT_DETACH
// cannot fail on a busy mount, and UMOUNT_NOFOLLOW refuses a symlink in
// the last component, so a task cannot aim the unmount elsewhere.
func unmountBelow(paths []string) (int, error) {
	if len(paths) == 0 {
		return 0, nil
	}
	// The mount table names canonical paths: resolve the symlinks of the
	// (agent-made) parents, never of the scheduled path itself.
	prefixes := make([]string, 0, len(paths))
	for _, p := range paths {
		dir, err := filepath.EvalSymlinks(filepath.Dir(p))
		if err != nil {
			continue // the parent is gone, and whatever was mounted below it
		}
		prefixes = append(prefixes, filepath.Join(dir, filepath.Base(p)))
	}
	mounts, err := mountPoints()
	if err != nil {
		return 0, err
	}
	var targets []string
	for _, mp := range mounts {
		for _, p := range prefixes {
			if mp == p || strings.HasPrefix(mp, p+"/") {
				targets = append(targets, mp)
				break
			}
		}
	}
	// Deepest first; stacked mounts on one point appear once each and are
	// detached in turn.
	sort.SliceStable(targets, func(i, j int) bool {
		return strings.Count(targets[i], "/") > strings.Count(targets[j], "/")
	})
	n := 0
	var errs []error
	for _, mp := range targets {
		err := unix.Unmount(mp, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		switch {
		case err == nil:
			n++
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			// Already gone (with a parent mount, or by someone else).
		default:
			errs = append(errs, &os.PathError{Op: "umount", Path: mp, Err: err})
		}
	}
	return n, errors.Join(errs...)
}

// mountPoints lists the mount points of this mount namespace.
func mountPoints() ([]string, error) {
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, fmt.Errorf("reading mount table: %w", err)
	}
	out := make([]string, 0, len(mounts))
	for _, m := range mounts {
		out = append(out, m.Mountpoint)
	}
	return out, nil
}

// removeTree removes path and everything below it and returns the bytes
// freed. It works from directory file descriptors (openat/unlinkat with
// O_NOFOLLOW), so a symlink is removed, never followed, and it checks each
// entry's mount ID against its directory's, so a mount still in place
// (unmountBelow failed, or one appeared) fails the removal instead of
// emptying the mounted file system. A path already gone is removed.
//
// Each level of the tree holds one descriptor while its children are
// removed; Go raises the soft RLIMIT_NOFILE to the hard limit at start, so
// only trees deeper than that (hostile ones) fail, and are retried and
// counted like any failure.
func removeTree(path string) (uint64, error) {
	parent, err := unix.Open(filepath.Dir(path), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return 0, nil
		}
		return 0, &os.PathError{Op: "open", Path: filepath.Dir(path), Err: err}
	}
	defer unix.Close(parent)
	var pst unix.Statx_t
	if err := unix.Statx(parent, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &pst); err != nil {
		return 0, &os.PathError{Op: "statx", Path: filepath.Dir(path), Err: err}
	}
	r := remover{}
	err = r.remove(parent, filepath.Dir(path), filepath.Base(path), mountID(&pst))
	if errors.Is(err, unix.ENOENT) || errors.Is(err, errChildFailed) {
		err = nil
	}
	if err != nil {
		r.errs = append(r.errs, err)
	}
	return r.freed, errors.Join(r.errs...)
}

// errChildFailed is returned for a directory left because something below
// it could not be removed; that error is recorded, this one is not.
var errChildFailed = errors.New("not empty")

type remover struct {
	freed uint64
	errs  []error
}

// maxErrs bounds the errors kept from one removal: a tree of a million
// immutable files says it after a few.
const maxErrs = 8

func (r *remover) fail(err error) {
	if len(r.errs) < maxErrs {
		r.errs = append(r.errs, err)
	}
}

// mountID identifies the mount an inode was reached through; without
// STATX_MNT_ID (Linux < 5.8) the device number stands in, which catches
// mounts of other file systems but not bind mounts of the same one — those
// unmountBelow has already detached.
func mountID(st *unix.Statx_t) uint64 {
	if st.Mask&unix.STATX_MNT_ID != 0 {
		return st.Mnt_id
	}
	return uint64(st.Dev_major)<<32 | uint64(st.Dev_minor)
}

// remove removes name in dir (dirPath names dir in errors). mnt is the
// mount ID dir was reached through.
func (r *remover) remove(dir int, dirPath, name string, mnt uint64) error {
	path := dirPath + "/" + name
	var st unix.Statx_t
	// The mount ID of a mount point is that of the mount on it: AT_SYMLINK_
	// NOFOLLOW stops at symlinks, not at mounts.
	if err := unix.Statx(dir, name, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE|unix.STATX_NLINK|unix.STATX_BLOCKS|unix.STATX_MNT_ID, &st); err != nil {
		return &os.PathError{Op: "statx", Path: path, Err: err}
	}
	if mountID(&st) != mnt {
		return &os.PathError{Op: "remove", Path: path, Err: errors.New("a mount is still in place here; not crossing into it")}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(dir, name, 0); err != nil {
			return &os.PathError{Op: "unlink", Path: path, Err: err}
		}
		if st.Nlink <= 1 {
			r.freed += st.Blocks * 512
		}
		return nil
	}
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	// The directory opened must be the one just checked: same mount.
	var dst unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &dst); err != nil {
		return &os.PathError{Op: "statx", Path: path, Err: err}
	}
	if mountID(&dst) != mnt {
		return &os.PathError{Op: "remove", Path: path, Err: errors.New("a mount is still in place here; not crossing into it")}
	}
	failed := false
	for {
		// Entries are read in batches and removed as they come: removing
		// entries already returned does not disturb the directory stream,
		// and a huge directory is never held in memory whole.
		names, rerr := f.Readdirnames(1024)
		for _, n := range names {
			err := r.remove(fd, path, n, mnt)
			switch {
			case err == nil, errors.Is(err, unix.ENOENT):
			case errors.Is(err, errChildFailed):
				failed = true
			default:
				r.fail(err)
				failed = true
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("reading %s: %w", path, rerr)
		}
	}
	if failed {
		// Its children said why; the directory cannot go.
		return errChildFailed
	}
	if err := unix.Unlinkat(dir, name, unix.AT_REMOVEDIR); err != nil {
		return &os.PathError{Op: "rmdir", Path: path, Err: err}
	}
	r.freed += st.Blocks * 512
	return nil
}
