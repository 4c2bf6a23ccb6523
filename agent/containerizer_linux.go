package agent

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/corral/corral/container"
	"github.com/corral/corral/container/containerizer"
)

// buildContainerizer makes the launcher and isolators of cfg through the
// registry and the containerizer over them.
func buildContainerizer(cfg *Config) (containers, error) {
	opts, err := container.SetUpLauncher(context.Background(), cfg.Launcher, cfg.containerOptions())
	if err != nil {
		return nil, err
	}
	l, err := container.NewLauncher(cfg.Launcher, opts)
	if err != nil {
		return nil, fmt.Errorf("--launcher: %w", err)
	}
	var isos []container.Isolator
	for _, name := range cfg.isolators() {
		iso, err := container.NewIsolator(name, opts)
		if err != nil {
			// What the isolators built so far made (disk/du's cgroup)
			// goes with them.
			containerizer.CloseIsolators(isos, cfg.Log)
			return nil, fmt.Errorf("--isolation: %w", err)
		}
		isos = append(isos, iso)
	}
	cz, err := containerizer.New(l, isos, filepath.Join(cfg.LauncherDir, "corral-init"), cfg.RuntimeDir, cfg.Log)
	if err != nil {
		containerizer.CloseIsolators(isos, cfg.Log)
		return nil, err
	}
	// Ended containers keep their runtime record (the task's exit status)
	// until their end is checkpointed.
	cz.RetainEnded()
	return cz, nil
}

var _ containers = (*containerizer.Containerizer)(nil)
