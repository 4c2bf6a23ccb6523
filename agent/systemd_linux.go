package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/corral/corral/container"
	"github.com/corral/corral/launcher/systemd"
)

// systemdOptions puts the linux launcher's containers in systemd's
// containers scope when systemd is PID 1 and --systemd_enable_support is on,
// so that they outlive the agent's unit (launcher/systemd). The posix
// launcher's containers stay in the agent's unit, whose KillMode=process
// leaves them running.
func systemdOptions(cfg *Config, opts container.Options) (container.Options, error) {
	if !cfg.SystemdEnableSupport || cfg.Launcher != "linux" || !systemd.Booted() {
		return opts, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	scope, err := systemd.Ensure(ctx, systemd.Config{
		Root: cfg.CgroupsRoot, Init: filepath.Join(cfg.LauncherDir, "corral-init"),
	})
	if err != nil {
		return opts, fmt.Errorf("--systemd_enable_support: %w (or run with --systemd_enable_support=false)", err)
	}
	cfg.Log.Info("containers live in a systemd scope", "unit", scope.Unit, "cgroup", scope.Cgroup)
	return scope.Apply(opts), nil
}
