package linux

import (
	"context"
	"fmt"
	"sync"

	"github.com/corral/corral/container"
	"github.com/corral/corral/isolators/linux/seccomp"
)

// Flag names of linux/seccomp, as Mesos' (Settings).
const (
	SeccompConfigDirKey   = "seccomp_config_dir"
	SeccompProfileNameKey = "seccomp_profile_name"
)

func init() {
	container.RegisterIsolator("linux/seccomp", func(o container.Options) (container.Isolator, error) {
		return NewSeccomp(o)
	})
}

// Seccomp is linux/seccomp: every task runs under a seccomp filter, the
// agent's default profile or the one its LinuxInfo names from
// --seccomp_config_dir. Profiles are compiled once, when first used; the
// launch path copies bytes.
type Seccomp struct {
	dir    string
	filter []byte

	mu       sync.Mutex
	compiled map[string][]byte
}

// NewSeccomp compiles the default profile: --seccomp_profile_name in
// --seccomp_config_dir, else the embedded one. A bad profile fails the
// start-up with its flag named.
func NewSeccomp(o container.Options) (*Seccomp, error) {
	set := container.SettingsOf[*Settings](o)
	s := &Seccomp{dir: set.SeccompConfigDir, compiled: map[string][]byte{}}
	name := set.SeccompProfileName
	var p *seccomp.Profile
	if name == "" {
		p = seccomp.Default()
	} else {
		if s.dir == "" {
			return nil, fmt.Errorf("--%s %q needs --%s", SeccompProfileNameKey, name, SeccompConfigDirKey)
		}
		var err error
		if p, err = seccomp.Load(s.dir, name); err != nil {
			return nil, fmt.Errorf("--%s: %w", SeccompProfileNameKey, err)
		}
	}
	filter, err := p.Compile()
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", SeccompProfileNameKey, err)
	}
	s.filter = filter
	return s, nil
}

// Name implements container.Isolator.
func (s *Seccomp) Name() string { return "linux/seccomp" }

// Recover implements container.Isolator.
func (s *Seccomp) Recover(context.Context, []*container.Config) error { return nil }

// Prepare implements container.Isolator. A task may name another
// profile of the operator's directory; it cannot run unconfined, which
// only --host_privileges gives.
func (s *Seccomp) Prepare(_ context.Context, c *container.Config) (*container.LaunchInfo, error) {
	if c.SeccompUnconfined {
		return nil, fmt.Errorf("seccomp: unconfined tasks are not allowed on this agent (the operator's --host_privileges)")
	}
	filter := s.filter
	if name := c.SeccompProfile; name != "" {
		var err error
		if filter, err = s.profile(name); err != nil {
			return nil, err
		}
	}
	return &container.LaunchInfo{NoNewPrivs: true, Seccomp: filter}, nil
}

func (s *Seccomp) profile(name string) ([]byte, error) {
	if s.dir == "" {
		return nil, fmt.Errorf("seccomp profile %q: this agent has no --%s", name, SeccompConfigDirKey)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.compiled[name]; ok {
		return f, nil
	}
	p, err := seccomp.Load(s.dir, name)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile %q: %w", name, err)
	}
	f, err := p.Compile()
	if err != nil {
		return nil, fmt.Errorf("seccomp profile %q: %w", name, err)
	}
	if len(s.compiled) < 64 {
		s.compiled[name] = f
	}
	return f, nil
}

// Isolate implements container.Isolator.
func (s *Seccomp) Isolate(context.Context, string, int) error { return nil }

// Cleanup implements container.Isolator.
func (s *Seccomp) Cleanup(context.Context, string) error { return nil }
