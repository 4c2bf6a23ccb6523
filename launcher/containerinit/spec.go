// Package containerinit is the first process of every container: it waits for
// the agent to finish isolating it, applies the in-namespace set-up steps,
// starts the task, forwards signals, reaps everything it inherits and records
// the task's exit status in the runtime directory so an agent that was down
// when the task ended still learns how it ended.
//
// It links only the standard library's smallest packages: it runs once per
// container, so its start-up cost is paid on every launch.
package containerinit

import "syscall"

// Spec is what the agent tells the init, sent as one JSON line on the sync
// pipe: no file to write on the launch path, and nothing of it shows in
// /proc/<pid>/cmdline.
type Spec struct {
	// Argv is the task's command line.
	Argv []string `json:"argv"`
	// Path is the program to execute, resolved through PATH; empty means
	// Argv[0] (Mesos' CommandInfo with shell=false names them apart).
	Path string `json:"path,omitempty"`
	// Dir is the working directory as seen after the mounts below.
	Dir string `json:"dir,omitempty"`
	// StatusPath receives the raw wait status of the task when it ends.
	StatusPath string `json:"status_path"`
	// StartedPath is created once the go-ahead came, before the task is
	// started: an agent recovering after a crash tells a container whose
	// task never ran (launched again) from one whose task may have.
	StartedPath string `json:"started_path,omitempty"`
	// Hostname is set when the container has its own UTS namespace.
	Hostname string `json:"hostname,omitempty"`
	// Mounts are applied in order inside the container's mount namespace.
	Mounts []Mount `json:"mounts,omitempty"`
	// UID/GID switch the task's credentials when set (non-nil).
	UID *uint32 `json:"uid,omitempty"`
	GID *uint32 `json:"gid,omitempty"`
	// Groups are the supplementary groups with UID.
	Groups []uint32 `json:"groups,omitempty"`
	// CgroupNS unshares a cgroup namespace once the init sits in its
	// cgroups (the go-ahead says it does), before the mounts: cgroup file
	// systems mounted then show the container's own cgroup as their root.
	CgroupNS bool `json:"cgroupns,omitempty"`
	// ReadonlyRoot makes every mount of the container read-only once the
	// mounts are made, except those in Mounts that were not asked to be.
	ReadonlyRoot bool `json:"readonly_root,omitempty"`
	// Capabilities, when set, is the bounding (and inheritable) set of the
	// task, as kernel capability numbers; the init keeps its own effective
	// set to finish the start (setuid). Nil keeps the agent's.
	Capabilities *[]uint `json:"capabilities,omitempty"`
	// NoNewPrivs sets no_new_privs for the task: setuid binaries and file
	// capabilities grant nothing.
	NoNewPrivs bool `json:"no_new_privs,omitempty"`
	// Seccomp is a classic BPF program (struct sock_filter array) loaded
	// for the task; it implies NoNewPrivs.
	Seccomp []byte `json:"seccomp,omitempty"`
}

// Mount is one step of the container's mount view, applied in order. With
// no Op it is one mount(2) call. A mount whose Flags carry MS_RDONLY is made
// read-only only after every step ran (recursively with MS_REC), so later
// steps can still create mount points inside it; the kernel ignores
// MS_RDONLY on a bind anyway.
type Mount struct {
	Op     MountOp `json:"op,omitempty"`
	Source string  `json:"source,omitempty"`
	Target string  `json:"target"`
	FSType string  `json:"fstype,omitempty"`
	Flags  uintptr `json:"flags,omitempty"`
	Data   string  `json:"data,omitempty"`
	// MkdirTarget creates Target (and parents) before mounting.
	MkdirTarget bool `json:"mkdir_target,omitempty"`
	// Optional skips the step when Target does not exist (a /proc file
	// this kernel lacks, a directory already covered by another mount).
	Optional bool `json:"optional,omitempty"`
	// Keep lists, for OpHide, the paths below Target that stay visible
	// (the container's own sandbox), carried over from before the hiding.
	Keep []string `json:"keep,omitempty"`
	// Mode and Dev are the file mode and device number of OpMknod.
	Mode uint32 `json:"mode,omitempty"`
	Dev  uint64 `json:"dev,omitempty"`
}

// MountOp names a step of the mount view other than a plain mount(2).
type MountOp string

const (
	// OpMount (empty) is mount(Source, Target, FSType, Flags, Data).
	OpMount MountOp = ""
	// OpHide covers Target with an empty tmpfs, read-only once every step
	// ran, and puts back the trees named in Keep at their own paths.
	OpHide MountOp = "hide"
	// OpReadonly makes the existing mount at Target read-only (with MS_REC
	// in Flags, every mount below it too) once every step ran.
	OpReadonly MountOp = "readonly"
	// OpSymlink creates Target as a symbolic link to Source.
	OpSymlink MountOp = "symlink"
	// OpMknod creates the device node Target with Mode and Dev.
	OpMknod MountOp = "mknod"
)

// SyncFD is the descriptor on which the init reads its spec and then waits
// for the agent's go-ahead: one byte means "isolated, start the task"; EOF
// means "abort".
const SyncFD = 3

// ExitAborted is the init's exit code when the agent aborted the launch.
const ExitAborted = 126

// DestroySignal asks the init to kill everything in the container and exit.
// A real-time signal: no task expects it forwarded.
const DestroySignal = syscall.Signal(40)

// ExitSetupFailed is the init's exit code when its set-up failed; the reason is
// written to stderr, which the agent captures in the sandbox.
const ExitSetupFailed = 125
