package agent

import (
	"strings"
	"testing"

	"github.com/corral/corral/container"
)

// Bad cgroups flag values are refused at start-up, naming the flag, whether
// or not the isolator that reads them is in --isolation. (The isolators'
// own flags: config_settings_linux_test.go.)
func TestCgroupFlagsRefused(t *testing.T) {
	tests := []struct {
		name string
		set  func(c *Config)
		flag string
	}{
		{"hierarchy-relative", func(c *Config) { c.CgroupsHierarchy = "sys/fs/cgroup" }, "--cgroups_hierarchy"},
		{"root-absolute", func(c *Config) { c.CgroupsRoot = "/corral" }, "--cgroups_root"},
		{"root-escapes", func(c *Config) { c.CgroupsRoot = "../corral" }, "--cgroups_root"},
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
