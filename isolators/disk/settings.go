package disk

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/corral/corral/api/duration"
	"github.com/corral/corral/container"
)

// Settings are the disk isolators' agent flags, as Mesos names them.
type Settings struct {
	// WatchInterval is how often disk/du measures a container, and how
	// often disk/xfs in kill mode reads the quotas.
	WatchInterval time.Duration
	// Enforce holds containers to their disk resource (default false, as
	// Mesos): without it both isolators only account; disk/du then never
	// reports a limitation and disk/xfs sets no limit.
	Enforce bool
	// ProjectRange is the project IDs disk/xfs hands out, "[lo-hi]" as
	// Mesos writes ranges, or "lo-hi".
	ProjectRange string
	// Kill: with enforcement, the disk resource becomes the quota's soft
	// limit and a container over it is reported and destroyed (the hard
	// limit, KillHeadroom above, is only a backstop); without it the hard
	// limit is the disk resource and a write past it fails with EDQUOT.
	Kill bool
	// DUCgroup names the cgroup (relative to each hierarchy) the du helper
	// runs in; empty is "<cgroups_root>_disk_du" (a sibling of the
	// containers' root, where the launcher's recovery does not look);
	// "none" leaves the helper in the agent's cgroup. Not a flag: tests
	// set it.
	DUCgroup string
}

// Defaults of the flags, as Mesos'.
const (
	DefaultWatchInterval = 15 * time.Second
	DefaultProjectRange  = "[5000-10000]"
)

// DefaultSettings are the flags' defaults.
func DefaultSettings() *Settings {
	return &Settings{WatchInterval: DefaultWatchInterval, ProjectRange: DefaultProjectRange}
}

func init() {
	container.RegisterSettings(func() container.Settings { return DefaultSettings() })
}

// Flags declares the settings' flags.
func (s *Settings) Flags(fs *pflag.FlagSet) {
	fs.Var(duration.Value{D: &s.WatchInterval}, "container_disk_watch_interval", "disk/du: how often each container's sandbox is measured (disk/xfs kill mode: how often quotas are read), e.g. 15s or 15secs")
	fs.BoolVar(&s.Enforce, "enforce_container_disk_quota", s.Enforce, "disk/du and disk/xfs: hold containers to their disk resource (without it they only account)")
	fs.StringVar(&s.ProjectRange, "xfs_project_range", s.ProjectRange, "disk/xfs: the project IDs handed out to sandboxes")
	fs.BoolVar(&s.Kill, "xfs_kill_containers", s.Kill, "disk/xfs: destroy a container over its disk resource instead of failing its writes")
}

// Validate refuses a bad value whatever the isolation, naming its flag.
func (s *Settings) Validate() error {
	if s.WatchInterval <= 0 {
		return fmt.Errorf("--container_disk_watch_interval: %v is not positive", s.WatchInterval)
	}
	if _, _, err := parseRange(s.ProjectRange); err != nil {
		return fmt.Errorf("--xfs_project_range: %w", err)
	}
	return nil
}
