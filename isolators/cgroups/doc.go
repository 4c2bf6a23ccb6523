// Package cgroups holds the cgroups/* isolators (Mesos names): cgroups/cpu,
// cgroups/mem, cgroups/pids, cgroups/devices and cgroups/blkio.
//
// Layout, shared with the linux launcher:
//
//   - cgroup v2 (unified): a container has one cgroup,
//     /sys/fs/cgroup/<CgroupsRoot>/<containerID>, which the linux launcher
//     creates in Fork (controllers enabled in the root's subtree_control) and
//     removes in Destroy. The isolators write their limits into it in Isolate,
//     while the init is paused, and so need --launcher=linux.
//   - cgroup v1: every isolator owns its hierarchies' cgroups,
//     <mount>/<CgroupsRoot>/<containerID>: it creates them and writes the
//     limits in Prepare, moves the init into them in Isolate and removes them
//     in Cleanup. They work with the posix launcher too. The freezer hierarchy
//     is the launcher's and is never touched here.
//
// Linux-only; on other systems the package is empty.
package cgroups
