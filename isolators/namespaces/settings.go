package namespaces

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/corral/corral/container"
)

// Settings are the namespaces isolators' agent flags.
type Settings struct {
	// ShmSize is the size of namespaces/ipc's private /dev/shm in tmpfs'
	// size= syntax (bytes, or with k, m, g; Mesos'
	// --default_container_shm_size). Empty keeps tmpfs' default, half of
	// RAM; the pages are charged to the container's memory cgroup either
	// way.
	ShmSize string
}

func init() {
	container.RegisterSettings(func() container.Settings { return &Settings{} })
}

// Flags declares the settings' flags.
func (s *Settings) Flags(fs *pflag.FlagSet) {
	fs.StringVar(&s.ShmSize, "default_container_shm_size", s.ShmSize, "namespaces/ipc: size of a container's private /dev/shm, e.g. 64m (default: tmpfs' half of RAM)")
}

// Validate refuses a size tmpfs would not take.
func (s *Settings) Validate() error {
	if s.ShmSize != "" && !validTmpfsSize(s.ShmSize) {
		return fmt.Errorf("--default_container_shm_size: %q is not a size such as 64m", s.ShmSize)
	}
	return nil
}

// validTmpfsSize accepts tmpfs' size= values: a positive number with at
// most one unit suffix (k, m, g, t, p, e) or a percentage of RAM.
func validTmpfsSize(s string) bool {
	num := strings.TrimRight(s, "kKmMgGtTpPeE%")
	if len(s)-len(num) > 1 {
		return false
	}
	v, err := strconv.ParseUint(num, 10, 64)
	return err == nil && v > 0
}
