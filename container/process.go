package container

import "os"

// Process is a process held by pidfd, so a signal or wait can never reach a
// different process that reused the PID. The pidfd is registered with Go's
// poller: waiting for a thousand containers costs no thread each. (Its
// methods are Linux-only: process_linux.go.)
type Process struct {
	pid   int
	pidfd *os.File
	// child is true when we started the process and so must reap it.
	child bool
}
