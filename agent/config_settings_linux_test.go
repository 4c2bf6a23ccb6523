package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/corral/corral/container"
	"github.com/corral/corral/isolators/cgroups"
	"github.com/corral/corral/isolators/disk"
	"github.com/corral/corral/isolators/namespaces"
)

// parseSettings parses args as the agent's command line does: every
// registered launcher's and isolator's flags on one flag set.
func parseSettings(t *testing.T, args ...string) container.SettingsSet {
	t.Helper()
	s := container.NewSettings()
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	s.Flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return s
}

// Bad values of the isolators' flags are refused at start-up, naming the
// flag, whether or not the isolator that reads them is in --isolation.
func TestSettingsFlagsRefused(t *testing.T) {
	tests := []struct {
		arg, flag string
	}{
		{"--cgroups_pids_max=lots", "--cgroups_pids_max"},
		{"--cgroups_pids_max=0", "--cgroups_pids_max"},
		{"--cgroups_blkio_weight=5", "--cgroups_blkio_weight"},
		{"--cgroups_blkio_weight=1001", "--cgroups_blkio_weight"},
		{"--default_container_shm_size=lots", "--default_container_shm_size"},
		{"--xfs_project_range=10000-5000", "--xfs_project_range"},
		{"--xfs_project_range=[0-10]", "--xfs_project_range"},
		{"--xfs_project_range=lots", "--xfs_project_range"},
		{"--container_disk_watch_interval=0s", "--container_disk_watch_interval"},
		{"--seccomp_profile_name=default.json", "--seccomp_profile_name"},
	}
	for _, tc := range tests {
		t.Run(tc.arg, func(t *testing.T) {
			c := Config{Master: "127.0.0.1:5050", WorkDir: t.TempDir(), Launcher: "posix", Settings: parseSettings(t, tc.arg)}
			err := c.defaults()
			if err == nil || !strings.Contains(err.Error(), tc.flag) {
				t.Fatalf("defaults() with %s: %v, want an error naming %s", tc.arg, err, tc.flag)
			}
		})
	}
	// A duration the flag cannot parse is refused by the flag set itself.
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	container.NewSettings().Flags(fs)
	if err := fs.Parse([]string{"--container_disk_watch_interval=soon"}); err == nil || !strings.Contains(err.Error(), "container_disk_watch_interval") {
		t.Errorf("--container_disk_watch_interval=soon: %v, want an error naming the flag", err)
	}
}

// The parsed flags reach the launcher and isolators in Options, typed; the
// defaults are Mesos' where Mesos has the flag, and swap is limited unless
// the operator allows it.
func TestContainerOptions(t *testing.T) {
	c := Config{Master: "127.0.0.1:5050", WorkDir: t.TempDir(), Launcher: "posix", CgroupsHierarchy: "/sys/fs/cgroup",
		Settings: parseSettings(t, "--cgroups_enable_cfs", "--cgroups_pids_max=100", "--cgroups_blkio_weight=300",
			"--default_container_shm_size=64m", "--enforce_container_disk_quota", "--container_disk_watch_interval=2secs")}
	if err := c.defaults(); err != nil {
		t.Fatal(err)
	}
	o := c.containerOptions()
	cg := container.SettingsOf[*cgroups.Settings](o)
	if want := (cgroups.Settings{EnableCFS: true, LimitSwap: true, PidsMax: "100", BlkioWeight: 300}); *cg != want {
		t.Errorf("cgroups settings %+v, want %+v", *cg, want)
	}
	if ns := container.SettingsOf[*namespaces.Settings](o); ns.ShmSize != "64m" {
		t.Errorf("shm size %q, want 64m", ns.ShmSize)
	}
	if d := container.SettingsOf[*disk.Settings](o); !d.Enforce || d.WatchInterval != 2*time.Second || d.ProjectRange != disk.DefaultProjectRange || d.Kill {
		t.Errorf("disk settings %+v, want enforcement, a 2s watch, the default range, no kill", *d)
	}
	if o.CgroupsRoot != "corral" || o.RuntimeDir != c.RuntimeDir || o.CgroupsHierarchy != "/sys/fs/cgroup" || o.WorkDir != c.WorkDir {
		t.Errorf("options %+v, want the cgroups root and hierarchy, runtime dir and work_dir", o)
	}
	noSwapLimit := Config{Settings: parseSettings(t, "--cgroups_limit_swap=false")}
	if cg := container.SettingsOf[*cgroups.Settings](noSwapLimit.containerOptions()); cg.LimitSwap {
		t.Errorf("--cgroups_limit_swap=false reached cgroups/mem as LimitSwap")
	}

	// An agent built without flags (a zero set) gets every family's
	// defaults.
	var bare Config
	d := container.SettingsOf[*disk.Settings](bare.containerOptions())
	if d.WatchInterval != 15*time.Second || d.ProjectRange != "[5000-10000]" || d.Enforce || d.Kill {
		t.Errorf("default disk settings %+v, want Mesos' 15s, [5000-10000], no enforcement", *d)
	}
	if cg := container.SettingsOf[*cgroups.Settings](bare.containerOptions()); !cg.LimitSwap || cg.PidsMax != "max" || cg.BlkioWeight != 500 {
		t.Errorf("default cgroups settings %+v, want swap limited, pids max, weight 500", *cg)
	}
}
