package cli

// Launchers and isolators register themselves by name; every one is
// compiled in and --launcher/--isolation pick among them. They are Linux
// only: elsewhere the registry is empty and the agent refuses to start
// (no launcher by the name asked for).
import (
	_ "github.com/corral/corral/isolators/cgroups"
	_ "github.com/corral/corral/isolators/disk"
	_ "github.com/corral/corral/isolators/filesystem"
	_ "github.com/corral/corral/isolators/linux"
	_ "github.com/corral/corral/isolators/namespaces"
	_ "github.com/corral/corral/isolators/posix"
	_ "github.com/corral/corral/launcher/linux"
	_ "github.com/corral/corral/launcher/posix"
	_ "github.com/corral/corral/launcher/systemd"
)
