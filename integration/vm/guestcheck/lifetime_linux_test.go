package guestcheck

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral/corral/integration/vm/vmenv"
	"github.com/corral/corral/internal/testsupport"
	"github.com/corral/corral/launcher/systemd"
)

// installAgentUnit writes a unit like dist/systemd/corral-agent.service
// (Type=notify, KillMode=process, Delegate=yes) for an agent with args and
// starts it; the cleanup stops and removes it, and stops the containers'
// scope the agent made.
func installAgentUnit(t *testing.T, unit, root string, args ...string) {
	t.Helper()
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = strconv.Quote(a)
	}
	text := fmt.Sprintf(`[Service]
Type=notify
NotifyAccess=main
KillMode=process
Delegate=yes
Environment=CORRAL_VM_MODE=%s
ExecStart=%s
TimeoutStopSec=30s
`, vmenv.Mode(), strings.Join(quoted, " "))
	path := filepath.Join("/run/systemd/system", unit+".service")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := sh(t, "journalctl", "--no-pager", "-q", "-o", "cat", "-u", unit+".service")
			t.Logf("journal of %s:\n%s", unit, tail(out, 80))
		}
		if out, err := sh(t, "systemctl", "stop", unit+".service"); err != nil {
			t.Errorf("systemctl stop %s: %v\n%s", unit, err, out)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := systemd.Stop(ctx, systemd.UnitName(root)); err != nil {
			t.Errorf("stopping the containers' scope: %v", err)
		}
		_ = os.Remove(path)
		sh(t, "systemctl", "daemon-reload")
		sh(t, "systemctl", "reset-failed", unit+".service")
	})
	if out, err := sh(t, "systemctl", "daemon-reload"); err != nil {
		t.Fatalf("daemon-reload: %v\n%s", err, out)
	}
	systemctl(t, "start", unit)
}

// systemctl runs a blocking systemctl verb on a service (for Type=notify,
// start and restart return once the agent said READY=1).
func systemctl(t *testing.T, verb, unit string) {
	t.Helper()
	if out, err := sh(t, "systemctl", verb, unit+".service"); err != nil {
		t.Fatalf("systemctl %s %s: %v\n%s", verb, unit, err, out)
	}
}

// taskProcess finds the process whose command line is argv exactly.
func taskProcess(argv ...string) (pid int, start string) {
	want := strings.Join(argv, "\x00") + "\x00"
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || string(b) != want {
			continue
		}
		return p, startTime(p)
	}
	return 0, ""
}

