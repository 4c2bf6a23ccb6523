// Package cgroups holds the cgroups/* isolators (Mesos names): cgroups/cpu,
// cgroups/mem, cgroups/pids, cgroups/devices and cgroups/blkio.
//
// Layout, shared with the linux launcher:
//
//   - cgroup v2 (unified): a container has one cgroup,
//     /sys/fs/cgroup/<CgroupsRoot>/<containerID>, which the linux launcher
//     creates in Fork (controllers enabled in the root's subtree_control) and
//     removes in Destroy. The isolators write their limits into it in Isolate,
//     while the init is paused, and so need --launcher=linux (they say so
//     when the containerizer is built: container.LauncherChecker). The
//     hierarchy is Options.CgroupsHierarchy, as for the launcher.
//   - cgroup v1: every isolator owns its hierarchies' cgroups,
//     <mount>/<CgroupsRoot>/<containerID>: it creates them and writes the
//     limits in Prepare, moves the init into them in Isolate and removes them
//     in Cleanup. They work with the posix launcher too. The freezer hierarchy
//     is the launcher's and is never touched here.
//
// Flags (Settings, Mesos names where Mesos has them):
// cgroups_enable_cfs (cpu), cgroups_limit_swap (mem, default true: no swap),
// cgroups_memory_soft_limit (mem), cgroups_pids_max (pids; label
// corral.pids.max per task), cgroups_blkio_weight (blkio; label
// corral.blkio.weight). A bad value fails the isolator's construction with
// an error naming the flag.
//
// cgroups/mem reports an OOM kill as REASON_CONTAINER_LIMITATION_MEMORY: an
// eventfd on memory.oom_control on v1, inotify on memory.events (oom_kill)
// on v2, plus a last look (container.Finalizer) after the init exits
// and before the cgroup goes, so a task that exits right after its OOM kill
// is still reported.
//
// Linux-only; on other systems the package is empty.
package cgroups
