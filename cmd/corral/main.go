// Command corral is the master, the agent, the all-in-one local cluster and
// the one-task client.
package main

import (
	"os"

	"github.com/corral/corral/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
