package disk

import "github.com/corral/corral/agent/containerizer"

func init() {
	containerizer.RegisterIsolator("disk/du", NewDU)
	containerizer.RegisterIsolator("disk/xfs", NewXFS)
}

// What the containerizer looks for, checked at compile time.
var (
	_ containerizer.Watcher       = (*DU)(nil)
	_ containerizer.Updater       = (*DU)(nil)
	_ containerizer.UsageReporter = (*DU)(nil)
	_ containerizer.Watcher       = (*XFS)(nil)
	_ containerizer.Updater       = (*XFS)(nil)
	_ containerizer.UsageReporter = (*XFS)(nil)
)
