package e2e

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/testsupport"
)

// fullIsolation is the isolation of the attacks' linux agent: every
// isolator of wave 1 a careful operator would turn on.
const fullIsolation = "cgroups/cpu,cgroups/mem,cgroups/pids,namespaces/pid,namespaces/ipc,namespaces/uts,filesystem/linux"

// An attack is a task that prints ESCAPED when what it tried got through.
type attack struct {
	name string
	// command gets PREFIX replaced by the test's prefix (every host path an
	// attack may leave behind carries it, and the test removes them).
	command string
	// linuxOnly attacks need a mount namespace to be stopped: under the
	// posix launcher a root task owns the host's files as root does.
	linuxOnly bool
}

// workDirOf is the agent's work_dir, from the sandbox's host path.
const workDirOf = `w=${MESOS_DIRECTORY%%/slaves/*}; `

// cgroupFile sets f to the task's own cgroup file named by $1 (v1
// controller) and $2 (v2 file).
const cgroupFile = `cg() { p=$(awk -F: -v c="$1" '$2==c{print $3}' /proc/self/cgroup); if [ -n "$p" ]; then f=/sys/fs/cgroup/$1$p/$2; else f=/sys/fs/cgroup$(awk -F: '$1=="0"{print $3}' /proc/self/cgroup)/$3; fi; }; `

var attacks = []attack{
	{name: "raise-memory-limit", linuxOnly: true, command: cgroupFile +
		// memory+swap first: v1 refuses a memory limit above it.
		`cg memory memory.limit_in_bytes memory.max; sw=${f%/*}/memory.memsw.limit_in_bytes; [ -e $sw ] && echo 2147483648 > $sw
echo 2147483648 > $f && [ "$(cat $f)" = 2147483648 ] && echo ESCAPED`},
	{name: "raise-pids-limit", linuxOnly: true, command: cgroupFile +
		`cg pids pids.max pids.max; echo max > $f && echo ESCAPED`},
	{name: "make-cgroup", linuxOnly: true, command: `{ mkdir /sys/fs/cgroup/pids/PREFIXescape || mkdir /sys/fs/cgroup/PREFIXescape; } && echo ESCAPED`},
	{name: "release-agent", command: `d=$MESOS_SANDBOX/rg; mkdir -p $d
printf '#!/bin/sh\ntouch %s/released\n' "$MESOS_DIRECTORY" > $MESOS_SANDBOX/ra.sh; chmod +x $MESOS_SANDBOX/ra.sh
mount -t cgroup -o none,name=PREFIXra cgroup $d || exit 0
mkdir $d/x && echo 1 > $d/x/notify_on_release && echo "$MESOS_DIRECTORY/ra.sh" > $d/release_agent && sh -c "echo \$\$ > $d/x/cgroup.procs"
i=0; while [ $i -lt 100 ] && [ ! -e $MESOS_SANDBOX/released ]; do sleep 0.05; i=$((i+1)); done
rmdir $d/x; umount $d
[ -e $MESOS_SANDBOX/released ] && echo ESCAPED`},
	{name: "write-root-home", linuxOnly: true, command: `echo x > /root/PREFIXroot && echo ESCAPED`},
	{name: "write-var-tmp", linuxOnly: true, command: `head -c 1048576 /dev/zero > /var/tmp/PREFIXvartmp && echo ESCAPED`},
	{name: "mount", command: `mkdir -p $MESOS_SANDBOX/m; mount -t tmpfs t $MESOS_SANDBOX/m && umount $MESOS_SANDBOX/m && echo ESCAPED`},
	{name: "user-namespace", command: `unshare -U true && echo ESCAPED`},
	{name: "mknod-disk", command: `mknod $MESOS_SANDBOX/disk b 7 0 && echo ESCAPED`},
	{name: "open-host-disk", linuxOnly: true, command: `for d in /dev/*; do [ -b $d ] && { echo ESCAPED; break; }; done`},
	{name: "set-core-pattern", linuxOnly: true, command: `cp=$(cat /proc/sys/kernel/core_pattern); printf '%s\n' "$cp" > /proc/sys/kernel/core_pattern && echo ESCAPED`},
	{name: "read-other-sandbox", linuxOnly: true, command: workDirOf +
		`cat $w/slaves/*/frameworks/*/executors/victim*/runs/*/secret | grep -q s3cret && echo ESCAPED`},
	{name: "touch-checkpoints", linuxOnly: true, command: workDirOf +
		`ls $w/meta >/dev/null && echo x > $w/meta/PREFIXprobe && echo ESCAPED`},
}

