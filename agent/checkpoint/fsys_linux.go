package checkpoint

import (
	"io/fs"
	"sync"

	"golang.org/x/sys/unix"
)

// Recovery reads thousands of small files and directories, and its cost is
// all system calls. os.File would add to each open a poller registration
// attempt and several fcntls (measured: 4-5 extra calls per open, a third of
// recovery time), so these read with plain open/fstat/read/getdents.

// readFile reads path into buf (grown as needed) and returns its contents.
func readFile(path string, buf []byte) ([]byte, error) {
	fd, err := openRetry(path, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return buf[:0], &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return buf[:0], &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	n := int(st.Size)
	if cap(buf) < n {
		buf = make([]byte, n, max(n, 2*cap(buf)))
	}
	buf = buf[:n]
	for got := 0; got < n; {
		m, err := unix.Read(fd, buf[got:])
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return buf[:0], &fs.PathError{Op: "read", Path: path, Err: err}
		case m == 0:
			// Shorter than fstat said: whatever is there is what a reader
			// must judge; the framing will tell.
			return buf[:got], nil
		}
		got += m
	}
	return buf, nil
}

var direntBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// readNames lists a directory, unsorted; a missing one is empty.
func readNames(dir string) ([]string, error) {
	fd, err := openRetry(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err == unix.ENOENT {
		return nil, nil
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	bp := direntBufs.Get().(*[]byte)
	defer direntBufs.Put(bp)
	var names []string
	for {
		n, err := unix.ReadDirent(fd, *bp)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "readdirent", Path: dir, Err: err}
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent((*bp)[:n], -1, names)
	}
}

func openRetry(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}
