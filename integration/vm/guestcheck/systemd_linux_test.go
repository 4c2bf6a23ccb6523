package guestcheck

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corral/corral/integration/vm/vmenv"
	"github.com/corral/corral/internal/testsupport"
	"github.com/corral/corral/launcher/systemd"
)

// unitName returns a unit name unique to this test process.
func unitName(what string) string {
	return fmt.Sprintf("corral-guestcheck-%s-%d-%d", what, os.Getpid(), time.Now().UnixNano()%1e6)
}

func sh(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// cgroupPath returns the cgroup v2 path ("0::" line) of /proc/self/cgroup
// output, and the name=systemd one (v1 hybrid).
func cgroupPaths(procSelfCgroup string) (unified, systemd string) {
	for _, line := range strings.Split(procSelfCgroup, "\n") {
		switch {
		case strings.HasPrefix(line, "0::"):
			unified = strings.TrimPrefix(line, "0::")
		case strings.Contains(line, ":name=systemd:"):
			systemd = line[strings.Index(line, ":name=systemd:")+len(":name=systemd:"):]
		}
	}
	return
}

// A command started with systemd-run --scope in a slice of its own lands in
// <slice>/<unit>.scope, in every mode: systemd owns the node's cgroups.
func TestGuestScopeInSlice(t *testing.T) {
	vmenv.Require(t)
	unit := unitName("scope")
	slice := "corralgc.slice"
	out, err := sh(t, "systemd-run", "--quiet", "--scope", "--unit", unit, "--slice", slice, "--", "cat", "/proc/self/cgroup")
	if err != nil {
		t.Fatalf("systemd-run --scope: %v\n%s", err, out)
	}
	unified, systemd := cgroupPaths(out)
	want := "/" + slice + "/" + unit + ".scope"
	got := unified
	if vmenv.Mode() == vmenv.V1 {
		got = systemd // hybrid: systemd tracks units in its named v1 hierarchy
	}
	if got != want {
		t.Fatalf("the scope's process is in cgroup %q, want %q; /proc/self/cgroup:\n%s", got, want, out)
	}
	// The slices systemd itself makes are there too.
	base := "/sys/fs/cgroup"
	if vmenv.Mode() == vmenv.V1 {
		base = "/sys/fs/cgroup/systemd"
	}
	for _, s := range []string{"system.slice", "init.scope"} {
		if _, err := os.Stat(filepath.Join(base, s)); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	// The scope ended with its process; systemd removes its cgroup.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := os.Stat(filepath.Join(base, slice, unit+".scope"))
		if os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("scope cgroup still there 10s after its process ended (stat: %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	sh(t, "systemctl", "stop", slice)
}

// On cgroup v2, a unit with Delegate=yes gets the controllers a container
// manager such as Corral's agent needs, and may build cgroups below its own:
// move itself into a leaf, enable controllers for the subtree, make a child
// that offers them.
func TestGuestV2Delegation(t *testing.T) {
	vmenv.Require(t, vmenv.V2)
	unit := unitName("deleg")
	script := `set -e
cg=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/self/cgroup)
echo "cgroup=$cg"
echo "controllers=$(cat $cg/cgroup.controllers)"
mkdir $cg/leaf
echo $$ > $cg/leaf/cgroup.procs
echo "+cpu +memory +pids" > $cg/cgroup.subtree_control
mkdir $cg/child
echo "child=$(cat $cg/child/cgroup.controllers)"
echo 64M > $cg/child/memory.max
echo 32 > $cg/child/pids.max
echo "50000 100000" > $cg/child/cpu.max
echo "limits=$(cat $cg/child/memory.max) $(cat $cg/child/pids.max) $(cat $cg/child/cpu.max)"
rmdir $cg/child
`
	// systemd expands $VAR and $$ in the command line it runs: "$$" is "$".
	out, err := sh(t, "systemd-run", "--quiet", "--wait", "--pipe", "--unit", unit, "-p", "Delegate=yes", "--",
		"/bin/sh", "-c", strings.ReplaceAll(script, "$", "$$"))
	if err != nil {
		t.Fatalf("delegated unit failed: %v\n%s", err, out)
	}
	kv := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			kv[k] = v
		}
	}
	for _, key := range []string{"controllers", "child"} {
		have := strings.Fields(kv[key])
		for _, c := range []string{"cpu", "memory", "pids"} {
			if !slices.Contains(have, c) {
				t.Errorf("%s: controller %s missing (have %v); output:\n%s", key, c, have, out)
			}
		}
	}
	if want := "67108864 32 50000 100000"; kv["limits"] != want {
		t.Errorf("limits in the delegated child = %q, want %q", kv["limits"], want)
	}
	if !strings.Contains(kv["cgroup"], "/system.slice/"+unit+".service") {
		t.Errorf("unit cgroup %q is not system.slice/%s.service", kv["cgroup"], unit)
	}
}

// startUnit runs argv as a transient service and stops it at cleanup,
// showing its journal when the test failed.
func startUnit(t *testing.T, unit string, props []string, argv ...string) {
	t.Helper()
	args := []string{"--quiet", "--unit", unit, "-p", "Type=exec", "--collect"}
	for _, p := range props {
		args = append(args, "-p", p)
	}
	args = append(args, "--setenv=CORRAL_VM_MODE="+vmenv.Mode(), "--")
	args = append(args, argv...)
	if out, err := sh(t, "systemd-run", args...); err != nil {
		t.Fatalf("systemd-run %s: %v\n%s", unit, err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := sh(t, "journalctl", "--no-pager", "-q", "-o", "cat", "-u", unit+".service")
			t.Logf("journal of %s:\n%s", unit, tail(out, 60))
		}
		// --collect: a unit already stopped may be gone ("not loaded").
		if out, err := sh(t, "systemctl", "stop", unit+".service"); err != nil && !strings.Contains(out, "not loaded") {
			t.Errorf("systemctl stop %s: %v\n%s", unit, err, out)
		}
		sh(t, "systemctl", "reset-failed", unit+".service")
	})
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// cgroupOfProcess returns /proc/<pid>/cgroup, read from the host, of the
// first process whose command line (arguments NUL-terminated) is cmdline,
// or "".
func cgroupOfProcess(cmdline string) string {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && string(b) == cmdline {
			if cg, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup")); err == nil {
				return string(cg)
			}
		}
	}
	return ""
}

