package checkpoint

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// datasync flushes an appended file. fdatasync is enough: it writes the
// file's size along with its data, and skips only timestamps, which nothing
// reads back.
func datasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}

// syncfs writes out everything cached for the file system dir is on: one
// call makes a whole tree of unsynced files, renames and directories
// durable, which is what lets the journal retire a segment.
func syncfs(dir string) error {
	fd, err := openRetry(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	defer unix.Close(fd)
	for {
		err := unix.Syncfs(fd)
		if err != unix.EINTR {
			if err != nil {
				return fmt.Errorf("syncfs %s: %w", dir, err)
			}
			return nil
		}
	}
}
