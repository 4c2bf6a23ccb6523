// Package version is Corral's version, set at link time.
package version

import (
	"runtime/debug"
	"sync"
	"time"
)

// Version is overridden with -ldflags "-X .../internal/version.Version=...".
var Version = "0.1.0-dev"

// MesosCompat is the Mesos API version Corral's v1 APIs follow, reported
// where Mesos clients read a Mesos version.
const MesosCompat = "1.11.0"

// BuildDate ("2006-01-02 15:04:05", UTC) and BuildUser may be set with
// -ldflags -X like Version. Without them the build date is the commit time
// Go stamps into the binary (vcs.time): reproducible builds have no other.
var (
	BuildDate string
	BuildUser string
)

// BuildInfo is what Mesos' /state and /version report about the build.
type BuildInfo struct {
	// Date is written as Mesos' build_date ("2006-01-02 15:04:05").
	Date string
	// Time is Date in seconds since the epoch (Mesos' build_time); 0 when
	// unknown.
	Time float64
	User string
	// GitSHA is the commit, "" when unknown.
	GitSHA string
}

var (
	buildOnce sync.Once
	build     BuildInfo
)

// Build returns the build information, read once.
func Build() BuildInfo {
	buildOnce.Do(func() {
		build.User = BuildUser
		date := BuildDate
		if info, ok := debug.ReadBuildInfo(); ok {
			for _, s := range info.Settings {
				switch s.Key {
				case "vcs.revision":
					build.GitSHA = s.Value
				case "vcs.time":
					if date == "" {
						if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
							date = t.UTC().Format(time.DateTime)
						}
					}
				}
			}
		}
		build.Date = date
		if t, err := time.Parse(time.DateTime, date); err == nil {
			build.Time = float64(t.Unix())
		}
	})
	return build
}
