package cgroups

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/corral/corral/container"
)

// Settings are the cgroups isolators' agent flags (Mesos' names where Mesos
// has them).
type Settings struct {
	// EnableCFS adds a hard CFS quota to cgroups/cpu's shares.
	EnableCFS bool
	// LimitSwap limits memory and swap together, so containers never swap.
	LimitSwap bool
	// MemorySoftLimit also sets a soft limit at the container's mem.
	MemorySoftLimit bool
	// PidsMax is cgroups/pids' default pids.max: a positive number or "max".
	PidsMax string
	// BlkioWeight is cgroups/blkio's default weight, 10..1000.
	BlkioWeight uint
}

// DefaultSettings are the flags' defaults.
func DefaultSettings() *Settings {
	return &Settings{LimitSwap: true, PidsMax: "max", BlkioWeight: defaultBlkioWeight}
}

func init() {
	container.RegisterSettings(func() container.Settings { return DefaultSettings() })
}

// PidsLabel is the task label that overrides the pids limit: a positive
// number or "max".
const PidsLabel = "corral.pids.max"

// BlkioWeightLabel is the task label that overrides the I/O weight, on the
// v1 scale 10..1000.
const BlkioWeightLabel = "corral.blkio.weight"

// defaultBlkioWeight is CFQ's default weight; containers get it unless
// the flag or the label says otherwise.
const defaultBlkioWeight = 500

// Flags declares the settings' flags.
func (s *Settings) Flags(fs *pflag.FlagSet) {
	fs.BoolVar(&s.EnableCFS, "cgroups_enable_cfs", s.EnableCFS, "cgroups/cpu: also set a hard CFS quota of cpus × 100ms per 100ms")
	fs.BoolVar(&s.LimitSwap, "cgroups_limit_swap", s.LimitSwap, "cgroups/mem: limit memory and swap together, so containers never swap (false: swap unlimited)")
	fs.BoolVar(&s.MemorySoftLimit, "cgroups_memory_soft_limit", s.MemorySoftLimit, "cgroups/mem: also set a soft limit at mem (v1 soft_limit_in_bytes, v2 memory.high)")
	fs.StringVar(&s.PidsMax, "cgroups_pids_max", s.PidsMax, "cgroups/pids: default pids.max of a container (a task overrides it with the label "+PidsLabel+")")
	fs.UintVar(&s.BlkioWeight, "cgroups_blkio_weight", s.BlkioWeight, "cgroups/blkio: default I/O weight, 10..1000 (the label "+BlkioWeightLabel+" overrides it)")
}

// Validate refuses a bad value whatever the isolation, naming its flag.
func (s *Settings) Validate() error {
	if _, err := parsePidsMax(s.PidsMax); err != nil {
		return fmt.Errorf("--cgroups_pids_max: %w", err)
	}
	_, err := s.blkioWeight()
	return err
}

// blkioWeight is the default I/O weight; 0 is the isolator's default.
func (s *Settings) blkioWeight() (uint64, error) {
	switch w := uint64(s.BlkioWeight); {
	case w == 0:
		return defaultBlkioWeight, nil
	case !validBlkioWeight(w):
		return 0, fmt.Errorf("--cgroups_blkio_weight: %d is not a weight in 10..1000", w)
	default:
		return w, nil
	}
}

// parsePidsMax reads a pids.max value: a positive number, or "max" (also
// "unlimited" and empty).
func parsePidsMax(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "max" || s == "unlimited" {
		return "max", nil
	}
	n, err := strconv.ParseUint(s, 10, 31)
	if err != nil || n == 0 {
		return "", fmt.Errorf("%q is not a positive number or \"max\"", s)
	}
	return strconv.FormatUint(n, 10), nil
}

func validBlkioWeight(w uint64) bool { return w >= 10 && w <= 1000 }

// parseBlkioWeight reads the weight label.
func parseBlkioWeight(s string) (uint64, error) {
	w, err := strconv.ParseUint(s, 10, 16)
	if err != nil || !validBlkioWeight(w) {
		return 0, fmt.Errorf("%q is not a weight in 10..1000", s)
	}
	return w, nil
}
