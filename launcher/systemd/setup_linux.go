package systemd

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/corral/corral/container"
)

func init() { container.RegisterLauncherSetup("linux", setUp) }

// setUp puts the linux launcher's containers in systemd's containers scope
// when systemd is PID 1 and --systemd_enable_support is on, so that they
// outlive the agent's unit. The posix launcher's containers stay in the
// agent's unit, whose KillMode=process leaves them running.
func setUp(ctx context.Context, o container.Options) (container.Options, error) {
	if !container.SettingsOf[*Settings](o).EnableSupport || !Booted() {
		return o, nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	scope, err := Ensure(ctx, Config{Root: o.CgroupsRoot, Init: filepath.Join(o.LauncherDir, "corral-init")})
	if err != nil {
		return o, fmt.Errorf("--systemd_enable_support: %w (or run with --systemd_enable_support=false)", err)
	}
	o.Logger().Info("containers live in a systemd scope", "unit", scope.Unit, "cgroup", scope.Cgroup)
	return scope.Apply(o), nil
}
