package agent

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// hostMemoryMB is what the agent offers of the host's memory (sysinfo),
// by memoryLeftMB.
func hostMemoryMB() (uint64, error) {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0, fmt.Errorf("detecting memory: %w", err)
	}
	return memoryLeftMB(uint64(si.Totalram) * uint64(si.Unit) >> 20), nil
}
