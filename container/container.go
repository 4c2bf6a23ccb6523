// Package container is the contract between the containerizer and what it
// composes: the Launcher that starts and kills a container's processes, the
// Isolators that each own one kind of isolation (and the optional
// capabilities they may have), the Config a container is launched from, the
// registry by which the agent picks launchers and isolators by name, and the
// pidfd-held Process. The agent, the containerizer, the launchers and the
// isolators all depend on it, downwards; it knows nothing of tasks or
// frameworks.
package container

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"syscall"

	"github.com/corral/corral/launcher/containerinit"
)

// Config is everything needed to start one container.
type Config struct {
	ID string
	// Sandbox is the host directory the task starts in; stdout and stderr
	// are written there.
	Sandbox string
	// Argv is the command, already resolved from the task's CommandInfo.
	Argv []string
	// Path is the program to run when it differs from Argv[0].
	Path string
	Env  []string
	// User runs the task as that user when the agent is root; empty keeps
	// the agent's user.
	User      string
	Resources Resources
	// Hostname is ContainerInfo.hostname; isolators fall back to the ID.
	Hostname string
	Volumes  []Volume
	// Capabilities is the task's own request (ContainerInfo.linux_info's
	// effective or bounding capabilities, by name); nil asks for the
	// agent's default.
	Capabilities []string
	// SeccompProfile names the task's seccomp profile (LinuxInfo.seccomp);
	// empty is the agent's default. SeccompUnconfined asks for none.
	SeccompProfile    string
	SeccompUnconfined bool
}

// Volume is a host_path or sandbox_path volume of ContainerInfo, resolved.
type Volume struct {
	// HostPath is the source on the host (already joined with the sandbox
	// for sandbox_path volumes).
	HostPath string
	// ContainerPath is the target: absolute inside the container, or
	// relative to the sandbox.
	ContainerPath string
	ReadOnly      bool
}

// Resources is the part of a resource set the isolators act on.
type Resources struct {
	CPUs      float64
	MemBytes  uint64
	DiskBytes uint64
	// Labels carries per-task overrides, e.g. a pids limit.
	Labels map[string]string
}

// LaunchInfo is what an isolator adds to a launch.
type LaunchInfo struct {
	// CloneFlags are CLONE_NEW* namespaces the container is created in.
	CloneFlags uintptr
	Env        []string
	Mounts     []containerinit.Mount
	Hostname   string
	// RemountProc asks the init for a fresh /proc (new PID namespace).
	RemountProc bool
	// WorkDir overrides the task's working directory as seen in the
	// container (e.g. the sandbox's mount point).
	WorkDir string
	// FinalMounts come after every isolator's Mounts and the fresh /proc:
	// masks over /proc and /sys, hiding the agent's directories.
	FinalMounts []containerinit.Mount
	// CgroupNS gives the container its own cgroup namespace, entered by
	// the init once it is in its cgroups.
	CgroupNS bool
	// ReadonlyRoot makes the container's mounts read-only, except the
	// writable ones it was given (sandbox, /tmp, volumes).
	ReadonlyRoot bool
	// Capabilities bounds the task's capabilities (kernel numbers); the
	// narrowest set given by any isolator wins.
	Capabilities *[]uint
	// NoNewPrivs sets no_new_privs for the task.
	NoNewPrivs bool
	// Seccomp is the raw BPF filter the task runs under.
	Seccomp []byte
}

// Isolator owns one kind of isolation for every container. Calls for one
// container are made in order (Prepare, Isolate, ..., Cleanup) and never
// concurrently; calls for different containers may be concurrent.
type Isolator interface {
	Name() string
	// Recover is called once at start-up with the containers the agent knows;
	// anything the isolator finds that is not among them is its to remove.
	Recover(ctx context.Context, known []*Config) error
	// Prepare runs before the container's processes exist.
	Prepare(ctx context.Context, c *Config) (*LaunchInfo, error)
	// Isolate runs once the container's first process exists, paused before
	// it starts the task.
	Isolate(ctx context.Context, id string, pid int) error
	// Cleanup undoes everything the isolator made for the container; it is
	// called after every process of the container is gone, also after a
	// failed Prepare, and must be idempotent.
	Cleanup(ctx context.Context, id string) error
}

// Watcher is an isolator that can detect a container exceeding its limits.
// It calls report at most once per container, from any goroutine.
type Watcher interface {
	Watch(id string, report func(Limitation)) error
}

// Updater is an isolator whose limits change in place.
type Updater interface {
	Update(ctx context.Context, id string, r Resources) error
}

// UsageReporter is an isolator that can read a container's usage; it fills
// the fields it knows.
type UsageReporter interface {
	Usage(ctx context.Context, id string, s *Usage) error
}

