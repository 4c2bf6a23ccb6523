// Package disk holds the disk isolators, named as in Mesos' --isolation:
//
//   - disk/du measures each container's sandbox with du(1) every
//     container_disk_watch_interval, one walk at a time, in a short-lived
//     helper process placed in a cgroup of its own (not the agent's) at
//     idle I/O priority; with enforce_container_disk_quota a container
//     over its disk resource is reported (REASON_CONTAINER_LIMITATION_DISK)
//     and the containerizer destroys it.
//   - disk/xfs gives each sandbox a project quota: a project ID from
//     xfs_project_range on the sandbox directory (inherited by everything
//     made in it) and a block limit from the disk resource. Usage is read
//     from the quota, O(1) whatever the file count. It works on XFS and on
//     ext4 made with -O quota,project and mounted with prjquota (which
//     Mesos' xfs isolator does not support). A write past the hard limit
//     fails with ENOSPC on XFS (its project quotas make a directory tree
//     look like a smaller file system) and EDQUOT on ext4. On ext4 the
//     kernel's quota layer lets a process with CAP_SYS_RESOURCE past hard
//     limits (XFS does not): tasks that keep that capability are only held
//     by the kill mode, whose watch reads the usage whatever the task's
//     capabilities.
//
// Settings (settings.go) are the agent flags the isolators read, by Mesos'
// names; disk/xfs also needs Options.WorkDir.
package disk

// ReasonDisk is the TaskStatus reason of a container over its disk share.
const ReasonDisk = "REASON_CONTAINER_LIMITATION_DISK"

// KillHeadroom is how far above the disk resource the hard limit sits in
// kill mode: a tenth of the limit, at least 16 MiB, so the task is killed
// for its excess rather than failing on EDQUOT first.
func KillHeadroom(limit uint64) uint64 { return max(limit/10, 16<<20) }
