#!/bin/sh
# Runs inside a test guest as root under systemd (started by the image's
# corral-vmtest.service, see provision.sh): executes every compiled test
# binary listed in /mnt/payload/tests/manifest and writes its `-test.v`
# output and exit code to /mnt/out. The harness copies this file into the
# payload share on every run, so editing it does not rebuild the image.
#
# Lines starting with "corral-vmtest:" go to the serial console; the harness
# reads them for progress and timings.
set -u
P=/mnt/payload
O=/mnt/out
say() { echo "corral-vmtest: $*" >/dev/console; }

# hang_report prints what the guest is doing: every process with its
# state and wait channel, and the kernel stack of each blocked (D) one.
hang_report() {
	echo "== $1 did not end $((CORRAL_VM_TEST_TIMEOUT + 30))s after its start"
	ps -eo pid,ppid,stat,wchan:32,etime,args
	for d in /proc/[0-9]*; do
		case "$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "$d/status" 2>/dev/null)" in
		D)
			echo "-- blocked ${d#/proc/}: $(tr '\0' ' ' <"$d/cmdline" 2>/dev/null)"
			cat "$d/stack" 2>/dev/null
			;;
		esac
	done
	echo "-- kernel log (tail)"
	dmesg 2>/dev/null | tail -n 40
}

. "$P/config.env"
mode=$(sed -n 's/.*corral\.vm_mode=\([a-z0-9]*\).*/\1/p' /proc/cmdline)
say "start mode=$mode"

# Local copies: 9p (cache=none) is slow to exec from, and tests exec the
# binaries often.
mkdir -p /opt/corral
cp -a "$P/bin" "$P/tests" /opt/corral/

export CORRAL_VM=qemu CORRAL_VM_MODE="$mode" CORRAL_BIN_DIR=/opt/corral/bin
export PATH=/opt/corral/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TMPDIR=/tmp

{
	echo "mode=$mode"
	echo "kernel=$(uname -r)"
	echo "cgroupfs=$(stat -fc %T /sys/fs/cgroup)"
	echo "system=$(systemctl is-system-running)"
	echo "pid1=$(cat /proc/1/comm)"
	if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
		echo "controllers=$(cat /sys/fs/cgroup/cgroup.controllers)"
	fi
} >"$O/guest.env" 2>&1
# Where the boot spent its time (under emulation every unit counts).
{ systemd-analyze time; systemd-analyze blame --no-pager | head -n 20; } >"$O/boot.txt" 2>&1

set -- -test.v -test.count="${CORRAL_VM_COUNT:-1}" -test.timeout "${CORRAL_VM_TEST_TIMEOUT}s"
[ "$CORRAL_VM_SHORT" = 1 ] && set -- "$@" -test.short
[ -n "$CORRAL_VM_RUN" ] && set -- "$@" -test.run "$CORRAL_VM_RUN"

# manifest: one "name package-directory" per line.
while read -r name dir; do
	[ -n "$name" ] || continue
	say "run $name"
	cd "$dir" 2>/dev/null || cd /tmp
	# -test.timeout panics with every goroutine's stack. The watchdog is the
	# backstop for a binary that hangs beyond that: it records what the
	# guest was doing (processes, kernel stacks of blocked ones) in
	# $name.hang, then kills the binary's process group.
	setsid /opt/corral/tests/"$name" "$@" >"$O/$name.out" 2>&1 </dev/null &
	pid=$!
	(
		sleep $((CORRAL_VM_TEST_TIMEOUT + 30))
		kill -0 "$pid" 2>/dev/null || exit 0
		say "hang $name: still running after $((CORRAL_VM_TEST_TIMEOUT + 30))s; see $name.hang"
		hang_report "$name" >"$O/$name.hang" 2>&1
		sync
		kill -KILL -- "-$pid" 2>/dev/null
	) &
	watchdog=$!
	wait "$pid"
	rc=$?
	kill "$watchdog" 2>/dev/null
	echo "$rc" >"$O/$name.rc"
	say "end $name rc=$rc"
done <"$P/tests/manifest"

cd /
# Keep the system's view after the suite: failed units, cgroups left over.
{
	systemctl --failed --no-legend --plain
	echo "--"
	journalctl -b -p warning --no-pager -q | tail -n 100
} >"$O/guest-after.txt" 2>&1
sync
echo ok >"$O/done"
sync
say "done"