// TestContainmentAttacks runs each attack as a root task of the default
// agent, where it must fail, and of an agent with --host_privileges, where
// it must get through: the attacks work, and containment is what stops
// them.
func TestContainmentAttacks(t *testing.T) {
	for _, tc := range []struct {
		name, launcher string
		extra          []string
		contained      bool
	}{
		{"linux", "linux", []string{"--isolation", fullIsolation}, true},
		{"linux-host-privileges", "linux", []string{"--isolation", fullIsolation, "--host_privileges"}, false},
		{"posix", "posix", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The work_dir out of /tmp: filesystem/linux's private /tmp would
			// hide it whatever else does.
			t.Setenv("TMPDIR", "/var/tmp")
			prefix := rootTest(t)
			t.Cleanup(func() { removeAttackLeftovers(t, prefix) })
			c := startCluster(t, prefix, append([]string{"--launcher", tc.launcher}, tc.extra...)...)
			f := newFramework(t, c, "attacker", codec.JSON)
			victim := commandTask(t, "victim", `echo s3cret > secret; touch ready; sleep 1000`)
			f.launch(victim)
			f.running(t, "victim")
			testsupport.Eventually(t, "the victim's secret", taskTimeout, func() bool { return fileExists(filepath.Join(c.sandbox(t, "victim"), "ready")) })

			var ids []string
			for _, a := range attacks {
				if a.linuxOnly && tc.launcher != "linux" {
					continue
				}
				ids = append(ids, a.name)
				f.launch(commandTask(t, a.name, strings.ReplaceAll(a.command, "PREFIX", prefix)))
			}
			ids = append(ids, "privileges")
			f.launch(commandTask(t, "privileges", `grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status`))
			got := f.awaitTerminal(t, ids...)
			for _, id := range ids {
				if s := got[id].last; s.GetState() != mesos.TaskState_TASK_FINISHED && s.GetState() != mesos.TaskState_TASK_FAILED {
					t.Errorf("%s ended %v %v %q", id, s.GetState(), s.GetReason(), s.GetMessage())
				}
			}
			for _, id := range ids[:len(ids)-1] {
				box := c.sandbox(t, id)
				escaped := strings.Contains(readFile(t, filepath.Join(box, "stdout")), "ESCAPED")
				if tc.contained && escaped {
					t.Errorf("attack %s got through: stderr %q", id, readFile(t, filepath.Join(box, "stderr")))
				}
				if !tc.contained && !escaped {
					t.Errorf("attack %s failed with host privileges, so it proves nothing: stderr %q", id, readFile(t, filepath.Join(box, "stderr")))
				}
			}
			status := readFile(t, filepath.Join(c.sandbox(t, "privileges"), "stdout"))
			eff := capabilityMask(t, status, "CapEff")
			const sysAdmin, mknod = 21, 27
			if tc.contained {
				if eff&(1<<sysAdmin|1<<mknod) != 0 || capabilityMask(t, status, "CapBnd") != eff {
					t.Errorf("a root task holds %s", status)
				}
				if !strings.Contains(status, "NoNewPrivs:\t1") || !strings.Contains(status, "Seccomp:\t2") {
					t.Errorf("a root task runs without no_new_privs or seccomp: %s", status)
				}
			} else if eff&(1<<sysAdmin) == 0 {
				t.Errorf("with --host_privileges a root task holds %s, want CAP_SYS_ADMIN", status)
			}
		})
	}
}

