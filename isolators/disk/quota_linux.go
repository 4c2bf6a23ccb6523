package disk

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Project quotas through quotactl(2)'s XFS interface, which the kernel's
// generic quota layer also serves for ext4 mounted with prjquota, so one
// code path covers both. golang.org/x/sys has neither the constants nor the
// structures; they are the UAPI's (linux/dqblk_xfs.h, linux/fs.h,
// linux/quota.h).

const (
	prjQuota = 2 // PRJQUOTA

	xqmCmd         = 'X' << 8
	qXGetQuota     = xqmCmd + 3 // Q_XGETQUOTA
	qXSetQLim      = xqmCmd + 4 // Q_XSETQLIM
	qXGetQStatV    = xqmCmd + 8 // Q_XGETQSTATV
	qXGetNextQuota = xqmCmd + 9 // Q_XGETNEXTQUOTA
	fsDquotVer     = 1          // FS_DQUOT_VERSION
	fsQStatVVer1   = 1          // FS_QSTATV_VERSION1
	fsProjQuota    = 2          // FS_PROJ_QUOTA (d_flags)
	fsDqISoft      = 1 << 0     // FS_DQ_ISOFT
	fsDqIHard      = 1 << 1     // FS_DQ_IHARD
	fsDqBSoft      = 1 << 2     // FS_DQ_BSOFT
	fsDqBHard      = 1 << 3     // FS_DQ_BHARD
	fsQuotaPAcct   = 0x10       // FS_QUOTA_PDQ_ACCT
	fsQuotaPEnfd   = 0x20       // FS_QUOTA_PDQ_ENFD

	// FS_IOC_FSGETXATTR = _IOR('X', 31, struct fsxattr),
	// FS_IOC_FSSETXATTR = _IOW('X', 32, struct fsxattr).
	fsIocFsGetXattr = 0x801c581f
	fsIocFsSetXattr = 0x401c5820
	// FS_XFLAG_PROJINHERIT: new files and directories take the
	// directory's project ID.
	fsXflagProjInherit = 0x200

	// basicBlock is the unit of fs_disk_quota's block counts.
	basicBlock = 512
)

// fsDiskQuota is struct fs_disk_quota (112 bytes).
type fsDiskQuota struct {
	Version      int8
	Flags        int8
	FieldMask    uint16
	ID           uint32
	BlkHardLimit uint64
	BlkSoftLimit uint64
	InoHardLimit uint64
	InoSoftLimit uint64
	BCount       uint64
	ICount       uint64
	ITimer       int32
	BTimer       int32
	IWarns       uint16
	BWarns       uint16
	ITimerHi     int8
	BTimerHi     int8
	RtbTimerHi   int8
	Padding2     int8
	RtbHardLimit uint64
	RtbSoftLimit uint64
	RtbCount     uint64
	RtbTimer     int32
	RtbWarns     uint16
	Padding3     int16
	Padding4     [8]byte
}

// fsQuotaStatV is struct fs_quota_statv (160 bytes); only the flags are
// read.
type fsQuotaStatV struct {
	Version int8
	Pad1    uint8
	Flags   uint16
	Incore  uint32
	Rest    [152]byte
}

// fsxattr is struct fsxattr (28 bytes).
type fsxattr struct {
	XFlags     uint32
	ExtSize    uint32
	NExtents   uint32
	ProjID     uint32
	CowExtSize uint32
	Pad        [8]byte
}

func qcmd(cmd, typ int) int { return cmd<<8 | typ&0xff }

// quotaFS is one file system with project quotas, reached by an open
// descriptor of a directory on it (quotactl_fd(2), Linux 5.14) or, on older
// kernels, by its block device (quotactl(2)).
type quotaFS struct {
	dir *os.File
	dev string // block device, for quotactl(2)
	// fd: quotactl_fd works here.
	fd bool
}

var errNoProjectQuota = errors.New("project quotas are not enabled")

