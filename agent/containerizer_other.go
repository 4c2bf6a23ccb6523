//go:build !linux

package agent

import (
	"errors"
)

// buildContainerizer: containers need Linux (pidfds, namespaces, cgroups);
// elsewhere the agent's code builds, so that it can be vetted and its
// logic tested on a fake containerizer, but an agent does not start.
func buildContainerizer(*Config) (containers, error) {
	return nil, errors.New("the agent runs containers on Linux only")
}
