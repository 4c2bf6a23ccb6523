package disk

import (
	"fmt"
	"strconv"
	"strings"
)

// parseRange reads a project ID range, "[lo-hi]" (Mesos' range syntax, a
// single range) or "lo-hi". Project 0 is every file's default and is
// refused.
func parseRange(s string) (lo, hi uint32, err error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(strings.TrimPrefix(t, "["), "]")
	a, b, ok := strings.Cut(t, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q is not a range such as [5000-10000]", s)
	}
	l, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 32)
	h, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 32)
	switch {
	case err1 != nil || err2 != nil:
		return 0, 0, fmt.Errorf("%q is not a range such as [5000-10000]", s)
	case l == 0:
		return 0, 0, fmt.Errorf("%q includes project 0, every file's default project", s)
	case l > h:
		return 0, 0, fmt.Errorf("%q is empty (%d > %d)", s, l, h)
	case h == 1<<32-1:
		return 0, 0, fmt.Errorf("%q includes %d, which the kernel reserves", s, h)
	}
	return uint32(l), uint32(h), nil
}

// humanBytes writes n as a Mesos Bytes does: "1.5GB", "512KB", "100B".
func humanBytes(n uint64) string {
	units := []string{"B", "KB", "MB", "GB", "TB"}
	v := float64(n)
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%dB", n)
	}
	f := strings.TrimRight(strings.TrimRight(strconv.FormatFloat(v, 'f', 2, 64), "0"), ".")
	return f + units[i]
}
