//go:build !linux

package agent

import "github.com/corral/corral/agent/containerizer"

func systemdOptions(_ *Config, opts containerizer.Options) (containerizer.Options, error) {
	return opts, nil
}