// startTime is field 22 of /proc/PID/stat: with the PID it names one
// process for good.
func startTime(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// A checkpointing framework's task keeps running through `systemctl
// restart` and `systemctl stop` + `start` of the agent's unit: the linux
// launcher's containers live in a delegated transient scope in
// corral-executors.slice, outside the agent's unit; the agent that comes
// back re-attaches the task and reports how it ends.
func TestGuestTaskOutlivesAgentUnit(t *testing.T) {
	vmenv.Require(t)
	bin := os.Getenv("CORRAL_BIN_DIR")
	corral := filepath.Join(bin, "corral")
	work := t.TempDir()
	ports := testsupport.FreePorts(t, 2)
	masterPort, agentPort := ports[0], ports[1]
	master := fmt.Sprintf("127.0.0.1:%d", masterPort)
	mu, au := unitName("master"), unitName("lagent")
	root := unitName("root")
	scope := systemd.UnitName(root)

	startUnit(t, mu, nil, corral, "master", "--ip", "127.0.0.1", "--port", strconv.Itoa(masterPort))
	installAgentUnit(t, au, root, corral, "agent", "--master", master, "--ip", "127.0.0.1", "--port", strconv.Itoa(agentPort),
		"--work_dir", filepath.Join(work, "agent"), "--resources", "cpus:1;mem:256", "--launcher", "linux",
		"--isolation", "cgroups/cpu,cgroups/mem", "--cgroups_root", root, "--logging_level", "INFO")

	// The task: a sleep with a marker only it has.
	marker := strconv.FormatInt(time.Now().UnixNano()%1e9, 10)
	var out testsupport.SyncBuffer
	run := exec.Command(corral, "run", "--master", master, "--name", "lifetime", "--checkpoint",
		"--command", "exec sleep "+marker, "--resources", "cpus:0.1;mem:32", "--timeout", "5m")
	run.Stdout, run.Stderr = &out, &out
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- run.Wait() }()
	t.Cleanup(func() {
		_ = run.Process.Signal(syscall.SIGTERM)
		select {
		case <-runDone:
		case <-time.After(30 * time.Second):
			_ = run.Process.Kill()
		}
	})
	var pid int
	var start string
	testsupport.Eventually(t, "the running task", 2*time.Minute, func() bool {
		pid, start = taskProcess("sleep", marker)
		return pid != 0 && strings.Contains(out.String(), "TASK_RUNNING")
	})

	// It lives in the scope, not in the agent's unit.
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	unifiedCg, systemdCg := cgroupPaths(string(cg))
	tracked := unifiedCg
	if vmenv.Mode() == vmenv.V1 {
		tracked = systemdCg
	}
	if want := "/corral.slice/" + systemd.DefaultSlice + "/" + scope + "/"; !strings.HasPrefix(tracked+"/", want) {
		t.Fatalf("the task is in cgroup %q, want it below %s; /proc/%d/cgroup:\n%s", tracked, want, pid, cg)
	}
	if st := unitProp(t, scope, "ActiveState"); st != "active" {
		t.Errorf("scope %s is %q, want active", scope, st)
	}
	t.Logf("task %d in %s", pid, tracked)

	alive := func() bool { return startTime(pid) == start }
	for _, step := range [][]string{{"restart"}, {"stop", "start"}} {
		for _, verb := range step {
			systemctl(t, verb, au)
			if !alive() {
				t.Fatalf("the task died on `systemctl %s %s`", verb, au)
			}
		}
		if strings.Contains(out.String(), "TASK_LOST") || strings.Contains(out.String(), "TASK_FAILED") {
			t.Fatalf("corral run saw the task end after `systemctl %s`:\n%s", strings.Join(step, "+"), out.String())
		}
	}

	// The agent that came back re-attached the task: its end is seen and
	// reported with the real cause.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-runDone:
	case <-time.After(2 * time.Minute):
		t.Fatalf("corral run did not end within 2m of the task's death:\n%s", out.String())
	}
	if got := out.String(); !strings.Contains(got, "TASK_FAILED") {
		t.Errorf("corral run did not report TASK_FAILED:\n%s", got)
	}
	// The container's cgroup goes (on v1 its freezer cgroup, which the
	// launcher tracks it by); the scope stays for the next container.
	ctrCg := filepath.Join("/sys/fs/cgroup", tracked)
	if vmenv.Mode() == vmenv.V1 {
		ctrCg = filepath.Join("/sys/fs/cgroup/freezer", root, filepath.Base(v1CgroupOf(t, "freezer", string(cg))))
	}
	testsupport.Eventually(t, "container cgroup "+ctrCg+" removed", time.Minute, func() bool {
		_, err := os.Stat(ctrCg)
		return os.IsNotExist(err)
	})
	if st := unitProp(t, scope, "ActiveState"); st != "active" {
		t.Errorf("scope %s is %q after the task ended, want active (its keeper holds it)", scope, st)
	}
}

// v1CgroupOf is the path in /proc/PID/cgroup's line for a v1 controller.
func v1CgroupOf(t *testing.T, controller, procCgroup string) string {
	t.Helper()
	for _, line := range strings.Split(procCgroup, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && slices.Contains(strings.Split(parts[1], ","), controller) {
			return parts[2]
		}
	}
	t.Fatalf("no %s line in:\n%s", controller, procCgroup)
	return ""
}
