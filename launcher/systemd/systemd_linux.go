// Package systemd keeps Corral's containers out of the agent's unit when
// systemd is PID 1, so `systemctl restart|stop corral-agent` leaves tasks
// running (Mesos' "systemd lifetime extension").
//
// All of a node's containers live under one transient scope, created
// through systemd's D-Bus API in a slice of their own
// (corral-executors.slice) with Delegate=yes: systemd neither kills them
// with the agent nor rewrites or migrates what Corral makes below the scope.
// A scope lives while it holds a process, and containers come and go, so a
// keeper process (corral-init --keep-scope) holds it from its creation on;
// restarted agents find the scope running and reuse it. One scope per node
// rather than one per container keeps D-Bus off the launch path: a
// container is placed with cgroupfs writes, as without systemd.
//
// cgroup v2: the containers' cgroups root moves below the scope
// (<scope>/<cgroups_root>/<container>), the keeper sits in <scope>/keeper
// so that the scope can enable controllers for its children.
// cgroup v1: controller cgroups stay where they were (<hierarchy>/<root>/
// <container>); only systemd's own tracking hierarchies (name=systemd, and
// the cgroup2 one on hybrid hosts) see each container's init moved into the
// scope, which is all systemd's killing looks at.
package systemd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"github.com/corral/corral/container"
	"github.com/corral/corral/container/cgroupfs"
)

// DefaultSlice holds the containers' scope (dist/systemd ships it).
const DefaultSlice = "corral-executors.slice"

// KeeperArg is corral-init's argument for the keeper mode.
const KeeperArg = "--keep-scope"

// keeperCgroup is the keeper's leaf below the scope on cgroup v2.
const keeperCgroup = "keeper"

const cgroupMount = cgroupfs.DefaultMount

// Booted reports whether systemd is PID 1 (sd_booted(3)).
func Booted() bool {
	fi, err := os.Lstat("/run/systemd/system")
	return err == nil && fi.IsDir()
}

// Config names the scope and how to start its keeper.
type Config struct {
	// Root is the agent's --cgroups_root; the scope's unit name derives
	// from it, so agents with different roots get different scopes.
	Root string
	// Slice holds the scope; DefaultSlice when empty.
	Slice string
	// Init is the path of corral-init, run as the keeper.
	Init string
}

// Scope is the running transient scope that holds the containers.
type Scope struct {
	Unit string
	// Cgroup is the scope's cgroup, relative to the hierarchy root
	// ("corral.slice/corral-executors.slice/corral.scope").
	Cgroup string
	v2     bool
}

// UnitName is the scope's unit name for a cgroups root: "/" becomes "-" as
// in systemd's path escaping, but a "-" stays as it is (a scope's name, unlike
// a slice's, says nothing about nesting, and operators type these names).
func UnitName(root string) string {
	return unitEscape(strings.Trim(root, "/")) + ".scope"
}

// unitEscape: "/" becomes "-", and anything outside [A-Za-z0-9:_.-] (or a
// leading ".") is \xNN.
func unitEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '/':
			b.WriteByte('-')
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == ':', c == '_', c == '-', c == '.' && i > 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, `\x%02x`, c)
		}
	}
	return b.String()
}

// Ensure returns the containers' scope, starting it (with a new keeper)
// when it is not running.
func Ensure(ctx context.Context, cfg Config) (*Scope, error) {
	if cfg.Slice == "" {
		cfg.Slice = DefaultSlice
	}
	if !strings.HasSuffix(cfg.Slice, ".slice") {
		return nil, fmt.Errorf("--systemd_slice %q: want a slice unit name such as %q", cfg.Slice, DefaultSlice)
	}
	v2, err := unified()
	if err != nil {
		return nil, err
	}
	conn, err := sddbus.NewWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to systemd over D-Bus: %w", err)
	}
	defer conn.Close()
	s := &Scope{Unit: UnitName(cfg.Root), v2: v2}

	state, err := unitString(ctx, conn, s.Unit, "Unit", "ActiveState")
	if err != nil {
		return nil, err
	}
	switch state {
	case "active":
		// A previous agent's scope: its keeper (or its containers) hold it.
	case "activating", "deactivating", "reloading":
		return nil, fmt.Errorf("systemd unit %s is %s; retry once it settles", s.Unit, state)
	default:
		if state == "failed" {
			_ = conn.ResetFailedUnitContext(ctx, s.Unit)
		}
		if err := start(ctx, conn, s.Unit, cfg); err != nil {
			return nil, err
		}
	}
	cg, err := unitString(ctx, conn, s.Unit, "Scope", "ControlGroup")
	if err != nil {
		return nil, err
	}
	if cg == "" {
		return nil, fmt.Errorf("systemd unit %s has no control group", s.Unit)
	}
	s.Cgroup = strings.Trim(cg, "/")
	if v2 {
		if err := s.settleKeeperV2(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// start creates the scope around a new keeper and waits for the job.
func start(ctx context.Context, conn *sddbus.Conn, unit string, cfg Config) error {
	keeper := exec.Command(cfg.Init, KeeperArg, unit)
	keeper.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	keeper.Dir = "/" // it outlives the agent: it must not pin the agent's cwd
	// Its own session: no signal aimed at the agent's process group
	// reaches it. The agent does not wait for it; once the agent exits it
	// is re-parented to init, and it lives as long as the scope.
	keeper.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := keeper.Start(); err != nil {
		return fmt.Errorf("starting the scope keeper %s: %w", cfg.Init, err)
	}
	pid := keeper.Process.Pid
	go func() { _ = keeper.Wait() }() // reaped if it dies while the agent runs
	props := []sddbus.Property{
		sddbus.PropDescription("Corral containers (the agent's cgroups root " + cfg.Root + ")"),
		sddbus.PropSlice(cfg.Slice),
		sddbus.PropPids(uint32(pid)),
		// Corral owns everything below the scope: systemd does not touch,
		// migrate or prune it.
		{Name: "Delegate", Value: godbus.MakeVariant(true)},
	}
	ch := make(chan string, 1)
	if _, err := conn.StartTransientUnitContext(ctx, unit, "fail", props, ch); err != nil {
		_ = keeper.Process.Kill()
		return fmt.Errorf("creating systemd scope %s in %s: %w", unit, cfg.Slice, err)
	}
	select {
	case res := <-ch:
		if res != "done" {
			_ = keeper.Process.Kill()
			return fmt.Errorf("creating systemd scope %s in %s: job %s", unit, cfg.Slice, res)
		}
	case <-ctx.Done():
		_ = keeper.Process.Kill()
		return fmt.Errorf("creating systemd scope %s: %w", unit, ctx.Err())
	}
	return nil
}

// settleKeeperV2 moves whatever sits in the scope's own cgroup (the keeper)
// into a leaf: on cgroup v2 a cgroup that enables controllers for its
// children holds no processes.
func (s *Scope) settleKeeperV2() error {
	dir := filepath.Join(cgroupMount, s.Cgroup)
	pids, err := cgroupfs.ReadPids(dir)
	if err != nil {
		return fmt.Errorf("reading the scope's processes: %w", err)
	}
	if len(pids) == 0 {
		return nil
	}
	leaf := filepath.Join(dir, keeperCgroup)
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("creating the keeper's cgroup: %w", err)
	}
	for _, p := range pids {
		if err := cgroupfs.WriteFile(filepath.Join(leaf, "cgroup.procs"), strconv.Itoa(p)); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("moving process %d of scope %s into %s: %w", p, s.Unit, leaf, err)
		}
	}
	return nil
}