// capabilityMask reads one capability line of /proc/PID/status.
func capabilityMask(tb testing.TB, status, field string) uint64 {
	tb.Helper()
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, field+":\t"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				tb.Fatalf("%s: %v", field, err)
			}
			return m
		}
	}
	tb.Fatalf("no %s in %q", field, status)
	return 0
}

// removeAttackLeftovers removes what attacks that got through left on the
// host, each named by the prefix.
func removeAttackLeftovers(tb testing.TB, prefix string) {
	for _, p := range []string{"/root/" + prefix + "root", "/var/tmp/" + prefix + "vartmp"} {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			tb.Errorf("removing %s: %v", p, err)
		}
	}
	for _, d := range []string{"/sys/fs/cgroup/pids/" + prefix + "escape", "/sys/fs/cgroup/" + prefix + "escape"} {
		// EROFS: a host whose /sys/fs/cgroup is read-only (systemd's v1
		// tmpfs) where no attack could make anything.
		if err := syscall.Rmdir(d); err != nil && err != syscall.ENOENT && err != syscall.EROFS {
			tb.Errorf("removing %s: %v", d, err)
		}
	}
}

// TestSandboxOwnedByTaskUser: a task running as nobody owns its sandbox
// (0750) and its stdout and stderr (0640) and can write there; a task of
// nobody cannot read a root task's sandbox, on either launcher.
func TestSandboxOwnedByTaskUser(t *testing.T) {
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	forEachLauncher(t, func(t *testing.T, launcher, prefix string) {
		c := startCluster(t, prefix, "--launcher", launcher)
		// The test's temporary folders are 0700: nobody must be able to
		// reach the work_dir, as on a node.
		for d := filepath.Dir(c.workDir); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		root := newFramework(t, c, "root-framework", codec.JSON)
		root.launch(commandTask(t, "victim", `echo s3cret > secret; sleep 1000`))
		root.running(t, "victim")
		victimBox := c.sandbox(t, "victim")
		testsupport.Eventually(t, "the victim's secret", taskTimeout, func() bool { return fileExists(filepath.Join(victimBox, "secret")) })

		// CommandInfo.user runs them as nobody within the root framework.
		writer := commandTask(t, "writer", `id -u; echo mine > $MESOS_SANDBOX/own && cat $MESOS_SANDBOX/own`)
		reader := commandTask(t, "reader", `cat `+victimBox+`/secret /proc/1/root`+victimBox+`/secret; echo done`)
		for _, ti := range []*mesos.TaskInfo{writer, reader} {
			ti.Command.User = proto.String("nobody")
		}
		root.launch(writer, reader)
		got := root.awaitTerminal(t, "writer", "reader")
		w := got["writer"].last
		box := c.sandbox(t, "writer")
		out := readFile(t, filepath.Join(box, "stdout"))
		if w.GetState() != mesos.TaskState_TASK_FINISHED || out != nobody.Uid+"\nmine\n" {
			t.Errorf("writer ended %v %q with stdout %q, stderr %q; want it to run as %s and write its sandbox",
				w.GetState(), w.GetMessage(), out, readFile(t, filepath.Join(box, "stderr")), nobody.Uid)
		}
		for name, want := range map[string]os.FileMode{box: os.ModeDir | 0o750, filepath.Join(box, "stdout"): 0o640, filepath.Join(box, "stderr"): 0o640} {
			st, err := os.Stat(name)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode() != want || int(st.Sys().(*syscall.Stat_t).Uid) != uid {
				t.Errorf("%s is %v owned by %d, want %v owned by nobody (%d)", name, st.Mode(), st.Sys().(*syscall.Stat_t).Uid, want, uid)
			}
		}
		if st, _ := os.Stat(victimBox); st == nil || st.Mode().Perm() != 0o750 {
			t.Errorf("the root task's sandbox is %v, want 0750", st.Mode())
		}
		if out := readFile(t, filepath.Join(c.sandbox(t, "reader"), "stdout")); strings.Contains(out, "s3cret") || !strings.Contains(out, "done") {
			t.Errorf("nobody's task read the root task's sandbox: %q", out)
		}
	})
}
