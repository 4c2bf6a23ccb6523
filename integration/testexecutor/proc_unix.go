//go:build unix

package main

import (
	"os/exec"
	"syscall"
)

// ownGroup puts the command in its own process group so that a kill reaches
// everything `sh -c` started, not just the shell. It stays in the
// executor's session, which is what the agent's launcher kills as a whole.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// signalGroup signals the command's process group.
func signalGroup(cmd *exec.Cmd, force bool) error {
	sig := syscall.SIGTERM
	if force {
		sig = syscall.SIGKILL
	}
	return syscall.Kill(-cmd.Process.Pid, sig)
}