// Apply points the launcher and isolators at the scope: on cgroup v2 the
// cgroups root moves below it; on v1 the linux launcher is told the scope's
// cgroups in systemd's tracking hierarchies.
func (s *Scope) Apply(o container.Options) container.Options {
	root := o.CgroupsRoot
	if root == "" {
		root = cgroupfs.DefaultRoot
	}
	if s.v2 {
		o.CgroupsRoot = s.Cgroup + "/" + strings.Trim(root, "/")
		return o
	}
	var dirs []string
	for _, h := range []string{"systemd", "unified"} {
		d := filepath.Join(cgroupMount, h, s.Cgroup)
		if _, err := os.Stat(d); err == nil {
			dirs = append(dirs, d)
		}
	}
	o.TrackingCgroups = dirs
	return o
}

// Stop stops the scope, killing what it holds: for tests and for
// operators tearing a node down (`systemctl stop` does the same).
func Stop(ctx context.Context, unit string) error {
	conn, err := sddbus.NewWithContext(ctx)
	if err != nil {
		return fmt.Errorf("connecting to systemd over D-Bus: %w", err)
	}
	defer conn.Close()
	ch := make(chan string, 1)
	if _, err := conn.StopUnitContext(ctx, unit, "replace", ch); err != nil {
		if strings.Contains(err.Error(), "not loaded") {
			return nil
		}
		return fmt.Errorf("stopping %s: %w", unit, err)
	}
	select {
	case <-ch:
	case <-ctx.Done():
		return fmt.Errorf("stopping %s: %w", unit, ctx.Err())
	}
	_ = conn.ResetFailedUnitContext(ctx, unit)
	return nil
}

// Processes lists the processes in a scope's cgroup tree, as systemd's
// tracking hierarchy (cgroup2, or name=systemd on v1) has them; nothing when
// the scope does not run.
func Processes(ctx context.Context, unit string) ([]int, error) {
	conn, err := sddbus.NewWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to systemd over D-Bus: %w", err)
	}
	defer conn.Close()
	cg, err := unitString(ctx, conn, unit, "Scope", "ControlGroup")
	if err != nil || cg == "" {
		return nil, err
	}
	v2, err := unified()
	if err != nil {
		return nil, err
	}
	base := cgroupMount
	if !v2 {
		base = filepath.Join(cgroupMount, "systemd")
	}
	return cgroupfs.TreePids(filepath.Join(base, cg)), nil
}

func unitString(ctx context.Context, conn *sddbus.Conn, unit, iface, prop string) (string, error) {
	var p *sddbus.Property
	var err error
	if iface == "Unit" {
		p, err = conn.GetUnitPropertyContext(ctx, unit, prop)
	} else {
		p, err = conn.GetUnitTypePropertyContext(ctx, unit, iface, prop)
	}
	if err != nil {
		return "", fmt.Errorf("reading %s of systemd unit %s: %w", prop, unit, err)
	}
	v, ok := p.Value.Value().(string)
	if !ok {
		return "", fmt.Errorf("%s of systemd unit %s is %s, not a string", prop, unit, p.Value.Signature())
	}
	return v, nil
}

func unified() (bool, error) {
	v2, _, err := cgroupfs.FSType(cgroupMount)
	return v2, err
}
