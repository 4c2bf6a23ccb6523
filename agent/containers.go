package agent

import (
	"context"
	"syscall"

	"github.com/corral/corral/container"
	"github.com/corral/corral/container/containerizer"
)

// containers is what the agent uses of its containerizer: the runners
// launch, wait on, signal, resize and destroy containers through it, and
// recovery takes them back. *containerizer.Containerizer implements it;
// unit tests give the agent a fake (fake_containers_test.go), so the
// agent's task and executor logic runs without root or binaries.
type containers interface {
	Launch(ctx context.Context, cfg *container.Config) error
	Wait(ctx context.Context, id string) (*container.Termination, error)
	Signal(id string, sig syscall.Signal) error
	Destroy(ctx context.Context, id string) (*container.Termination, error)
	Update(ctx context.Context, id string, r container.Resources) error
	Usage(ctx context.Context, id string) (*container.Usage, error)
	// Forget drops an ended container's runtime record (its end is
	// checkpointed).
	Forget(id string)
	Recover(ctx context.Context, known []*container.Config) (map[string]*containerizer.Recovered, error)
	Close()
}
