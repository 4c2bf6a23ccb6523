package cgroups

import (
	"fmt"

	ocgroups "github.com/opencontainers/cgroups"
	// Sets ocgroups.DevicesSetV1/V2: the v1 allow-list writer and the v2
	// eBPF device program.
	_ "github.com/opencontainers/cgroups/devices"
	devconfig "github.com/opencontainers/cgroups/devices/config"

	"github.com/corral/corral/container"
)

// DefaultDevices is what a container may use: runc's default allow list
// without its mknod-anything rules. Everything else is denied, mknod
// included.
var DefaultDevices = []devconfig.Rule{
	charDev(1, 3),                    // /dev/null
	charDev(1, 5),                    // /dev/zero
	charDev(1, 7),                    // /dev/full
	charDev(1, 8),                    // /dev/random
	charDev(1, 9),                    // /dev/urandom
	charDev(5, 0),                    // /dev/tty
	charDev(5, 1),                    // /dev/console
	charDev(5, 2),                    // /dev/ptmx
	charDev(136, devconfig.Wildcard), // /dev/pts/*
}

func charDev(major, minor int64) devconfig.Rule {
	return devconfig.Rule{Type: devconfig.CharDevice, Major: major, Minor: minor, Permissions: "rwm", Allow: true}
}

// NewDevices builds cgroups/devices: the devices controller on v1, an eBPF
// device program attached to the container's cgroup on v2, allowing
// DefaultDevices only.
func NewDevices(o container.Options) (container.Isolator, error) {
	// v2 has no devices controller: the eBPF program needs only the cgroup.
	b, err := newBase("cgroups/devices", o, []string{"devices"}, nil)
	if err != nil {
		return nil, err
	}
	rules := []*devconfig.Rule{{Type: devconfig.WildcardDevice, Permissions: "rwm", Allow: false}}
	for i := range DefaultDevices {
		r := DefaultDevices[i]
		rules = append(rules, &r)
	}
	return newIsolator(b, &devicesPolicy{res: &ocgroups.Resources{Devices: rules}}), nil
}

type devicesPolicy struct{ res *ocgroups.Resources }

func (p *devicesPolicy) check(*container.Resources) error { return nil }

func (p *devicesPolicy) apply(d dirs, _ *container.Resources, initial bool) error {
	if !initial {
		return nil // the allow list does not depend on resources
	}
	var err error
	if d.unified != "" {
		err = ocgroups.DevicesSetV2(d.unified, p.res)
	} else {
		err = ocgroups.DevicesSetV1(d.of("devices"), p.res)
	}
	if err != nil {
		return fmt.Errorf("cgroups/devices: %w", err)
	}
	return nil
}
