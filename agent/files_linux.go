package agent

import (
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// errOutside: the path resolves (through a symbolic link or "..") outside
// the root it was opened beneath.
var errOutside = errors.New("outside the root")

// openBeneath opens rel below root for reading, resolving every component
// in the kernel with openat2(RESOLVE_BENEATH): a task cannot make the agent
// read outside its sandbox by planting a link, even one swapped in between
// a check and the open. Kernels before 5.6 (no openat2) get a resolve-then-
// check fallback.
func openBeneath(root, rel string) (*os.File, error) {
	dir, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(dir)
	if rel == "" {
		rel = "."
	}
	fd, err := unix.Openat2(dir, rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	})
	switch {
	case err == nil:
		if err := unix.SetNonblock(fd, false); err != nil {
			unix.Close(fd)
			return nil, err
		}
		return os.NewFile(uintptr(fd), filepath.Join(root, rel)), nil
	case errors.Is(err, unix.EXDEV), errors.Is(err, unix.ELOOP):
		return nil, errOutside
	case errors.Is(err, unix.ENOSYS):
		return openChecked(root, rel)
	default:
		return nil, &os.PathError{Op: "open", Path: filepath.Join(root, rel), Err: err}
	}
}

// sandboxOwner is the name of the user that owns dir.
func sandboxOwner(dir string) (string, bool) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return "", false
	}
	u, err := user.LookupId(strconv.FormatUint(uint64(st.Uid), 10))
	if err != nil {
		return "", false
	}
	return u.Username, true
}
