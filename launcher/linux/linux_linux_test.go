package linux_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral/corral/container"
	"github.com/corral/corral/internal/testsupport"
	"github.com/corral/corral/launcher/linux"
)

// The task starts inside its cgroup: before it execs (CLONE_INTO_CGROUP on
// v2, the init moved while paused on v1).
func TestTaskStartsInItsCgroup(t *testing.T) {
	forEachMode(t, func(t *testing.T, m mode) {
		c, l, prefix := setup(t, m)
		id := prefix + "cg"
		out := run(t, c, &container.Config{ID: id}, "cat /proc/self/cgroup")
		rel := strings.TrimPrefix(l.CgroupPath(id), m.hierarchy)
		want := "0::" + rel
		if !l.CgroupV2() {
			want = ":freezer:" + strings.TrimPrefix(rel, "/freezer")
		}
		if !strings.Contains(out, want+"\n") {
			t.Fatalf("/proc/self/cgroup of the task:\n%s\nwant a line with %q", out, want)
		}
		if exists(l.CgroupPath(id)) {
			t.Fatalf("cgroup %s left after the container ended", l.CgroupPath(id))
		}
	})
}

// Destroy kills a container with many processes, also stopped, traced and
// session-leaving ones, and removes its cgroup.
func TestDestroyKillsEverything(t *testing.T) {
	strace, _ := exec.LookPath("strace")
	tests := []struct {
		name     string
		script   string
		minProcs int
		skip     string
	}{
		{name: "many", script: "for i in $(seq 30); do sleep 1000 & done; setsid sleep 1000 & (sleep 1000 &); wait", minProcs: 33},
		{name: "stopped", script: "sleep 1000 & kill -STOP $!; (sleep 1000 & kill -STOP $!; wait) & kill -STOP $$", minProcs: 4},
		{name: "traced", script: "strace -f -o /dev/null sleep 1000 & strace -o /dev/null sh -c 'sleep 1000 & wait' & wait", minProcs: 6,
			skip: map[bool]string{true: "", false: "strace is not installed (apt-get install strace)"}[strace != ""]},
	}
	forEachMode(t, func(t *testing.T, m mode) {
		c, l, prefix := setup(t, m)
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				if tc.skip != "" {
					t.Skip(tc.skip)
				}
				id := prefix + tc.name
				launch(t, c, &container.Config{ID: id}, tc.script)
				dir := l.CgroupPath(id)
				waitFor(t, "processes started", func() bool { return len(procsIn(dir)) >= tc.minProcs })
				if tc.name == "traced" {
					time.Sleep(100 * time.Millisecond) // let strace attach
				}
				start := time.Now()
				term, err := c.Destroy(context.Background(), id)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("destroyed %d processes in %v", tc.minProcs, time.Since(start))
				if !term.Destroyed || !term.StatusKnown || !term.Status.Signaled() || term.Status.Signal() != syscall.SIGKILL {
					t.Fatalf("termination %+v, want destroyed by SIGKILL", term)
				}
				if exists(dir) {
					t.Fatalf("cgroup %s survived destroy", dir)
				}
				if leaks := testsupport.Leaks(id); len(leaks) > 0 {
					t.Fatalf("left after destroy: %v", leaks)
				}
			})
		}
	})
}

