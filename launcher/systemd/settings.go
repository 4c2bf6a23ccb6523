package systemd

import (
	"github.com/spf13/pflag"

	"github.com/corral/corral/container"
)

// Settings are the systemd scope's agent flag, as Mesos names it.
type Settings struct {
	// EnableSupport keeps the linux launcher's containers in a transient
	// scope outside the agent's unit when systemd is PID 1.
	EnableSupport bool
}

func init() {
	container.RegisterSettings(func() container.Settings { return &Settings{EnableSupport: true} })
}

// Flags declares the settings' flags.
func (s *Settings) Flags(fs *pflag.FlagSet) {
	fs.BoolVar(&s.EnableSupport, "systemd_enable_support", s.EnableSupport, "when systemd is PID 1, keep the linux launcher's containers in a transient scope in corral-executors.slice, outside the agent's unit, so they survive its restart")
}

// Validate has nothing to check.
func (*Settings) Validate() error { return nil }
