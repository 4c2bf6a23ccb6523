#!/bin/sh
# Provisioning of Corral's test VMs: the ONE script behind both the qemu
# harness (`make vm-test`, integration/vm/cmd/vmtest) and the Vagrantfile,
# so the two cannot drift apart. Whatever a Corral test needs in a guest is
# added here; the harness hashes this file, so an edit rebuilds its image.
#
#   provision.sh --packages
#       print the Debian packages a guest needs, comma separated (the harness
#       hands them to `debootstrap --include=`).
#   provision.sh --pre-image DIR
#       run by the harness on the host between debootstrap's two stages
#       (--foreign, then --second-stage): settings that must be in place
#       before packages are configured. dpkg skips fsync while the image is
#       built, and the initramfs holds only what a qemu guest needs to mount
#       its root (a few MB instead of ~36, built once in seconds).
#   provision.sh --image
#       configure a freshly debootstrapped tree, run chrooted into it by the
#       harness: no network, no running systemd. Installs the test runner
#       unit that mounts the 9p shares, runs the suite and powers off.
#   provision.sh --vagrant --cgroup v2|v1 [--go VERSION]
#       provision a running Debian box (Vagrant): install the packages, the
#       Go toolchain (official tarball into /usr/local/go, needs network),
#       and set the cgroup mode on the kernel command line (needs a reboot,
#       which the Vagrantfile does).
#
# Tests tell where they run by the environment: CORRAL_VM_MODE=v2|v1 in
# every guest of this tier (harness and Vagrant), CORRAL_VM=qemu|vagrant.
set -eu

# Keep in step with the debootstrap call of the harness, which adds these to
# its own --variant=minbase base set.
PACKAGES="systemd,systemd-sysv,dbus,linux-image-amd64,udev,kmod,iproute2,procps,e2fsprogs,xfsprogs,util-linux,strace"

die() { echo "provision.sh: $*" >&2; exit 1; }

cgroup_args() {
	case "$1" in
	v2) echo "systemd.unified_cgroup_hierarchy=1" ;;
	v1) echo "systemd.unified_cgroup_hierarchy=0" ;;
	*) die "unknown cgroup mode '$1' (v2 or v1)" ;;
	esac
}

# Settings common to every guest: quiet, fast boots and no background jobs
# that would disturb measurements.
common_config() {
	# apt's timers would start downloads in the middle of a test run.
	for t in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer man-db.timer; do
		systemctl mask "$t" >/dev/null 2>&1 || true
	done
	mkdir -p /etc/systemd/journald.conf.d
	cat >/etc/systemd/journald.conf.d/corral.conf <<-'EOF'
		[Journal]
		Storage=volatile
		RuntimeMaxUse=64M
	EOF
}

pre_image() {
	root=$1
	[ -d "$root/debootstrap" ] || die "--pre-image wants a tree of debootstrap --foreign, not '$root'"
	mkdir -p "$root/etc/dpkg/dpkg.cfg.d" "$root/etc/initramfs-tools/conf.d" "$root/usr/share/initramfs-tools/modules.d"
	# The tree becomes a disk image afterwards; a crash means a rebuild.
	echo force-unsafe-io >"$root/etc/dpkg/dpkg.cfg.d/corral-vm-build"
	# The guest's root is ext4 on virtio-blk (root=/dev/vda); 9p and the
	# rest are loaded from the root file system later.
	cat >"$root/etc/initramfs-tools/conf.d/corral-vm" <<-'EOF'
		MODULES=list
		COMPRESS=gzip
		RESUME=none
	EOF
	printf '%s\n' virtio_pci virtio_blk ext4 crc32c_generic >"$root/usr/share/initramfs-tools/modules.d/corral-vm"
}

