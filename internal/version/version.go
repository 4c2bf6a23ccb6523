// Package version is Corral's version, set at link time.
package version

// Version is overridden with -ldflags "-X .../internal/version.Version=...".
var Version = "0.1.0-dev"

// MesosCompat is the Mesos API version Corral's v1 APIs follow, reported
// where Mesos clients read a Mesos version.
const MesosCompat = "1.11.0"
