// Command corral-init is the lean first process of every Corral container.
package main

import (
	"fmt"
	"os"

	"github.com/corral/corral/launcher/containerinit"
)

func main() {
	if len(os.Args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: corral-init (started by the Corral agent, not by hand)")
		os.Exit(containerinit.ExitSetupFailed)
	}
	containerinit.Main()
}
