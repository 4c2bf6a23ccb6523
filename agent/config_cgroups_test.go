package agent

import (
	"strings"
	"testing"

	"github.com/corral/corral/container"
)

// Bad cgroups flag values are refused at start-up, naming the flag, whether
// or not the isolator that reads them is in --isolation.
func TestCgroupFlagsRefused(t *testing.T) {
	tests := []struct {
		name string
		set  func(c *Config)
		flag string
	}{
		{"pids-word", func(c *Config) { c.CgroupsPidsMax = "lots" }, "--cgroups_pids_max"},
		{"pids-zero", func(c *Config) { c.CgroupsPidsMax = "0" }, "--cgroups_pids_max"},
		{"blkio-low", func(c *Config) { c.CgroupsBlkioWeight = 5 }, "--cgroups_blkio_weight"},
		{"blkio-high", func(c *Config) { c.CgroupsBlkioWeight = 1001 }, "--cgroups_blkio_weight"},
		{"hierarchy-relative", func(c *Config) { c.CgroupsHierarchy = "sys/fs/cgroup" }, "--cgroups_hierarchy"},
		{"root-absolute", func(c *Config) { c.CgroupsRoot = "/corral" }, "--cgroups_root"},
		{"root-escapes", func(c *Config) { c.CgroupsRoot = "../corral" }, "--cgroups_root"},
		{"shm-size", func(c *Config) { c.DefaultContainerShmSize = "lots" }, "--default_container_shm_size"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Master: "127.0.0.1:5050", WorkDir: t.TempDir(), Launcher: "posix"}
			tc.set(&c)
			err := c.defaults()
			if err == nil || !strings.Contains(err.Error(), tc.flag) {
				t.Fatalf("defaults(): %v, want an error naming %s", err, tc.flag)
			}
		})
	}
}

// The flags reach the launcher and isolators as Options.Extra, by flag name;
// swap is limited unless the operator allows it.
func TestContainerOptions(t *testing.T) {
	c := Config{Master: "127.0.0.1:5050", WorkDir: t.TempDir(), Launcher: "posix",
		CgroupsEnableCFS: true, CgroupsPidsMax: "100", CgroupsBlkioWeight: 300, CgroupsHierarchy: "/sys/fs/cgroup",
		DefaultContainerShmSize: "64m"}
	if err := c.defaults(); err != nil {
		t.Fatal(err)
	}
	o := c.containerOptions()
	want := map[string]string{
		"cgroups_enable_cfs": "true", "cgroups_limit_swap": "true", "cgroups_memory_soft_limit": "false",
		"cgroups_pids_max": "100", "cgroups_blkio_weight": "300", "cgroups_hierarchy": "/sys/fs/cgroup",
		"default_container_shm_size": "64m",
	}
	for k, v := range want {
		if o.Extra[k] != v {
			t.Errorf("Extra[%s] = %q, want %q", k, o.Extra[k], v)
		}
	}
	if o.CgroupsRoot != "corral" || o.RuntimeDir != c.RuntimeDir {
		t.Errorf("options %+v, want the cgroups root and runtime dir", o)
	}
	c.CgroupsAllowSwap = true
	if v := c.containerOptions().Extra["cgroups_limit_swap"]; v != "false" {
		t.Errorf("with swap allowed cgroups_limit_swap = %q, want false", v)
	}
}

// With no --launcher the agent picks linux where the linux launcher can run
// (compiled in, root, cgroups mounted), else posix, as Mesos does.
func TestDefaultLauncher(t *testing.T) {
	c := Config{Master: "127.0.0.1:5050", WorkDir: t.TempDir()}
	if err := c.defaults(); err != nil {
		t.Fatal(err)
	}
	want := "posix"
	why := container.LauncherUsable("linux", c.containerOptions())
	if why == nil {
		want = "linux"
	}
	if c.Launcher != want {
		t.Fatalf("default launcher %q, want %q (linux unusable because: %v)", c.Launcher, want, why)
	}
	t.Logf("default launcher here: %s (linux: %v)", c.Launcher, why)
}
