// Package guestcheck holds the VM tier's own checks of a guest: systemd is
// PID 1, the cgroup hierarchy matches the mode, Corral's binaries are where
// CORRAL_BIN_DIR says. Outside a test VM its tests skip. It is also the
// example to copy for tests that only make sense in a VM (see vmenv).
package guestcheck
