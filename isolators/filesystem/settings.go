package filesystem

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/corral/corral/container"
)

// DefaultSandboxDir is Mesos' default --sandbox_directory.
const DefaultSandboxDir = "/mnt/mesos/sandbox"

// Settings are filesystem/linux's agent flags.
type Settings struct {
	// SandboxDirectory is where the sandbox appears inside a container
	// (Mesos' --sandbox_directory).
	SandboxDirectory string
}

func init() {
	container.RegisterSettings(func() container.Settings { return &Settings{SandboxDirectory: DefaultSandboxDir} })
}

// Flags declares the settings' flags.
func (s *Settings) Flags(fs *pflag.FlagSet) {
	fs.StringVar(&s.SandboxDirectory, "sandbox_directory", s.SandboxDirectory, "filesystem/linux: where the sandbox is mounted inside a container")
}

// Validate refuses a mount point that is not an absolute path below /.
func (s *Settings) Validate() error {
	if d := filepath.Clean(s.SandboxDirectory); !filepath.IsAbs(d) || d == "/" {
		return fmt.Errorf("--sandbox_directory: %q must be an absolute path below /", s.SandboxDirectory)
	}
	return nil
}
