// Package posix is the launcher without namespaces or cgroups: each container
// is a new session whose init is a child subreaper, so destroying it reaches
// every process the task started, also those that left its session.
package posix

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"github.com/corral/corral/container"
	"github.com/corral/corral/launcher/containerinit"
)

// Name is the launcher's --launcher value.
const Name = "posix"

func init() {
	container.RegisterLauncher(Name, func(container.Options) (container.Launcher, error) {
		return New(), nil
	})
}

// Launcher starts containers as new sessions.
type Launcher struct {
	mu    sync.Mutex
	inits map[string]*container.Process
}

// New returns a posix launcher.
func New() *Launcher { return &Launcher{inits: map[string]*container.Process{}} }

// Name implements container.Launcher.
func (l *Launcher) Name() string { return Name }

// Fork implements container.Launcher.
func (l *Launcher) Fork(_ context.Context, spec *container.ForkSpec) (*container.Process, error) {
	if spec.CloneFlags != 0 {
		return nil, fmt.Errorf("the posix launcher cannot create namespaces (clone flags %#x); use --launcher=linux", spec.CloneFlags)
	}
	files := make([]uintptr, len(spec.Files))
	for i, f := range spec.Files {
		files[i] = f.Fd()
	}
	p, err := container.StartProcess(spec.Path, spec.Argv, &syscall.ProcAttr{
		Dir:   spec.Dir,
		Env:   spec.Env,
		Files: files,
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return nil, fmt.Errorf("starting container init: %w", err)
	}
	l.mu.Lock()
	l.inits[spec.ID] = p
	l.mu.Unlock()
	return p, nil
}

// Recover implements container.Launcher. A posix container is found only
// through its init; one whose init is gone has nothing left we can reach.
func (l *Launcher) Recover(_ context.Context, known map[string]*container.Process) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, p := range known {
		if p != nil {
			l.inits[id] = p
		}
	}
	return nil
}

// Destroy implements container.Launcher: it asks the container's init to
// kill everything and exit. The containerizer waits for that exit and falls
// back to killing the init if it does not come.
func (l *Launcher) Destroy(_ context.Context, id string) error {
	l.mu.Lock()
	p := l.inits[id]
	l.mu.Unlock()
	if p == nil {
		return nil
	}
	err := p.Signal(containerinit.DestroySignal)
	if errors.Is(err, os.ErrProcessDone) {
		l.mu.Lock()
		delete(l.inits, id)
		l.mu.Unlock()
		return nil
	}
	return err
}
