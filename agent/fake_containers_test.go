package agent

import (
	"context"
	"fmt"
	"os"
	"sync"
	"syscall"

	"github.com/corral/corral/container"
	"github.com/corral/corral/container/containerizer"
)

// fakeContainers is the agent's containerizer in unit tests: containers are
// records, not processes. A launched container runs until the test ends it
// (exit), a signal it does not ignore ends it, and Destroy ends it killed.
type fakeContainers struct {
	mu         sync.Mutex
	containers map[string]*fakeContainer
	// launchErr, when set, fails every launch.
	launchErr error
	// ignoreTERM makes containers survive SIGTERM (only Destroy ends them).
	ignoreTERM bool
	launched   []string
	forgotten  []string
	// launches is told of every launch.
	launches chan string
	// recovered are the containers Recover finds running.
	recovered map[string]bool
	// exitAtOnce makes every container's task exit 0 as it is launched
	// (benchmarks: the agent's own work per task, without the task).
	exitAtOnce bool
}

type fakeContainer struct {
	cfg     *container.Config
	done    chan struct{}
	term    *container.Termination
	signals []syscall.Signal
	updates []container.Resources
}

func newFakeContainers() *fakeContainers {
	return &fakeContainers{containers: map[string]*fakeContainer{}, launches: make(chan string, 100)}
}

func (f *fakeContainers) Launch(_ context.Context, cfg *container.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.launchErr != nil {
		return f.launchErr
	}
	if c := f.containers[cfg.ID]; c != nil && c.term == nil {
		return fmt.Errorf("container %s exists", cfg.ID)
	}
	c := &fakeContainer{cfg: cfg, done: make(chan struct{})}
	f.containers[cfg.ID] = c
	if f.exitAtOnce {
		c.term = &container.Termination{StatusKnown: true, Message: "Command exited with status 0"}
		close(c.done)
	}
	f.launched = append(f.launched, cfg.ID)
	select {
	case f.launches <- cfg.ID:
	default:
	}
	return nil
}

func (f *fakeContainers) get(id string) *fakeContainer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.containers[id]
}

// end ends a running container with term; it reports whether it ran.
func (f *fakeContainers) end(id string, term *container.Termination) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.containers[id]
	if c == nil || c.term != nil {
		return false
	}
	c.term = term
	close(c.done)
	return true
}

// exit ends a container as its task exiting with code.
func (f *fakeContainers) exit(id string, code int) bool {
	return f.end(id, &container.Termination{Status: syscall.WaitStatus(code << 8), StatusKnown: true, Message: fmt.Sprintf("Command exited with status %d", code)})
}

func (f *fakeContainers) Wait(ctx context.Context, id string) (*container.Termination, error) {
	c := f.get(id)
	if c == nil {
		return nil, fmt.Errorf("container %s: %w", id, os.ErrNotExist)
	}
	select {
	case <-c.done:
		return c.term, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (f *fakeContainers) Signal(id string, sig syscall.Signal) error {
	f.mu.Lock()
	c := f.containers[id]
	if c == nil || c.term != nil {
		f.mu.Unlock()
		return fmt.Errorf("container %s: %w", id, os.ErrNotExist)
	}
	c.signals = append(c.signals, sig)
	ignore := f.ignoreTERM && sig == syscall.SIGTERM
	f.mu.Unlock()
	if !ignore {
		f.end(id, &container.Termination{Status: syscall.WaitStatus(sig), StatusKnown: true, Message: "Command terminated with signal " + sig.String()})
	}
	return nil
}

func (f *fakeContainers) Destroy(_ context.Context, id string) (*container.Termination, error) {
	term := &container.Termination{Status: syscall.WaitStatus(syscall.SIGKILL), StatusKnown: true, Destroyed: true, Message: "Container destroyed"}
	if !f.end(id, term) {
		return nil, fmt.Errorf("container %s: %w", id, os.ErrNotExist)
	}
	return term, nil
}

func (f *fakeContainers) Update(_ context.Context, id string, r container.Resources) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.containers[id]
	if c == nil || c.term != nil {
		return fmt.Errorf("container %s: %w", id, os.ErrNotExist)
	}
	c.updates = append(c.updates, r)
	return nil
}

func (f *fakeContainers) Usage(_ context.Context, id string) (*container.Usage, error) {
	if f.get(id) == nil {
		return nil, fmt.Errorf("container %s: %w", id, os.ErrNotExist)
	}
	return &container.Usage{}, nil
}

func (f *fakeContainers) Forget(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.containers[id]; c != nil && c.term != nil {
		delete(f.containers, id)
	}
	f.forgotten = append(f.forgotten, id)
}

func (f *fakeContainers) Recover(_ context.Context, known []*container.Config) (map[string]*containerizer.Recovered, error) {
	out := map[string]*containerizer.Recovered{}
	for _, cfg := range known {
		if f.recovered[cfg.ID] {
			out[cfg.ID] = &containerizer.Recovered{State: containerizer.Running}
		}
	}
	return out, nil
}

func (f *fakeContainers) Close() {}

var _ containers = (*fakeContainers)(nil)