// openQuotaFS opens the file system holding dir and checks that it
// accounts and enforces project quotas.
func openQuotaFS(dir string) (*quotaFS, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	q := &quotaFS{dir: f, fd: haveQuotactlFd()}
	if !q.fd {
		// Linux < 5.14: quotactl(2) wants the block device.
		if q.dev, err = blockDevice(dir); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s (%s): %w", dir, fsType(dir), err)
		}
	}
	var st fsQuotaStatV
	st.Version = fsQStatVVer1
	err = q.ctl(qXGetQStatV, 0, unsafe.Pointer(&st))
	if err != nil {
		f.Close()
		fstype := fsType(dir)
		switch {
		case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOTTY):
			return nil, fmt.Errorf("%s (%s) has no project quota support (%w): put the work_dir on XFS mounted with prjquota, or ext4 made with -O quota,project and mounted with prjquota", dir, fstype, err)
		case errors.Is(err, unix.ESRCH), errors.Is(err, unix.ENOENT):
			return nil, fmt.Errorf("%s (%s): %w (mount it with -o prjquota)", dir, fstype, errNoProjectQuota)
		}
		return nil, fmt.Errorf("%s (%s): reading quota state: %w", dir, fstype, err)
	}
	if st.Flags&fsQuotaPAcct == 0 || st.Flags&fsQuotaPEnfd == 0 {
		f.Close()
		return nil, fmt.Errorf("%s (%s): %w (quota flags %#x; mount it with -o prjquota, not pqnoenforce)", dir, fsType(dir), errNoProjectQuota, st.Flags)
	}
	return q, nil
}

// haveQuotactlFd probes for quotactl_fd(2): on a bad descriptor it fails
// with EBADF where it exists. (ENOSYS from a real call is ambiguous: it is
// also the answer of a file system without quota support.)
var haveQuotactlFd = sync.OnceValue(func() bool {
	_, _, e := unix.Syscall6(unix.SYS_QUOTACTL_FD, ^uintptr(0), uintptr(qcmd(qXGetQStatV, prjQuota)), 0, 0, 0, 0)
	return e != unix.ENOSYS
})

func (q *quotaFS) Close() error { return q.dir.Close() }

// ctl runs one quotactl command on project quota id.
func (q *quotaFS) ctl(cmd int, id uint32, addr unsafe.Pointer) error {
	c := uintptr(qcmd(cmd, prjQuota))
	if q.fd {
		_, _, e := unix.Syscall6(unix.SYS_QUOTACTL_FD, q.dir.Fd(), c, uintptr(id), uintptr(addr), 0, 0)
		if e != 0 {
			return e
		}
		return nil
	}
	dev, err := unix.BytePtrFromString(q.dev)
	if err != nil {
		return err
	}
	_, _, e := unix.Syscall6(unix.SYS_QUOTACTL, c, uintptr(unsafe.Pointer(dev)), uintptr(id), uintptr(addr), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// projectUsage is what a project holds.
type projectUsage struct {
	Bytes, Inodes        uint64
	HardLimit, SoftLimit uint64 // bytes; 0: none
}

// get reads project id's quota: O(1), the kernel keeps the counts.
func (q *quotaFS) get(id uint32) (projectUsage, error) {
	var d fsDiskQuota
	if err := q.ctl(qXGetQuota, id, unsafe.Pointer(&d)); err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
			// No dquot yet: the project holds nothing.
			return projectUsage{}, nil
		}
		return projectUsage{}, fmt.Errorf("Q_XGETQUOTA project %d: %w", id, err)
	}
	return projectUsage{
		Bytes: d.BCount * basicBlock, Inodes: d.ICount,
		HardLimit: d.BlkHardLimit * basicBlock, SoftLimit: d.BlkSoftLimit * basicBlock,
	}, nil
}

// setLimit sets project id's block limits in bytes (rounded up to the
// 512-byte unit; 0 removes a limit). Inode limits are cleared.
func (q *quotaFS) setLimit(id uint32, soft, hard uint64) error {
	d := fsDiskQuota{
		Version:      fsDquotVer,
		Flags:        fsProjQuota,
		FieldMask:    fsDqBSoft | fsDqBHard | fsDqISoft | fsDqIHard,
		ID:           id,
		BlkSoftLimit: (soft + basicBlock - 1) / basicBlock,
		BlkHardLimit: (hard + basicBlock - 1) / basicBlock,
	}
	if err := q.ctl(qXSetQLim, id, unsafe.Pointer(&d)); err != nil {
		return fmt.Errorf("Q_XSETQLIM project %d: %w", id, err)
	}
	return nil
}

func getXattr(fd uintptr) (fsxattr, error) {
	var x fsxattr
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, fd, fsIocFsGetXattr, uintptr(unsafe.Pointer(&x))); e != 0 {
		return x, e
	}
	return x, nil
}

func setXattr(fd uintptr, x *fsxattr) error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, fd, fsIocFsSetXattr, uintptr(unsafe.Pointer(x))); e != 0 {
		return e
	}
	return nil
}

// projectID reads dir's project ID.
func projectID(dir string) (uint32, error) {
	f, err := os.Open(dir)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	x, err := getXattr(f.Fd())
	if err != nil {
		return 0, &os.PathError{Op: "FS_IOC_FSGETXATTR", Path: dir, Err: err}
	}
	return x.ProjID, nil
}

