package cgroups

import "github.com/corral/corral/agent/containerizer"

func init() {
	containerizer.RegisterIsolator("cgroups/cpu", NewCPU)
	containerizer.RegisterIsolator("cgroups/mem", NewMem)
	containerizer.RegisterIsolator("cgroups/pids", NewPids)
	containerizer.RegisterIsolator("cgroups/devices", NewDevices)
	containerizer.RegisterIsolator("cgroups/blkio", NewBlkio)
}

// What the containerizer looks for, checked at compile time.
var (
	_ containerizer.Watcher         = (*Mem)(nil)
	_ containerizer.Finalizer       = (*Mem)(nil)
	_ containerizer.Updater         = (*isolator)(nil)
	_ containerizer.UsageReporter   = (*isolator)(nil)
	_ containerizer.LauncherChecker = (*isolator)(nil)
)
