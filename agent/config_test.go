package agent

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/corral/corral/agent/gc"
)

func ptr[T any](v T) *T { return &v }

func TestTotalResources(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		flag    string
		check   func(t *testing.T, cpus, mem float64, s string)
		wantErr string
	}{
		{flag: "", check: func(t *testing.T, cpus, mem float64, s string) {
			if cpus < 1 || mem < 1 || !strings.Contains(s, "ports:[31000-32000]") || !strings.Contains(s, "disk:") {
				t.Errorf("detected %s", s)
			}
		}},
		{flag: "cpus:3;mem:512", check: func(t *testing.T, cpus, mem float64, s string) {
			if cpus != 3 || mem != 512 {
				t.Errorf("given cpus:3;mem:512, got %s", s)
			}
		}},
		{flag: "ports:[1000-1001];gpus:1", check: func(t *testing.T, _, _ float64, s string) {
			if !strings.Contains(s, "ports:[1000-1001]") || strings.Contains(s, "31000") || !strings.Contains(s, "gpus:1") {
				t.Errorf("got %s", s)
			}
		}},
		{flag: "cpus:abc", wantErr: "--resources"},
		{flag: "cpus:0", wantErr: "cpus must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.flag, func(t *testing.T) {
			r, err := totalResources(tc.flag, dir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, r.Scalar("cpus"), r.Scalar("mem"), r.String())
		})
	}
}

func TestConfigErrorsNameTheFlag(t *testing.T) {
	tests := []struct {
		cfg  Config
		flag string
	}{
		{Config{WorkDir: "/tmp/x"}, "--master"},
		{Config{Master: "m:1"}, "--work_dir"},
		{Config{Master: "m:1", WorkDir: "/tmp/x", IP: "not-an-ip"}, "--ip"},
		{Config{Master: "m:1", WorkDir: "/tmp/x", Port: 70000}, "--port"},
		{Config{Master: "m:1", WorkDir: "/tmp/x", Launcher: "posix", Recover: "restore"}, "--recover"},
		{Config{Master: "m:1", WorkDir: "/tmp/x", Launcher: "posix", StatusUpdateRetryMin: time.Hour, StatusUpdateRetryMax: time.Minute}, "--status_update_retry_interval_max"},
		{Config{Master: "m:1", WorkDir: "/tmp/x", Launcher: "posix", GCDelay: -time.Hour}, "--gc_delay"},
		{Config{Master: "m:1", WorkDir: "/tmp/x", Launcher: "posix", DiskWatchInterval: -time.Second}, "--disk_watch_interval"},
		{Config{Master: "m:1", WorkDir: "/tmp/x", Launcher: "posix", GCDiskHeadroom: ptr(1.5)}, "--gc_disk_headroom"},
		{Config{Master: "m:1", WorkDir: "/tmp/x", Launcher: "posix", GCDiskHeadroom: ptr(-0.1)}, "--gc_disk_headroom"},
		{Config{Master: "m:1", WorkDir: "/tmp/x", Launcher: "posix", GCDiskHeadroom: ptr(math.NaN())}, "--gc_disk_headroom"},
		{Config{Master: "m:1", WorkDir: "/tmp/x", Launcher: "posix", GCInodeThreshold: 2}, "--gc_inode_threshold"},
		{Config{Master: "m:1", WorkDir: "/tmp/x", Launcher: "posix", GCMaxSandboxes: -1}, "--gc_max_sandboxes"},
		{Config{Master: "m:1", WorkDir: "/tmp/x", Launcher: "posix", GCParallelism: -1}, "--gc_parallelism"},
	}
	for _, tc := range tests {
		err := tc.cfg.defaults()
		if err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("%+v: err = %v, want it to name %s", tc.cfg, err, tc.flag)
		}
	}
}

func TestRecoveryDefaults(t *testing.T) {
	c := Config{Master: "m:1", WorkDir: t.TempDir(), Launcher: "posix"}
	if err := c.defaults(); err != nil {
		t.Fatal(err)
	}
	if c.Recover != RecoverReconnect || c.NonStrict || c.ExecutorReregistrationTimeout != 2*time.Second ||
		c.RecoveryTimeout != 15*time.Minute || c.StatusUpdateRetryMin != 10*time.Second || c.StatusUpdateRetryMax != 10*time.Minute {
		t.Errorf("defaults: recover %q non-strict %v rereg %v recovery %v retry %v..%v; want Mesos' reconnect, strict, 2s, 15m, 10s..10m",
			c.Recover, c.NonStrict, c.ExecutorReregistrationTimeout, c.RecoveryTimeout, c.StatusUpdateRetryMin, c.StatusUpdateRetryMax)
	}
	if got := subscriptionBackoffMax(c.ExecutorReregistrationTimeout); got != 500*time.Millisecond {
		t.Errorf("executor re-subscription backoff cap %v, want 500ms (a quarter of the re-registration timeout)", got)
	}
}

// The GC flags default to Mesos' values and reach the collector, and a
// headroom of 0 given on the command line stays 0.
func TestDiskDefaults(t *testing.T) {
	c := Config{Master: "m:1", WorkDir: t.TempDir(), Launcher: "posix"}
	if err := c.defaults(); err != nil {
		t.Fatal(err)
	}
	if c.GCDelay != 7*24*time.Hour || c.DiskWatchInterval != time.Minute || c.GCParallelism != 4 {
		t.Errorf("defaults: gc_delay %v disk_watch_interval %v gc_parallelism %d", c.GCDelay, c.DiskWatchInterval, c.GCParallelism)
	}
	if g := c.gcConfig(); g.DiskHeadroomSet || g.WorkDir != c.WorkDir || g.Delay != c.GCDelay {
		t.Errorf("gc config %+v: want the default headroom, the work_dir and gc_delay", g)
	}
	c = Config{Master: "m:1", WorkDir: t.TempDir(), Launcher: "posix", GCDiskHeadroom: ptr(0.0)}
	if err := c.defaults(); err != nil {
		t.Fatal(err)
	}
	g := c.gcConfig()
	if !g.DiskHeadroomSet || g.DiskHeadroom != 0 {
		t.Errorf("--gc_disk_headroom=0 reached the collector as %v (set %v)", g.DiskHeadroom, g.DiskHeadroomSet)
	}
	if _, err := gc.New(g); err != nil {
		t.Errorf("gc.New: %v", err)
	}
}

// The containment isolators come first and once, unless --host_privileges.
func TestContainmentIsolators(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"linux default", Config{Launcher: "linux", Isolation: "cgroups/cpu,cgroups/mem"},
			"namespaces/cgroup,filesystem/masking,linux/capabilities,linux/nnp,linux/seccomp,cgroups/cpu,cgroups/mem"},
		{"posix default", Config{Launcher: "posix", Isolation: DefaultIsolation},
			"linux/capabilities,linux/nnp,linux/seccomp,posix/cpu,posix/mem"},
		{"named again", Config{Launcher: "linux", Isolation: "filesystem/linux, linux/seccomp,filesystem/linux"},
			"namespaces/cgroup,filesystem/masking,linux/capabilities,linux/nnp,linux/seccomp,filesystem/linux"},
		{"host privileges", Config{Launcher: "linux", Isolation: "cgroups/cpu", HostPrivileges: true}, "cgroups/cpu"},
		{"host privileges, named", Config{Launcher: "posix", Isolation: "linux/nnp", HostPrivileges: true}, "linux/nnp"},
	}
	for _, tc := range tests {
		if got := strings.Join(tc.cfg.isolators(), ","); got != tc.want {
			t.Errorf("%s: isolators %s, want %s", tc.name, got, tc.want)
		}
	}
}