image() {
	[ -d /usr/lib/systemd ] || die "--image runs chrooted into a debootstrapped tree"
	rm -f /etc/dpkg/dpkg.cfg.d/corral-vm-build
	echo corral-vm >/etc/hostname
	printf '127.0.0.1 localhost\n127.0.1.1 corral-vm\n::1 localhost ip6-localhost ip6-loopback\n' >/etc/hosts
	printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >/etc/fstab
	# The serial console logs in root without a password when the image is
	# booted by hand (vmtest -shell); the image never has a network. Test
	# boots have no login on the console.
	passwd -d root >/dev/null
	mkdir -p /etc/systemd/system/serial-getty@ttyS0.service.d
	cat >/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf <<-'EOF'
		[Unit]
		ConditionKernelCommandLine=!corral.vmtest=1

		[Service]
		ExecStart=
		ExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 %I $TERM
	EOF
	systemctl set-default multi-user.target >/dev/null
	common_config
	# linux-image's postinst made the initramfs (with --pre-image's
	# settings); make sure there is one.
	ls /boot/initrd.img-* >/dev/null 2>&1 || update-initramfs -c -k all
	ls -l /boot

	# The runner: only on boots with corral.vmtest=1 on the kernel command
	# line. It mounts three 9p shares — payload (binaries, test binaries,
	# guest-run.sh; read-only), out (results; read-write) and src (the
	# source tree, read-only, mounted at the host's own path so tests find
	# their files where `go test` would) — then runs payload/guest-run.sh.
	# The guest script lives in the share, not in the image: changing it
	# does not rebuild the image. Whatever happens, the guest powers off.
	cat >/usr/local/sbin/corral-vmtest <<-'EOF'
		#!/bin/sh
		set -u
		opts=trans=virtio,version=9p2000.L,msize=524288
		mkdir -p /mnt/payload /mnt/out
		mount -t 9p -o "$opts,ro" payload /mnt/payload || exit 1
		mount -t 9p -o "$opts" out /mnt/out || exit 1
		src=$(sed -n 's/^CORRAL_VM_SRC=//p' /mnt/payload/config.env)
		if [ -n "$src" ]; then
			mkdir -p "$src" && mount -t 9p -o "$opts,ro" src "$src" || exit 1
		fi
		/bin/sh /mnt/payload/guest-run.sh
		rc=$?
		sync
		exit $rc
	EOF
	chmod 755 /usr/local/sbin/corral-vmtest
	cat >/etc/systemd/system/corral-vmtest.service <<-'EOF'
		[Unit]
		Description=Corral VM test runner
		ConditionKernelCommandLine=corral.vmtest=1
		# Start when the boot is done, so tests see a settled system
		# (is-system-running reaches "running" while they run: Type=exec).
		After=multi-user.target
		SuccessAction=poweroff
		FailureAction=poweroff

		[Service]
		Type=exec
		ExecStart=/usr/local/sbin/corral-vmtest
		StandardOutput=journal+console
		StandardError=journal+console
		# The harness kills qemu on its own hard timeout; this is the guest's.
		TimeoutStartSec=infinity

		[Install]
		WantedBy=multi-user.target
	EOF
	systemctl enable corral-vmtest.service >/dev/null 2>&1 ||
		ln -sf /etc/systemd/system/corral-vmtest.service /etc/systemd/system/multi-user.target.wants/corral-vmtest.service
	# Units that only slow a throw-away, network-less guest down.
	for u in systemd-networkd-wait-online.service systemd-timesyncd.service; do
		systemctl mask "$u" >/dev/null 2>&1 || true
	done
	apt-get clean
	rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /usr/share/doc/* /usr/share/man/* /usr/share/locale/*
}

go_version() {
	# The toolchain go.mod asks for (toolchain line first, then go line).
	for f in /corral/go.mod "$(dirname "$0")/../../go.mod"; do
		[ -f "$f" ] || continue
		v=$(sed -n 's/^toolchain go//p' "$f")
		[ -n "$v" ] || v=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$f")
		case "$v" in *.*.*) ;; ?*) v="$v.0" ;; esac
		[ -n "$v" ] && { echo "$v"; return; }
	done
	die "cannot find go.mod for the Go version; pass --go VERSION"
}

vagrant() {
	mode=$1 gover=$2
	args=$(cgroup_args "$mode")
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq $(echo "$PACKAGES" | tr , ' ') make git curl ca-certificates rsync
	common_config

	[ -n "$gover" ] || gover=$(go_version)
	if [ "$(/usr/local/go/bin/go env GOVERSION 2>/dev/null)" != "go$gover" ]; then
		echo "provision.sh: installing Go $gover into /usr/local/go"
		rm -rf /usr/local/go
		curl -fsSL "https://go.dev/dl/go$gover.linux-amd64.tar.gz" | tar -C /usr/local -xz
	fi
	# /usr/local/bin is on sudo's secure_path, /usr/local/go/bin is not.
	ln -sf /usr/local/go/bin/go /usr/local/go/bin/gofmt /usr/local/bin/

	# pam_env reads /etc/environment for ssh sessions; login shells (the
	# Vagrantfile's `sudo -i bash`) read /etc/profile.d.
	sed -i '/^CORRAL_VM/d' /etc/environment
	printf 'CORRAL_VM=vagrant\nCORRAL_VM_MODE=%s\n' "$mode" >>/etc/environment
	printf 'export CORRAL_VM=vagrant CORRAL_VM_MODE=%s\nexport PATH="$PATH:/usr/local/go/bin"\n' "$mode" >/etc/profile.d/corral-vm.sh

	mkdir -p /etc/default/grub.d
	printf 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX %s"\n' "$args" >/etc/default/grub.d/90-corral-cgroup.cfg
	update-grub 2>/dev/null
	if grep -qw "$args" /proc/cmdline; then
		echo "provision.sh: cgroup $mode already active"
	else
		echo "provision.sh: cgroup $mode set on the kernel command line; takes effect after a reboot"
	fi
}

case "${1:-}" in
--packages)
	echo "$PACKAGES"
	;;
--pre-image)
	[ $# -eq 2 ] || die "usage: provision.sh --pre-image DIR"
	pre_image "$2"
	;;
--image)
	image
	;;
--vagrant)
	shift
	mode=v2 gover=""
	while [ $# -gt 0 ]; do
		case "$1" in
		--cgroup) mode=$2; shift 2 ;;
		--go) gover=$2; shift 2 ;;
		*) die "unknown argument $1" ;;
		esac
	done
	vagrant "$mode" "$gover"
	;;
*)
	die "usage: provision.sh --packages | --pre-image DIR | --image | --vagrant --cgroup v2|v1 [--go VERSION]"
	;;
esac