// setProjectTree gives dir and everything below it project id (0 clears
// it), with PROJINHERIT on directories so what is made later inherits it.
// The kernel moves each inode's usage to the new project as it goes. It
// walks the tree from descriptors without following symlinks (a symlink's
// own inode cannot be opened; it is left, and holds no blocks worth
// counting) and stays on dir's file system.
func setProjectTree(dir string, id uint32) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return &os.PathError{Op: "fstat", Path: dir, Err: err}
	}
	return setProjectFD(fd, dir, id, st.Dev, true)
}

// setProjectFD sets the project of the open fd (closing it) and, for a
// directory, recurses.
func setProjectFD(fd int, path string, id uint32, dev uint64, isDir bool) error {
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	x, err := getXattr(f.Fd())
	if err != nil {
		return &os.PathError{Op: "FS_IOC_FSGETXATTR", Path: path, Err: err}
	}
	want := x.XFlags
	if isDir {
		if id != 0 {
			want |= fsXflagProjInherit
		} else {
			want &^= fsXflagProjInherit
		}
	}
	if x.ProjID != id || x.XFlags != want {
		x.ProjID, x.XFlags = id, want
		if err := setXattr(f.Fd(), &x); err != nil {
			return &os.PathError{Op: "FS_IOC_FSSETXATTR", Path: path, Err: err}
		}
	}
	if !isDir {
		return nil
	}
	for {
		ents, rerr := f.ReadDir(1024)
		for _, e := range ents {
			t := e.Type()
			if !t.IsDir() && !t.IsRegular() {
				// Symlinks, devices, FIFOs, sockets: opening them would
				// follow or block. Their blocks are nil or negligible.
				continue
			}
			flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOCTTY
			if t.IsDir() {
				flags |= unix.O_DIRECTORY
			}
			cfd, err := unix.Openat(int(f.Fd()), e.Name(), flags, 0)
			if err != nil {
				if errors.Is(err, unix.ENOENT) {
					continue
				}
				return &os.PathError{Op: "open", Path: path + "/" + e.Name(), Err: err}
			}
			var st unix.Stat_t
			if err := unix.Fstat(cfd, &st); err != nil {
				unix.Close(cfd)
				return &os.PathError{Op: "fstat", Path: path + "/" + e.Name(), Err: err}
			}
			if st.Dev != dev {
				// A mount below the sandbox is not the sandbox's to
				// account.
				unix.Close(cfd)
				continue
			}
			if err := setProjectFD(cfd, path+"/"+e.Name(), id, dev, t.IsDir()); err != nil {
				return err
			}
		}
		if rerr != nil {
			break // io.EOF, or an error that the next walk will meet again
		}
	}
	return nil
}

// blockDevice finds the device mounted at the mount holding path, for
// quotactl(2) on kernels without quotactl_fd. It reads the mount table:
// once per file system, at construction or on first use.
func blockDevice(path string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", &os.PathError{Op: "stat", Path: path, Err: err}
	}
	want := fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	major, minor := int(unix.Major(st.Dev)), int(unix.Minor(st.Dev))
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return m.Major != major || m.Minor != minor || !strings.HasPrefix(m.Source, "/"), false
	})
	if err != nil {
		return "", err
	}
	if len(mounts) > 0 {
		return mounts[0].Source, nil
	}
	dev := filepath.Join("/dev/block", want)
	if _, err := os.Stat(dev); err == nil {
		return dev, nil
	}
	return "", fmt.Errorf("no block device found for %s (device %s)", path, want)
}

// fsType names path's file system type for messages.
func fsType(path string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return "unknown file system"
	}
	switch st.Type {
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	}
	return "file system type " + strconv.FormatInt(int64(st.Type), 16)
}

// fsCache keeps one quotaFS per device: the check and the descriptor are
// made once, not per launch.
type fsCache struct {
	mu  sync.Mutex
	fss map[uint64]*quotaFS
}

func (c *fsCache) get(dir string) (*quotaFS, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if q := c.fss[st.Dev]; q != nil {
		return q, nil
	}
	q, err := openQuotaFS(dir)
	if err != nil {
		return nil, err
	}
	if c.fss == nil {
		c.fss = map[uint64]*quotaFS{}
	}
	c.fss[st.Dev] = q
	return q, nil
}

func (c *fsCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for dev, q := range c.fss {
		q.Close()
		delete(c.fss, dev)
	}
}
