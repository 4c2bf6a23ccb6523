package cgroupfs

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Control files by cgroup directory and file name, for the isolators'
// limits and statistics. Errors name the file (and the value written).

// Write writes val to dir's control file with one write(2), as the kernel
// expects.
func Write(dir, file, val string) error {
	p := filepath.Join(dir, file)
	if err := WriteFile(p, val); err != nil {
		return fmt.Errorf("writing %q to %s: %w", val, p, err)
	}
	return nil
}

// WriteOptional is Write for a file the kernel may not have (a
// configuration option or an older kernel); it reports whether it was
// written. A missing file is no error while the cgroup itself exists.
func WriteOptional(dir, file, val string) (bool, error) {
	err := Write(dir, file, val)
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(dir); serr != nil {
			return false, err // the cgroup itself is gone
		}
		return false, nil
	}
	return err == nil, err
}

// ReadString reads a control file, without surrounding white space.
func ReadString(dir, file string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// Unlimited is what ReadUint returns for "max" and for v1's "no limit"
// (PAGE_COUNTER_MAX in bytes, 0x7ffffffffffff000 on 4 KiB pages).
const Unlimited = math.MaxUint64

// ReadUint reads a control file holding one number or "max".
func ReadUint(dir, file string) (uint64, error) {
	s, err := ReadString(dir, file)
	if err != nil {
		return 0, err
	}
	return ParseLimit(s)
}

// ParseLimit parses a number or limit: "max", a negative value (v1's -1)
// and values from 2^62 up are Unlimited.
func ParseLimit(s string) (uint64, error) {
	if s == "max" {
		return Unlimited, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		// v1 reports -1 for some unlimited values (cpu.cfs_quota_us).
		if iv, ierr := strconv.ParseInt(s, 10, 64); ierr == nil && iv < 0 {
			return Unlimited, nil
		}
		return 0, err
	}
	if v >= 1<<62 {
		return Unlimited, nil
	}
	return v, nil
}

// ReadKV reads a flat-keyed file ("key value" lines: memory.stat, cpu.stat,
// memory.events, cpuacct.stat).
func ReadKV(dir, file string) (map[string]uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return nil, err
	}
	return ParseKV(string(b)), nil
}

// ParseKV parses "key value" lines; lines without a number are left out.
func ParseKV(s string) map[string]uint64 {
	out := map[string]uint64{}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

// CountLines counts the non-empty lines of a control file (cgroup.procs,
// cgroup.threads, tasks).
func CountLines(dir, file string) (uint32, error) {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return 0, err
	}
	var n uint32
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" {
			n++
		}
	}
	return n, nil
}
