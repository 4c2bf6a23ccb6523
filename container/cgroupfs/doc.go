// Package cgroupfs is Corral's one layer over the cgroup file system, shared
// by the linux launcher, the cgroups isolators and the systemd scope: where
// the containers' cgroups are, reading and writing control files, listing a
// cgroup's processes, killing them (cgroup.kill, or freeze, kill, thaw) and
// removing cgroups with backoff.
//
// Everything on the launch path here is plain file I/O on kernfs: one open
// and one read or write per control file, a few microseconds, with no scan
// of /proc/mounts or of other cgroups. Processes are signalled through
// pidfds only, never by a bare PID that may have been reused.
//
// containerd/cgroups/v3 is used where it serves at no cost to the launch
// path: its Mode() tells the host's cgroup mode (ReadHost, once per
// process). The rest stays hand-written, for what the library lacks or
// costs, measured with testdata/librarybench (Linux 6.18, hybrid host, AMD
// EPYC, 300 rounds):
//
//   - Kill and RemoveTree: cgroup2.Manager.Kill writes cgroup.kill as Kill
//     does but does not wait for the cgroup to empty, and Manager.Delete
//     refuses a cgroup that still lists a killed process (5% of the
//     destroys right after Kill), walks the tree and os.RemoveAll-s with
//     retries from 10 ms. Kill+Delete (retried) took 540-600 µs a destroy,
//     Kill+RemoveTree 310-345 µs. Its fallback for kernels without
//     cgroup.kill signals bare PIDs (os.FindProcess) and waits for them;
//     cgroup1's freezer waits for FROZEN without bound, where a task stuck
//     in the kernel would hang the agent. Kill signals through pidfds and
//     retries a stuck freeze a bounded number of times.
//   - Statistics: cgroup1's memory Stat reads 18 files (usage, max, failcnt
//     and limit of memory, memsw, kmem and kmem.tcp, memory.stat,
//     oom_control): 420-480 µs a call against 100-120 µs for the 4 files
//     the cgroups/mem isolator reads. Its cpuacct Stat has no
//     cpuacct.usage_user/usage_sys, which cgroups/cpu prefers for an exact
//     user/system split. The isolators keep their parsers.
//   - Weight: cgroup1 and cgroup2 bring cilium/ebpf, containerd/log,
//     logrus and runtime-spec; linked with the launcher and isolators they
//     add 2.2 MB to the binary (4.2 -> 6.4 MB) and 0.4 ms of package init
//     to every agent start.
package cgroupfs

// DefaultRoot is the cgroup, relative to each hierarchy, that holds every
// container when Options.CgroupsRoot is empty (Mesos' --cgroups_root
// default is "mesos").
const DefaultRoot = "corral"

// DefaultMount is where the cgroup hierarchies are mounted (Mesos'
// --cgroups_hierarchy default): the cgroup2 mount on a unified host, the
// directory of the v1 hierarchies otherwise.
const DefaultMount = "/sys/fs/cgroup"
