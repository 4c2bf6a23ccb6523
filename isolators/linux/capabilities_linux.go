// Package linux holds the isolators that bound a task's privileges without a
// namespace of their own, as Mesos names them: linux/capabilities (the
// capability bounding set), linux/nnp (no_new_privs) and linux/seccomp (a
// system call filter). Each only adds to what the container init applies
// last, on the thread that starts the task; none has state to clean up, so
// they work with either launcher.
package linux

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	mesos "github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/container"
)

// Flag names, as Mesos' (Settings).
const (
	BoundingCapabilitiesKey  = "bounding_capabilities"
	EffectiveCapabilitiesKey = "effective_capabilities"
)

// DefaultCapabilities is what a root task holds by default: Docker's
// default set without MKNOD, since without the cgroups/devices isolator a
// device node made in the sandbox opens the host's disks.
var DefaultCapabilities = []string{
	"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
	"SETPCAP", "NET_BIND_SERVICE", "NET_RAW", "SYS_CHROOT", "AUDIT_WRITE", "SETFCAP",
}

func init() {
	container.RegisterIsolator("linux/capabilities", func(o container.Options) (container.Isolator, error) {
		return NewCapabilities(o)
	})
	container.RegisterIsolator("linux/nnp", func(container.Options) (container.Isolator, error) {
		return &stateless{name: "linux/nnp", li: container.LaunchInfo{NoNewPrivs: true}}, nil
	})
}

// Capabilities is linux/capabilities.
type Capabilities struct {
	bounding, effective []uint
}

// NewCapabilities reads --bounding_capabilities and --effective_capabilities
// (Mesos' CapabilityInfo JSON, or a comma-separated list of names); unset,
// both are DefaultCapabilities. The effective set must lie within the
// bounding one.
func NewCapabilities(o container.Options) (*Capabilities, error) {
	set := container.SettingsOf[*Settings](o)
	bounding, err := ParseCapabilities(set.BoundingCapabilities)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", BoundingCapabilitiesKey, err)
	}
	effective, err := ParseCapabilities(set.EffectiveCapabilities)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", EffectiveCapabilitiesKey, err)
	}
	def, _ := capNumbers(DefaultCapabilities)
	switch {
	case bounding == nil && effective == nil:
		bounding, effective = def, def
	case bounding == nil:
		bounding = effective
	case effective == nil:
		effective = intersect(def, bounding)
	}
	for _, c := range effective {
		if !slices.Contains(bounding, c) {
			return nil, fmt.Errorf("--%s: %s is not in --%s", EffectiveCapabilitiesKey, capName(c), BoundingCapabilitiesKey)
		}
	}
	return &Capabilities{bounding: bounding, effective: effective}, nil
}

// ParseCapabilities reads a capability set: Mesos' JSON form
// {"capabilities":["NET_RAW",...]} or "NET_RAW,CHOWN". Empty is nil (unset);
// "[]" or {"capabilities":[]} is the empty set.
func ParseCapabilities(s string) ([]uint, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var names []string
	if strings.HasPrefix(s, "{") {
		var info struct {
			Capabilities []string `json:"capabilities"`
		}
		if err := json.Unmarshal([]byte(s), &info); err != nil {
			return nil, fmt.Errorf("%q is neither a CapabilityInfo JSON object nor a list of names: %w", s, err)
		}
		names = info.Capabilities
	} else if s != "[]" {
		names = strings.Split(s, ",")
	}
	return capNumbers(names)
}

func capNumbers(names []string) ([]uint, error) {
	out := []uint{}
	for _, n := range names {
		n = strings.ToUpper(strings.TrimPrefix(strings.TrimSpace(n), "CAP_"))
		v, ok := mesos.CapabilityInfo_Capability_value[n]
		if !ok || v < 1000 {
			return nil, fmt.Errorf("unknown capability %q", n)
		}
		if c := uint(v - 1000); !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out, nil
}

func capName(c uint) string {
	return mesos.CapabilityInfo_Capability_name[int32(c)+1000]
}

func intersect(a, b []uint) []uint {
	out := []uint{}
	for _, c := range a {
		if slices.Contains(b, c) {
			out = append(out, c)
		}
	}
	return out
}

// Name implements container.Isolator.
func (i *Capabilities) Name() string { return "linux/capabilities" }

// Recover implements container.Isolator.
func (i *Capabilities) Recover(context.Context, []*container.Config) error { return nil }

// Prepare implements container.Isolator: the task's own request
// (LinuxInfo's effective or bounding capabilities) within the operator's
// bounding set, else the effective default.
func (i *Capabilities) Prepare(_ context.Context, c *container.Config) (*container.LaunchInfo, error) {
	set := i.effective
	if c.Capabilities != nil {
		want, err := capNumbers(c.Capabilities)
		if err != nil {
			return nil, err
		}
		for _, w := range want {
			if !slices.Contains(i.bounding, w) {
				return nil, fmt.Errorf("capability %s is not allowed on this agent (--%s)", capName(w), BoundingCapabilitiesKey)
			}
		}
		set = want
	}
	out := slices.Clone(set)
	return &container.LaunchInfo{Capabilities: &out}, nil
}

// Isolate implements container.Isolator.
func (i *Capabilities) Isolate(context.Context, string, int) error { return nil }

// Cleanup implements container.Isolator.
func (i *Capabilities) Cleanup(context.Context, string) error { return nil }

// stateless is an isolator that adds the same LaunchInfo to every launch.
type stateless struct {
	name string
	li   container.LaunchInfo
}

func (s *stateless) Name() string                                       { return s.name }
func (s *stateless) Recover(context.Context, []*container.Config) error { return nil }
func (s *stateless) Prepare(context.Context, *container.Config) (*container.LaunchInfo, error) {
	li := s.li
	return &li, nil
}
func (s *stateless) Isolate(context.Context, string, int) error { return nil }
func (s *stateless) Cleanup(context.Context, string) error      { return nil }
