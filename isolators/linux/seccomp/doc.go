// Package seccomp compiles seccomp profiles, in the Docker/OCI JSON format
// that Mesos' --seccomp_config_dir holds, to the raw classic-BPF program the
// container init loads last, just before it execs the task.
//
// Corral's default profile is a deny list, not Docker's allow list. The
// capability bounding set and no_new_privs carry most of the weight: nearly
// every call below is already refused without CAP_SYS_ADMIN, CAP_SYS_MODULE,
// CAP_SYS_PTRACE and friends. The filter is there for the calls that are
// dangerous to an unprivileged process anyway (user namespaces, keyrings,
// bpf, userfaultfd, perf) and as a second wall for the rest. A deny list also
// ages well: a system call the kernel adds later is allowed, as it would be on
// the host, instead of failing inside containers only until someone edits an
// allow list; new kernel attack surface is expected to be covered by the
// capability checks the kernel itself puts on it.
//
// The program is assembled here rather than by go-seccomp-bpf's
// Policy.Assemble, whose syscall tables we use: after a failed argument
// comparison it tests the next syscall number against the argument still in
// the accumulator, so a crafted argument can select another rule's action.
// Here each syscall number owns one block that ends in a return, so nothing
// is ever compared with a clobbered accumulator. Calls whose outcome depends
// only on the syscall number touch nothing but the number and the
// architecture, which lets the kernel (5.11+) cache them as always-allowed
// and skip the filter entirely.
package seccomp