// A task that forks as fast as it can, with children that leave its session
// and process group, cannot outrun the destroy.
func TestNoChildEscapes(t *testing.T) {
	forEachMode(t, func(t *testing.T, m mode) {
		c, l, prefix := setup(t, m)
		id := prefix + "forker"
		launch(t, c, &container.Config{ID: id},
			"i=0; while [ $i -lt 5000 ]; do (setsid sleep 1000 &); i=$((i+1)); done; sleep 1000")
		dir := l.CgroupPath(id)
		waitFor(t, "forking", func() bool { return len(procsIn(dir)) >= 100 })
		if _, err := c.Destroy(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		if exists(dir) {
			t.Fatalf("cgroup %s survived destroy", dir)
		}
		if leaks := testsupport.Leaks(id); len(leaks) > 0 {
			t.Fatalf("%d escaped the destroy, e.g. %v", len(leaks), leaks[0])
		}
	})
}

// A known container whose cgroup is not under the launcher's root — started
// by an agent with another root, as before an upgrade to systemd's scope —
// is adopted where it is: destroying it kills it and removes its cgroup.
func TestRecoverAdoptsContainerOutsideRoot(t *testing.T) {
	forEachMode(t, func(t *testing.T, m mode) {
		c, l, prefix := setup(t, m)
		id := prefix + "elsewhere"
		launch(t, c, &container.Config{ID: id}, "sleep 1000")
		old := l.CgroupPath(id)
		waitFor(t, "the container running", func() bool { return len(procsIn(old)) >= 2 })
		// Its init is the oldest process of the cgroup.
		var init *container.Process
		for _, s := range procsIn(old) {
			pid, _ := strconv.Atoi(s)
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if strings.Contains(string(b), "corral-init") {
				st, err := container.ProcessStartTime(pid)
				if err != nil {
					t.Fatal(err)
				}
				if init, err = container.OpenProcess(pid, st); err != nil {
					t.Fatal(err)
				}
			}
		}
		if init == nil {
			t.Fatalf("no corral-init among %v", procsIn(old))
		}
		defer init.Close()

		l2 := newLauncher(t, m, prefix+"other-")
		if err := l2.Recover(context.Background(), map[string]*container.Process{id: init}); err != nil {
			t.Fatal(err)
		}
		if err := l2.Destroy(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		if exists(old) {
			t.Fatalf("cgroup %s survived the destroy of the adopted container (processes %v)", old, procsIn(old))
		}
		if leaks := testsupport.Leaks(id); len(leaks) > 0 {
			t.Fatalf("the adopted container's processes survived: %v", leaks)
		}
	})
}

// Recover takes back the known containers and destroys an orphan cgroup with
// live processes, made by hand.
func TestRecoverDestroysOrphans(t *testing.T) {
	forEachMode(t, func(t *testing.T, m mode) {
		c, l, prefix := setup(t, m)
		knownID := prefix + "known"
		launch(t, c, &container.Config{ID: knownID}, "sleep 1000")
		waitFor(t, "known container running", func() bool { return len(procsIn(l.CgroupPath(knownID))) >= 2 })

		orphanID := prefix + "orphan"
		orphan := l.CgroupPath(orphanID)
		if err := os.Mkdir(orphan, 0o755); err != nil {
			t.Fatal(err)
		}
		var cmds []*exec.Cmd
		for i := 0; i < 3; i++ {
			cmd := exec.Command("sleep", "1000")
			cmd.Env = []string{"MARKER=" + orphanID}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			cmds = append(cmds, cmd)
			if err := os.WriteFile(filepath.Join(orphan, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		// A cgroup below the orphan's, as a task with delegation could make.
		if err := os.Mkdir(filepath.Join(orphan, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(orphan, "sub", "cgroup.procs"), []byte(strconv.Itoa(cmds[2].Process.Pid)), 0o644); err != nil {
			t.Fatal(err)
		}

		// A restarted agent: a new launcher on the same root.
		l2, err := linux.New(container.Options{CgroupsRoot: prefix + "root", CgroupsHierarchy: m.hierarchy})
		if err != nil {
			t.Fatal(err)
		}
		if err := l2.Recover(context.Background(), map[string]*container.Process{knownID: nil}); err != nil {
			t.Fatal(err)
		}
		for _, cmd := range cmds {
			err := cmd.Wait()
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("orphan process: %v, want killed", err)
			}
		}
		if exists(orphan) {
			t.Fatalf("orphan cgroup %s survived recovery", orphan)
		}
		if ids, _ := l2.Containers(); len(ids) != 1 || ids[0] != knownID {
			t.Fatalf("containers after recovery %v, want only %s", ids, knownID)
		}
		if n := len(procsIn(l.CgroupPath(knownID))); n < 2 {
			t.Fatalf("known container has %d processes after recovery", n)
		}
		// The containerizer forgets a container once it has ended, so the
		// wait must be under way before the recovered launcher kills it.
		type result struct {
			term *container.Termination
			err  error
		}
		ended := make(chan result, 1)
		go func() {
			term, err := c.Wait(context.Background(), knownID)
			ended <- result{term, err}
		}()
		time.Sleep(200 * time.Millisecond)
		if err := l2.Destroy(context.Background(), knownID); err != nil {
			t.Fatal(err)
		}
		r := <-ended
		if r.err != nil {
			t.Fatalf("wait %s: %v", knownID, r.err)
		}
		term := r.term
		if term.Status.Signal() != syscall.SIGKILL {
			t.Fatalf("known container ended %+v, want killed by the recovered launcher", term)
		}
	})
}

// The launcher enables the controllers the cgroups isolators need below the
// root (v2 with controllers only).
func TestV2Controllers(t *testing.T) {
	testsupport.RequireRoot(t)
	m := modes()[1]
	if m.hierarchy == "" {
		t.Skip(m.why)
	}
	avail, _ := os.ReadFile(filepath.Join(m.hierarchy, "cgroup.controllers"))
	if !strings.Contains(string(avail), "memory") {
		t.Skipf("the cgroup2 hierarchy at %s offers no controllers (hybrid host, controllers bound to v1); exercised in the VM tier", m.hierarchy)
	}
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	l := newLauncher(t, m, prefix)
	on, err := os.ReadFile(filepath.Join(filepath.Dir(l.CgroupPath("x")), "cgroup.subtree_control"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ctl := range []string{"cpu", "memory", "pids"} {
		if strings.Contains(string(avail), ctl) && !strings.Contains(string(on), ctl) {
			t.Errorf("controller %s not enabled below the root: %q", ctl, on)
		}
	}
}

// namespaces/pid: the task is a low PID and sees only its container's
// processes.
func TestPIDNamespace(t *testing.T) {
	m := firstMode(t)
	c, _, prefix := setup(t, m, "namespaces/pid")
	out := run(t, c, &container.Config{ID: prefix + "pid"},
		`echo "self $$"; echo "ps $(ps -e -o pid= | wc -l)"; echo "proc $(ls -d /proc/[0-9]* | wc -l)"`)
	fields := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 {
			fields[f[0]], _ = strconv.Atoi(f[1])
		}
	}
	// init is 1; its runtime's threads take the next few PIDs (a thread
	// has a PID of its own namespace), so the task comes soon after. On the
	// host it would be far higher.
	if fields["self"] < 2 || fields["self"] > 32 {
		t.Errorf("task PID %d in its namespace, want a low one after init's threads:\n%s", fields["self"], out)
	}
	if fields["ps"] < 2 || fields["ps"] > 6 || fields["proc"] < 2 || fields["proc"] > 6 {
		t.Errorf("the task sees more than its own processes:\n%s", out)
	}
}

// namespaces/ipc: a System V queue and a /dev/shm file made in one container
// are seen neither in another one nor on the host.
func TestIPCNamespace(t *testing.T) {
	m := firstMode(t)
	c, _, prefix := setup(t, m, "namespaces/ipc")
	shmFile := prefix + "shm"
	out := run(t, c, &container.Config{ID: prefix + "ipc-a"},
		"ipcmk -Q >/dev/null && ipcs -q | grep '^0x' && echo hi > /dev/shm/"+shmFile+" && ls /dev/shm")
	keys := regexp.MustCompile(`(?m)^(0x[0-9a-f]+)`).FindAllString(out, -1)
	if len(keys) != 1 || !strings.Contains(out, shmFile) {
		t.Fatalf("container A: want its one queue and its shm file:\n%s", out)
	}
	outB := run(t, c, &container.Config{ID: prefix + "ipc-b"}, "ipcs -q | grep -c '^0x' || true; ls /dev/shm")
	if strings.TrimSpace(strings.Split(outB, "\n")[0]) != "0" || strings.Contains(outB, shmFile) {
		t.Fatalf("container B sees A's IPC objects:\n%s", outB)
	}
	host, _ := exec.Command("ipcs", "-q").Output()
	if strings.Contains(string(host), keys[0]) {
		t.Fatalf("the host sees the container's queue %s:\n%s", keys[0], host)
	}
	if exists("/dev/shm/" + shmFile) {
		_ = os.Remove("/dev/shm/" + shmFile)
		t.Fatal("the container's /dev/shm file is on the host's /dev/shm")
	}
}

// namespaces/uts: ContainerInfo.hostname, else the container ID cut to 64.
func TestHostname(t *testing.T) {
	m := firstMode(t)
	c, _, prefix := setup(t, m, "namespaces/uts")
	hostBefore, _ := os.Hostname()
	long := prefix + strings.Repeat("x", 80)
	tests := []struct {
		name, id, hostname, want string
	}{
		{name: "given", id: prefix + "uts1", hostname: "web-1.example", want: "web-1.example"},
		{name: "from-id", id: prefix + "uts2", want: prefix + "uts2"},
		{name: "long-id", id: long, want: long[:64]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := run(t, c, &container.Config{ID: tc.id, Hostname: tc.hostname}, "hostname")
			if strings.TrimSpace(out) != tc.want {
				t.Fatalf("hostname %q, want %q", strings.TrimSpace(out), tc.want)
			}
		})
	}
	if h, _ := os.Hostname(); h != hostBefore {
		t.Fatalf("host's hostname changed from %q to %q", hostBefore, h)
	}
}

// filesystem/linux: the sandbox at /mnt/mesos/sandbox, a private /tmp,
// volumes RO and RW; nothing shows in the host's mount table.
func TestFilesystemLinux(t *testing.T) {
	m := firstMode(t)
	c, _, prefix := setup(t, m, "filesystem/linux")
	hostDir := t.TempDir()
	roSrc := filepath.Join(hostDir, "ro-src")
	rwSrc := filepath.Join(hostDir, "rw-src")
	fileSrc := filepath.Join(hostDir, "file-src")
	for _, d := range []string{roSrc, rwSrc} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(roSrc, "data"), []byte("ro-data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fileSrc, []byte("file-data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	absTarget := filepath.Join(t.TempDir(), "abs-ro")
	id := prefix + "fs"
	cfg := &container.Config{ID: id, Volumes: []container.Volume{
		{HostPath: roSrc, ContainerPath: "ro", ReadOnly: true},
		{HostPath: rwSrc, ContainerPath: "sub/rw"},
		{HostPath: fileSrc, ContainerPath: "/tmp/file", ReadOnly: true},
		{HostPath: roSrc, ContainerPath: absTarget, ReadOnly: true},
	}}
	script := `set -e
echo "pwd $(pwd)"
echo "sandbox $MESOS_SANDBOX"
echo mine > /mnt/mesos/sandbox/written
echo tmp > /tmp/` + prefix + `tmpfile
cat ro/data
cat /tmp/file
cat ` + absTarget + `/data
if touch ro/x 2>/dev/null; then echo ro-writable; else echo ro-denied; fi
if touch ` + absTarget + `/x 2>/dev/null; then echo abs-writable; else echo abs-denied; fi
if echo x > /tmp/file 2>/dev/null; then echo file-writable; else echo file-denied; fi
echo rw > sub/rw/out
grep -c ' /mnt/mesos/sandbox ' /proc/self/mountinfo`
	out := run(t, c, cfg, script)
	sandbox := cfg.Sandbox
	for _, want := range []string{"pwd /mnt/mesos/sandbox\n", "sandbox /mnt/mesos/sandbox\n", "ro-data\n", "file-data\n",
		"ro-denied\n", "abs-denied\n", "file-denied\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in the task's output:\n%s", want, out)
		}
	}
	for path, want := range map[string]string{
		filepath.Join(sandbox, "written"):               "mine\n",
		filepath.Join(sandbox, "tmp", prefix+"tmpfile"): "tmp\n",
		filepath.Join(rwSrc, "out"):                     "rw\n",
		filepath.Join(roSrc, "data"):                    "ro-data\n",
		fileSrc:                                         "file-data\n",
	} {
		if b, err := os.ReadFile(path); err != nil || string(b) != want {
			t.Errorf("%s = %q (%v), want %q", path, b, err, want)
		}
	}
	if exists(filepath.Join("/tmp", prefix+"tmpfile")) {
		t.Error("the task's /tmp file is in the host's /tmp")
	}
	if exists(filepath.Join(roSrc, "x")) {
		t.Error("the read-only volume was written")
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), "/mnt/mesos/sandbox") || strings.Contains(string(mi), prefix) {
		t.Error("container mounts leaked into the host's mount table")
	}
}

// Bad input fails the launch with a message naming the cause, and leaves
// nothing behind.
func TestFilesystemBadVolumes(t *testing.T) {
	m := firstMode(t)
	c, l, prefix := setup(t, m, "filesystem/linux")
	tests := []struct {
		name string
		vol  container.Volume
		want string
	}{
		{name: "missing-host-path", vol: container.Volume{HostPath: "/nonexistent/" + prefix, ContainerPath: "data"}, want: "no such file or directory"},
		{name: "relative-host-path", vol: container.Volume{HostPath: "rel", ContainerPath: "data"}, want: "must be an absolute path"},
		{name: "escapes-sandbox", vol: container.Volume{HostPath: "/etc", ContainerPath: "../../etc2"}, want: "escapes the sandbox"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := prefix + tc.name
			sandbox := filepath.Join(t.TempDir(), id)
			_ = os.Mkdir(sandbox, 0o755)
			err := c.Launch(context.Background(), &container.Config{ID: id, Sandbox: sandbox, Argv: []string{"true"}, Volumes: []container.Volume{tc.vol}})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "filesystem/linux") {
				t.Fatalf("launch error %v, want one naming filesystem/linux and %q", err, tc.want)
			}
			if exists(l.CgroupPath(id)) {
				t.Fatal("a failed launch left its cgroup")
			}
		})
	}
}

// The acceptance check of issue 3: the task sees its own cgroup and only its
// own processes, with every namespace isolator and the cgroups isolators
// that are compiled in.
func TestFullyIsolatedPs(t *testing.T) {
	m := firstMode(t)
	c, _, prefix := setup(t, m, isolation(t)...)
	out := run(t, c, &container.Config{ID: prefix + "ps"}, "cat /proc/self/cgroup; ps ax; hostname")
	lines := strings.Split(out, "\n")
	nps := 0
	for _, line := range lines {
		if regexp.MustCompile(`^\s*\d+ `).MatchString(line) {
			nps++
		}
	}
	if nps == 0 || nps > 4 || !strings.Contains(out, prefix+"ps") {
		t.Fatalf("want the container's cgroup, its few processes and its hostname:\n%s", out)
	}
	t.Logf("\n%s", out)
}

// isolation is the full set the benchmark and the acceptance test use:
// namespaces and filesystem always, cgroups ones when compiled in.
func isolation(t testing.TB) []string {
	names := []string{"namespaces/pid", "namespaces/ipc", "namespaces/uts", "filesystem/linux"}
	for _, n := range []string{"cgroups/cpu", "cgroups/mem", "cgroups/pids"} {
		if _, err := container.NewIsolator(n, container.Options{}); err == nil {
			names = append([]string{n}, names...)
		} else {
			t.Logf("%s not compiled in: %v", n, firstLine(err))
		}
	}
	return names
}

func firstLine(err error) string { return strings.SplitN(fmt.Sprint(err), "\n", 2)[0] }

// A container that ends before anyone waits for it (a task that exits at
// once) still has its end told to a later Wait.
func TestWaitAfterEnd(t *testing.T) {
	m := firstMode(t)
	c, _, prefix := setup(t, m)
	id := prefix + "quick"
	launch(t, c, &container.Config{ID: id}, "exit 3")
	waitFor(t, "container ended", func() bool {
		for _, cid := range c.Containers() {
			if cid == id {
				return false
			}
		}
		return true
	})
	term := wait(t, c, id)
	if !term.StatusKnown || !term.Status.Exited() || term.Status.ExitStatus() != 3 {
		t.Fatalf("termination %+v, want exit 3", term)
	}
}

// On v1 under systemd each container init also joins the containers' scope
// in systemd's own hierarchy (Options.TrackingCgroups); when that scope has
// vanished, launches go on without it. The host's cgroup2 hierarchy stands
// in for systemd's.
func TestTrackingCgroups(t *testing.T) {
	testsupport.RequireRoot(t)
	var m mode
	for _, md := range modes() {
		if md.name == "v1" && md.hierarchy != "" {
			m = md
		}
	}
	if m.hierarchy == "" || !isFS("/sys/fs/cgroup/unified", unix.CGROUP2_SUPER_MAGIC) {
		t.Skip("needs a v1 freezer hierarchy and the hybrid cgroup2 one at /sys/fs/cgroup/unified")
	}
	prefix := testsupport.Prefix(t)
	testsupport.CheckLeaks(t, prefix)
	track := filepath.Join("/sys/fs/cgroup/unified", prefix+"scope")
	if err := os.Mkdir(track, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Rmdir(track) })
	l, err := linux.New(container.Options{CgroupsRoot: prefix + "root",
		CgroupsHierarchy: m.hierarchy, TrackingCgroups: []string{track}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.RemoveRoot(); err != nil {
			t.Errorf("removing cgroups root: %v", err)
		}
	})
	c := newContainerizer(t, l)
	first := prefix + "tracked"
	launch(t, c, &container.Config{ID: first}, "sleep 1000")
	waitFor(t, "the init in the tracking cgroup", func() bool { return len(procsIn(track)) >= 1 })
	if _, err := c.Destroy(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the tracking cgroup empty", func() bool { return len(procsIn(track)) == 0 })

	if err := unix.Rmdir(track); err != nil {
		t.Fatal(err)
	}
	second := prefix + "untracked"
	launch(t, c, &container.Config{ID: second}, "sleep 1000")
	waitFor(t, "the second container running", func() bool { return len(procsIn(l.CgroupPath(second))) >= 2 })
}
