package checkpoint

import (
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// allocate gives f real blocks for n bytes at off, extending its size: a
// reserve that the file system cannot hand to anyone else.
func allocate(f *os.File, off, n int64) error {
	for {
		err := unix.Fallocate(int(f.Fd()), 0, off, n)
		switch err {
		case nil:
			return nil
		case unix.EINTR:
			continue
		case unix.EOPNOTSUPP, unix.ENOSYS:
			return writeZeros(f, off, n)
		}
		return &fs.PathError{Op: "fallocate", Path: f.Name(), Err: err}
	}
}

// allocated is how many bytes of blocks the file holds.
func allocated(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}
