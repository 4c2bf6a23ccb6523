package cgroups

import "github.com/corral/corral/agent/containerizer"

func init() {
	containerizer.RegisterIsolator("cgroups/cpu", NewCPU)
	containerizer.RegisterIsolator("cgroups/mem", NewMem)
	containerizer.RegisterIsolator("cgroups/pids", NewPids)
	containerizer.RegisterIsolator("cgroups/devices", NewDevices)
	containerizer.RegisterIsolator("cgroups/blkio", NewBlkio)
}
