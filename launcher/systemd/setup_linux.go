package systemd

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/corral/corral/container"
)

// Settings the agent passes in container.Options.Extra.
const (
	// EnableKey is --systemd_enable_support ("true" or "false").
	EnableKey = "systemd_enable_support"
	// LauncherDirKey is --launcher_dir, which holds corral-init (the
	// scope's keeper).
	LauncherDirKey = "launcher_dir"
)

func init() { container.RegisterLauncherSetup("linux", setUp) }

// setUp puts the linux launcher's containers in systemd's containers scope
// when systemd is PID 1 and --systemd_enable_support is on, so that they
// outlive the agent's unit. The posix launcher's containers stay in the
// agent's unit, whose KillMode=process leaves them running.
func setUp(ctx context.Context, o container.Options) (container.Options, error) {
	if o.Extra[EnableKey] != "true" || !Booted() {
		return o, nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	scope, err := Ensure(ctx, Config{Root: o.CgroupsRoot, Init: filepath.Join(o.Extra[LauncherDirKey], "corral-init")})
	if err != nil {
		return o, fmt.Errorf("--systemd_enable_support: %w (or run with --systemd_enable_support=false)", err)
	}
	o.Logger().Info("containers live in a systemd scope", "unit", scope.Unit, "cgroup", scope.Cgroup)
	return scope.Apply(o), nil
}
