//go:build !linux

package checkpoint

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// readFile reads path into buf (grown as needed) and returns its contents.
func readFile(path string, buf []byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return buf[:0], err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return buf[:0], err
	}
	n := int(st.Size())
	if cap(buf) < n {
		buf = make([]byte, n, max(n, 2*cap(buf)))
	}
	buf = buf[:n]
	if _, err := io.ReadFull(f, buf); err != nil {
		return buf[:0], fmt.Errorf("reading %s: %w", path, err)
	}
	return buf, nil
}

// readNames lists a directory; a missing one is empty.
func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}