// Finalizer is an isolator that must look at a container once more after its
// init has exited but before the launcher removes the container's cgroup:
// the cgroups/mem isolator reads memory.events there, since on cgroup v2 the
// OOM notification may still be in flight when the init's exit is seen.
type Finalizer interface {
	Finalize(ctx context.Context, id string)
}

// LauncherChecker is an isolator that works only with some launchers (the
// cgroups isolators on cgroup v2 write into the linux launcher's cgroup).
// New asks it about the chosen launcher, so a bad combination fails at
// start-up with the isolator's reason rather than at the first launch.
type LauncherChecker interface {
	CheckLauncher(l Launcher) error
}

// NamespaceIsolator is an isolator whose isolation rests on namespaces that
// the launcher creates from its LaunchInfo.CloneFlags (namespaces/pid,
// namespaces/ipc, namespaces/uts, filesystem/linux). New refuses it with a
// launcher that is not a NamespaceLauncher, so the combination fails at
// start-up rather than at the first launch.
type NamespaceIsolator interface {
	NeedsNamespaces() bool
}

// NamespaceLauncher is a launcher that creates the namespaces asked for in
// ForkSpec.CloneFlags. A launcher that does not implement it is taken to be
// unable to.
type NamespaceLauncher interface {
	CreatesNamespaces() bool
}

// Usage is a container's resource statistics, in Mesos' ResourceStatistics
// terms (the agent converts it to the wire message).
type Usage struct {
	CPUsUserTimeSecs      float64
	CPUsSystemTimeSecs    float64
	CPUsLimit             float64
	CPUsNrPeriods         uint32
	CPUsNrThrottled       uint32
	CPUsThrottledTimeSecs float64
	MemTotalBytes         uint64
	MemRSSBytes           uint64
	MemCacheBytes         uint64
	MemSwapBytes          uint64
	MemLimitBytes         uint64
	MemSoftLimitBytes     uint64
	// MemPressureSome and MemPressureFull are the container's memory
	// pressure stall information (cgroup v2 memory.pressure), set as
	// "mem_pressure" where the kernel has it. Not in Mesos'
	// ResourceStatistics; the agent emits them as mem_pressure_* fields.
	MemPressureSome PSI
	MemPressureFull PSI
	DiskUsedBytes   uint64
	DiskLimitBytes  uint64
	Processes       uint32
	Threads         uint32
	// Set records which fields were filled, by their Mesos names
	// (cpus_user_time_secs, mem_rss_bytes, ...).
	Set map[string]bool
}

// PSI is one line ("some" or "full") of a pressure stall file.
type PSI struct {
	Avg10, Avg60, Avg300 float64
	// TotalMicros is the total stall time in microseconds.
	TotalMicros uint64
}

// Limitation is a limit the kernel or an isolator enforced on a container.
type Limitation struct {
	// Reason is a Mesos TaskStatus.Reason name, e.g.
	// REASON_CONTAINER_LIMITATION_MEMORY.
	Reason  string
	Message string
}

// Termination is how a container ended.
type Termination struct {
	// Status is the raw wait status of the task (not of the init), valid
	// when StatusKnown.
	Status      syscall.WaitStatus
	StatusKnown bool
	// Limitation is set when an isolator caused the end.
	Limitation *Limitation
	// Destroyed is true when the container was destroyed (killed) rather
	// than ending by itself.
	Destroyed bool
	// NotStarted is true when the task never started: the init ended
	// without the go-ahead (the agent that launched it died before giving
	// it) and nobody destroyed it. It may be launched again.
	NotStarted bool
	// Message says in words what happened.
	Message string
}

// ForkSpec is what a Launcher starts: always the container init, paused on
// its sync pipe.
type ForkSpec struct {
	ID   string
	Path string
	Argv []string
	Env  []string
	Dir  string
	// Files are stdin, stdout, stderr and the sync pipe, in that order.
	Files      []*os.File
	CloneFlags uintptr
}

// Launcher creates and destroys a container's processes and is the owner of
// whatever tracks them (session, cgroup).
type Launcher interface {
	Name() string
	// Fork starts the container's first process.
	Fork(ctx context.Context, spec *ForkSpec) (*Process, error)
	// Recover re-attaches the processes of known containers (ID → init
	// process, nil when it is gone) and destroys anything else it finds.
	Recover(ctx context.Context, known map[string]*Process) error
	// Destroy kills every process of the container and releases what the
	// launcher made for it; it returns once they are gone.
	Destroy(ctx context.Context, id string) error
}

