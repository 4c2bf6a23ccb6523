package disk

import "github.com/corral/corral/container"

func init() {
	container.RegisterIsolator("disk/du", NewDU)
	container.RegisterIsolator("disk/xfs", NewXFS)
}

// What the containerizer looks for, checked at compile time.
var (
	_ container.Watcher       = (*DU)(nil)
	_ container.Updater       = (*DU)(nil)
	_ container.UsageReporter = (*DU)(nil)
	_ container.Watcher       = (*XFS)(nil)
	_ container.Updater       = (*XFS)(nil)
	_ container.UsageReporter = (*XFS)(nil)
)
