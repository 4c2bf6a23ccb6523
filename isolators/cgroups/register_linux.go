package cgroups

import "github.com/corral/corral/container"

func init() {
	container.RegisterIsolator("cgroups/cpu", NewCPU)
	container.RegisterIsolator("cgroups/mem", NewMem)
	container.RegisterIsolator("cgroups/pids", NewPids)
	container.RegisterIsolator("cgroups/devices", NewDevices)
	container.RegisterIsolator("cgroups/blkio", NewBlkio)
}

// What the containerizer looks for, checked at compile time.
var (
	_ container.Watcher         = (*Mem)(nil)
	_ container.Finalizer       = (*Mem)(nil)
	_ container.Updater         = (*isolator)(nil)
	_ container.UsageReporter   = (*isolator)(nil)
	_ container.LauncherChecker = (*isolator)(nil)
)