// Options configures launchers and isolators built from the registry.
type Options struct {
	RuntimeDir string
	// CgroupsRoot is the cgroup (under each hierarchy) that holds every
	// container's cgroup.
	CgroupsRoot string
	// CgroupsHierarchy is where cgroups are mounted (--cgroups_hierarchy):
	// a cgroup2 mount, or the folder of the v1 hierarchies; "" is
	// /sys/fs/cgroup.
	CgroupsHierarchy string
	// TrackingCgroups are cgroups outside the root that the linux launcher
	// also puts each container's processes in (systemd's own hierarchies on
	// v1, so that systemd counts them in the containers' scope).
	TrackingCgroups []string
	// WorkDir is the agent's --work_dir (sandboxes and checkpoints).
	WorkDir string
	// LauncherDir holds corral-init (--launcher_dir).
	LauncherDir string
	// HostPrivileges (--host_privileges) gives tasks the agent's full
	// privileges: isolators that contain tasks step aside.
	HostPrivileges bool
	// Settings are the launchers' and isolators' own typed flags.
	Settings SettingsSet
	// Log is where launchers and isolators log; nil is slog.Default().
	Log *slog.Logger
}

// Logger is o.Log, or slog.Default() when unset.
func (o Options) Logger() *slog.Logger {
	if o.Log != nil {
		return o.Log
	}
	return slog.Default()
}

var (
	registryMu     sync.RWMutex
	launchers      = map[string]func(Options) (Launcher, error){}
	launcherChecks = map[string]func(Options) error{}
	launcherSetups = map[string][]func(context.Context, Options) (Options, error){}
	isolators      = map[string]func(Options) (Isolator, error){}
)

// RegisterLauncherSetup adds a step that adapts the options of launcher
// name before it is built, as launcher/systemd moves the linux launcher's
// containers into systemd's scope: the agent names no launcher, it runs
// the steps (SetUpLauncher). Steps run in registration order.
func RegisterLauncherSetup(name string, setup func(context.Context, Options) (Options, error)) {
	registryMu.Lock()
	defer registryMu.Unlock()
	launcherSetups[name] = append(launcherSetups[name], setup)
}

// SetUpLauncher runs launcher name's setup steps on o.
func SetUpLauncher(ctx context.Context, name string, o Options) (Options, error) {
	registryMu.RLock()
	steps := launcherSetups[name]
	registryMu.RUnlock()
	for _, step := range steps {
		var err error
		if o, err = step(ctx, o); err != nil {
			return o, err
		}
	}
	return o, nil
}

// RegisterLauncherCheck gives a registered launcher a cheap test of whether
// it can run on this host (privileges, mounts) without building it; the
// agent uses it to pick its default launcher as Mesos does.
func RegisterLauncherCheck(name string, check func(Options) error) {
	registryMu.Lock()
	defer registryMu.Unlock()
	launcherChecks[name] = check
}

// LauncherUsable reports why the launcher registered as name cannot run
// here, or nil when it can. A launcher that is not compiled in is unusable.
func LauncherUsable(name string, o Options) error {
	registryMu.RLock()
	_, ok := launchers[name]
	check := launcherChecks[name]
	registryMu.RUnlock()
	if !ok {
		return fmt.Errorf("launcher %q is not compiled in", name)
	}
	if check == nil {
		return nil
	}
	return check(o)
}

// RegisterLauncher makes a launcher available by name (database/sql style:
// compile it in and it is selectable with --launcher).
func RegisterLauncher(name string, build func(Options) (Launcher, error)) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := launchers[name]; dup {
		panic("containerizer: launcher " + name + " registered twice")
	}
	launchers[name] = build
}

// RegisterIsolator makes an isolator available to --isolation by its Mesos
// name.
func RegisterIsolator(name string, build func(Options) (Isolator, error)) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := isolators[name]; dup {
		panic("containerizer: isolator " + name + " registered twice")
	}
	isolators[name] = build
}

// NewLauncher builds the launcher registered as name.
func NewLauncher(name string, o Options) (Launcher, error) {
	registryMu.RLock()
	build, ok := launchers[name]
	registryMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("unknown launcher %q (known: %v)", name, keys(launchers))
	}
	return build(o)
}

// NewIsolator builds the isolator registered as name.
func NewIsolator(name string, o Options) (Isolator, error) {
	registryMu.RLock()
	build, ok := isolators[name]
	registryMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("unknown isolator %q (known: %v)", name, keys(isolators))
	}
	return build(o)
}

func keys[V any](m map[string]V) []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Reattacher is an isolator that needs a recovered container's init PID
// (read from the container's runtime record after the pidfd that holds it
// proved it the same process): the posix isolators find a container's
// processes by its session.
type Reattacher interface {
	Reattach(id string, pid int)
}
