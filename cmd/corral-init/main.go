//go:build linux

// Command corral-init is the lean first process of every Corral container.
// With --keep-scope UNIT it is instead the keeper that holds the systemd
// scope of a node's containers (launcher/systemd) while no container does.
//
// It is Linux only, as the containers it starts are (launcher/containerinit).
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/corral/corral/launcher/containerinit"
)

func main() {
	switch {
	case len(os.Args) == 1:
		containerinit.Main()
	case len(os.Args) == 3 && os.Args[1] == "--keep-scope":
		// Ends only when the scope is stopped (SIGTERM from systemd) or
		// by an explicit signal; it does nothing else.
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
		signal.Ignore(syscall.SIGHUP)
		<-sigs
	default:
		fmt.Fprintln(os.Stderr, "usage: corral-init (started by the Corral agent, not by hand)")
		os.Exit(containerinit.ExitSetupFailed)
	}
}
