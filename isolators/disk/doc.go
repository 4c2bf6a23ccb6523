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
// Settings come from container.Options.Extra under the agent's flag
// names (the constants below).
package disk

// Options.Extra keys (agent flag names) and their defaults.
const (
	// WorkDirKey is the agent's --work_dir. disk/xfs requires it and checks
	// at construction that its file system has project quotas.
	WorkDirKey = "work_dir"
	// WatchIntervalKey is --container_disk_watch_interval: how often disk/du
	// measures a container, and how often disk/xfs in kill mode reads the
	// quotas. A Go duration ("15s") or a Mesos one ("15secs").
	WatchIntervalKey     = "container_disk_watch_interval"
	DefaultWatchInterval = "15s"
	// EnforceKey is --enforce_container_disk_quota (default false, as
	// Mesos): without it both isolators only account. disk/du then never
	// reports a limitation; disk/xfs sets no limit.
	EnforceKey = "enforce_container_disk_quota"
	// ProjectRangeKey is --xfs_project_range: the project IDs disk/xfs
	// hands out, "[lo-hi]" as Mesos writes ranges, or "lo-hi".
	ProjectRangeKey     = "xfs_project_range"
	DefaultProjectRange = "[5000-10000]"
	// KillKey is --xfs_kill_containers: with enforcement, the disk
	// resource becomes the quota's soft limit and a container over it is
	// reported and destroyed (the hard limit, KillHeadroom above, is only a
	// backstop); without it the hard limit is the disk resource and a write
	// past it fails with EDQUOT.
	KillKey = "xfs_kill_containers"
	// DUCgroupKey names the cgroup (relative to each hierarchy) the du
	// helper runs in; default "<cgroups_root>_disk_du" (a sibling of the
	// containers' root, where the launcher's recovery does not look);
	// "none" leaves the helper in the agent's cgroup.
	DUCgroupKey = "disk_du_cgroup"
)

// ReasonDisk is the TaskStatus reason of a container over its disk share.
const ReasonDisk = "REASON_CONTAINER_LIMITATION_DISK"

// KillHeadroom is how far above the disk resource the hard limit sits in
// kill mode: a tenth of the limit, at least 16 MiB, so the task is killed
// for its excess rather than failing on EDQUOT first.
func KillHeadroom(limit uint64) uint64 { return max(limit/10, 16<<20) }
