//go:build !linux

package agent

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// hostMemoryMB is the Linux one's rule on the BSDs' and macOS' sysctl.
func hostMemoryMB() (uint64, error) {
	b, err := unix.SysctlUint64("hw.memsize")
	if err != nil {
		return 0, fmt.Errorf("detecting memory (give --resources mem): %w", err)
	}
	return memoryLeftMB(b >> 20), nil
}
