package linux

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/corral/corral/container"
)

// Settings are linux/capabilities' and linux/seccomp's agent flags, as
// Mesos names them.
type Settings struct {
	// BoundingCapabilities is the most any task may hold; Effective is what
	// a task holds when it asks for nothing else. Each is Mesos'
	// CapabilityInfo JSON or a comma-separated list of names; unset is
	// DefaultCapabilities.
	BoundingCapabilities, EffectiveCapabilities string
	// SeccompConfigDir holds the seccomp profiles (Docker's JSON format)
	// tasks may name; SeccompProfileName is the one tasks run under by
	// default (unset: the embedded profile).
	SeccompConfigDir, SeccompProfileName string
}

func init() {
	container.RegisterSettings(func() container.Settings { return &Settings{} })
}

// Flags declares the settings' flags.
func (s *Settings) Flags(fs *pflag.FlagSet) {
	fs.StringVar(&s.BoundingCapabilities, "bounding_capabilities", s.BoundingCapabilities, "linux/capabilities: the most capabilities a task may hold, as Mesos' CapabilityInfo JSON or names (default: Docker's default set without MKNOD)")
	fs.StringVar(&s.EffectiveCapabilities, "effective_capabilities", s.EffectiveCapabilities, "linux/capabilities: the capabilities a task holds unless its LinuxInfo asks for others (default: the bounding set's part of the default set)")
	fs.StringVar(&s.SeccompConfigDir, "seccomp_config_dir", s.SeccompConfigDir, "linux/seccomp: directory of seccomp profiles (Docker's JSON format) that tasks may name")
	fs.StringVar(&s.SeccompProfileName, "seccomp_profile_name", s.SeccompProfileName, "linux/seccomp: the profile (a file in --seccomp_config_dir) tasks run under by default (default: the embedded profile)")
}

// Validate checks what needs no kernel; the capability names and the
// profile are checked when the isolators are built.
func (s *Settings) Validate() error {
	if s.SeccompProfileName != "" && s.SeccompConfigDir == "" {
		return fmt.Errorf("--seccomp_profile_name %q needs --seccomp_config_dir", s.SeccompProfileName)
	}
	return nil
}
