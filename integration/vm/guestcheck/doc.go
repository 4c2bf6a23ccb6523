// Package guestcheck holds the VM tier's own checks of a guest: systemd is
// PID 1 and the boot settled, the cgroup hierarchy matches the mode,
// Corral's binaries are where CORRAL_BIN_DIR says, systemd puts a scope in
// its slice, a Delegate=yes unit gets the cgroup v2 controllers and can
// build cgroups below its own, and Corral's agent runs as a systemd service
// that registers with a master (another service) and runs a task. Outside
// a test VM its tests skip. It is also the example to copy for tests that
// only make sense in a VM (see vmenv).
package guestcheck
