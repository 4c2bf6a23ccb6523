//go:build !linux

package agent

import "github.com/corral/corral/container"

func systemdOptions(_ *Config, opts container.Options) (container.Options, error) {
	return opts, nil
}
