package testsupport

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ProcKB reads the kB figure of key (e.g. "VmRSS:" in status, "Pss:" in
// smaps_rollup) from /proc/<pid>/<file>; pid "self" is the caller. ok is
// false when the process or the key is gone.
func ProcKB(pid, file, key string) (kb float64, ok bool) {
	b, err := os.ReadFile("/proc/" + pid + "/" + file)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, found := strings.CutPrefix(line, key); found {
			if f := strings.Fields(v); len(f) > 0 {
				n, err := strconv.ParseFloat(f[0], 64)
				return n, err == nil
			}
		}
	}
	return 0, false
}

// SelfRSS is the calling process's resident set in bytes.
func SelfRSS() uint64 {
	kb, _ := ProcKB("self", "status", "VmRSS:")
	return uint64(kb) << 10
}

// ContainerCost sums the proportional set size, in bytes, of every process
// whose environment carries prefix (containers' inits and tasks), and counts
// them.
func ContainerCost(prefix string) (pss uint64, procs int) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !strings.Contains(string(env), prefix) {
			continue
		}
		procs++
		kb, _ := ProcKB(e.Name(), "smaps_rollup", "Pss:")
		pss += uint64(kb) << 10
	}
	return pss, procs
}

// Percentile is the nearest-rank percentile p (0-100) of ds.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(rank, len(s)-1))]
}
