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
	// RemountProc mounts a fresh /proc, for containers in their own PID
	// namespace, so the task sees only its own processes.
	RemountProc bool `json:"remount_proc,omitempty"`
}

// Mount is one mount(2) call. Bind mounts that should end read-only need
// Flags to carry MS_RDONLY: the init remounts them, since the kernel ignores
// MS_RDONLY on the first bind.
type Mount struct {
	Source string  `json:"source"`
	Target string  `json:"target"`
	FSType string  `json:"fstype,omitempty"`
	Flags  uintptr `json:"flags,omitempty"`
	Data   string  `json:"data,omitempty"`
	// MkdirTarget creates Target (and parents) before mounting.
	MkdirTarget bool `json:"mkdir_target,omitempty"`
}

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
