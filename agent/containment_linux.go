package agent

// The isolators every container gets unless --host_privileges (see
// Config.isolators) are compiled into every agent, not only into the
// corral binary: an agent built without them would refuse to start.
import (
	_ "github.com/corral/corral/isolators/filesystem"
	_ "github.com/corral/corral/isolators/linux"
	_ "github.com/corral/corral/isolators/namespaces"
)
