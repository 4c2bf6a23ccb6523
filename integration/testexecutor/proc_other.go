//go:build !unix

package main

import "os/exec"

func ownGroup(*exec.Cmd) {}

// Without process groups only the shell itself can be killed.
func signalGroup(cmd *exec.Cmd, _ bool) error { return cmd.Process.Kill() }