func unitProp(t *testing.T, unit, prop string) string {
	t.Helper()
	out, _ := sh(t, "systemctl", "show", "-P", prop, unit)
	return strings.TrimSpace(out)
}

// Corral's agent runs as a systemd service (Delegate=yes, as a unit file
// would say), registers with a master running as another service, and runs
// a task that `corral run` launches; stopping the units leaves nothing.
func TestGuestAgentAsSystemdUnit(t *testing.T) {
	vmenv.Require(t)
	bin := os.Getenv("CORRAL_BIN_DIR")
	if bin == "" {
		t.Fatal("CORRAL_BIN_DIR is not set")
	}
	corral := filepath.Join(bin, "corral")
	work := t.TempDir()
	ports := testsupport.FreePorts(t, 2)
	masterPort, agentPort := ports[0], ports[1]
	master := fmt.Sprintf("127.0.0.1:%d", masterPort)
	mu, au := unitName("master"), unitName("agent")
	root := unitName("root")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := systemd.Stop(ctx, systemd.UnitName(root)); err != nil {
			t.Errorf("stopping the containers' scope: %v", err)
		}
	})

	startUnit(t, mu, nil, corral, "master", "--ip", "127.0.0.1", "--port", strconv.Itoa(masterPort), "--logging_level", "INFO")
	startUnit(t, au, []string{"Delegate=yes", "KillMode=mixed"},
		corral, "agent", "--master", master, "--ip", "127.0.0.1", "--port", strconv.Itoa(agentPort),
		"--work_dir", filepath.Join(work, "agent"), "--resources", "cpus:1;mem:256", "--cgroups_root", root, "--logging_level", "INFO")

	// The agent registers: the master's /state lists it.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var state struct {
		Activated int `json:"activated_slaves"`
		Slaves    []struct {
			ID       string `json:"id"`
			Hostname string `json:"hostname"`
		} `json:"slaves"`
	}
	for {
		if ctx.Err() != nil {
			t.Fatalf("the agent did not register with the master within 90s (master %s: %s, agent %s: %s)",
				mu, unitProp(t, mu+".service", "ActiveState"), au, unitProp(t, au+".service", "ActiveState"))
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+master+"/state", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			err = json.NewDecoder(resp.Body).Decode(&state)
			resp.Body.Close()
			if err == nil && state.Activated == 1 && len(state.Slaves) == 1 {
				break
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("agent %s registered", state.Slaves[0].ID)

	// A task through the scheduler API, to its end. Its cgroup is read
	// from the host while it sleeps: inside, its own cgroup namespace
	// shows it at "/".
	const marker = "7.123"
	var out bytes.Buffer
	run := exec.Command(corral, "run", "--master", master, "--name", "guestcheck",
		"--command", "echo hello from the guest; cat /proc/self/cgroup; exec sleep "+marker, "--resources", "cpus:0.1;mem:32", "--timeout", "120s")
	run.Stdout, run.Stderr = &out, &out
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- run.Wait() }()
	var hostView string
	var runErr error
poll:
	for {
		select {
		case runErr = <-done:
			break poll
		case <-time.After(100 * time.Millisecond):
		}
		if hostView == "" {
			hostView = cgroupOfProcess("sleep\x00" + marker + "\x00")
		}
	}
	if runErr != nil {
		t.Fatalf("corral run: %v\n%s", runErr, out.String())
	}
	if !strings.Contains(out.String(), "TASK_FINISHED") {
		t.Fatalf("corral run did not end in TASK_FINISHED:\n%s", out.String())
	}
	m := regexp.MustCompile(`(?m)^Sandbox: (.*)$`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("corral run printed no sandbox:\n%s", out.String())
	}
	stdout, err := os.ReadFile(filepath.Join(m[1], "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(stdout), "hello from the guest") {
		t.Fatalf("task stdout:\n%s", stdout)
	}
	pick := func(procCgroup string) string {
		unified, systemdCg := cgroupPaths(procCgroup)
		if vmenv.Mode() == vmenv.V1 {
			return systemdCg
		}
		return unified
	}
	if inside := pick(string(stdout)); inside != "/" {
		t.Errorf("the task saw itself in cgroup %q, want \"/\" (its own cgroup namespace)", inside)
	}
	if hostView == "" {
		t.Fatalf("the task's sleep was never seen from the host")
	}
	// The task ran in the containers' scope (the linux launcher under
	// systemd), never in the agent's unit.
	taskCg := pick(hostView)
	agentCg := unitProp(t, au+".service", "ControlGroup")
	if want := "/corral.slice/" + systemd.DefaultSlice + "/" + systemd.UnitName(root) + "/"; !strings.HasPrefix(taskCg+"/", want) {
		t.Errorf("the task ran in cgroup %q, want it below %s (the agent unit's is %q)", taskCg, want, agentCg)
	}
	t.Logf("agent unit cgroup %s; task cgroup %s", agentCg, taskCg)
	if st := unitProp(t, au+".service", "ActiveState"); st != "active" {
		t.Errorf("agent unit is %s after the task, want active", st)
	}

	// Stopping the agent's unit ends it and everything in its cgroup.
	if out, err := sh(t, "systemctl", "stop", au+".service"); err != nil {
		t.Fatalf("systemctl stop: %v\n%s", err, out)
	}
	base := "/sys/fs/cgroup"
	if vmenv.Mode() == vmenv.V1 {
		base = "/sys/fs/cgroup/systemd"
	}
	if _, err := os.Stat(filepath.Join(base, agentCg)); !os.IsNotExist(err) {
		t.Errorf("the agent unit's cgroup %s is still there after stop (%v)", agentCg, err)
	}
}
