package linux_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral/corral/container"
	"github.com/corral/corral/launcher/linux"
)

// A container its agent left frozen — killed between a destroy's freeze and
// thaw, as `corral local` dying of SIGPIPE did — is thawed when a restarted
// agent's launcher takes it back, so that it runs on and can be killed.
func TestRecoverThawsFrozenContainer(t *testing.T) {
	forEachMode(t, func(t *testing.T, m mode) {
		c, l, prefix := setup(t, m)
		id := prefix + "frozen"
		launch(t, c, &container.Config{ID: id}, "sleep 1000")
		dir := l.CgroupPath(id)
		waitFor(t, "the container running", func() bool { return len(procsIn(dir)) >= 2 })

		file, on, off, frozen := filepath.Join(dir, "freezer.state"), "FROZEN", "THAWED", func(s string) bool { return s == "FROZEN" }
		if m.name == "v2" {
			file, on, off = filepath.Join(dir, "cgroup.freeze"), "1", "0"
			frozen = func(string) bool {
				b, _ := os.ReadFile(filepath.Join(dir, "cgroup.events"))
				return strings.Contains(string(b), "frozen 1")
			}
		}
		state := func() string {
			b, _ := os.ReadFile(file)
			return strings.TrimSpace(string(b))
		}
		if err := os.WriteFile(file, []byte(on), 0o644); err != nil {
			t.Fatal(err)
		}
		// Whatever the test's end, nothing stays frozen.
		t.Cleanup(func() { _ = os.WriteFile(file, []byte(off), 0o644) })
		// A v1 freeze of a task caught in the kernel can stay FREEZING for
		// ever under load; as the launcher's own freeze does, thaw and ask
		// again when one has not completed in a few seconds.
		asked := time.Now()
		waitFor(t, "the container frozen", func() bool {
			if frozen(state()) {
				return true
			}
			if time.Since(asked) > 3*time.Second {
				_ = os.WriteFile(file, []byte(off), 0o644)
				_ = os.WriteFile(file, []byte(on), 0o644)
				asked = time.Now()
			}
			return false
		})

		l2, err := linux.New(container.Options{CgroupsRoot: prefix + "root", CgroupsHierarchy: m.hierarchy})
		if err != nil {
			t.Fatal(err)
		}
		if err := l2.Recover(context.Background(), map[string]*container.Process{id: nil}); err != nil {
			t.Fatal(err)
		}
		if got := state(); got != off {
			t.Fatalf("recovered container's %s is %q, want %q", filepath.Base(file), got, off)
		}
		if n := len(procsIn(dir)); n < 2 {
			t.Fatalf("recovered container has %d processes, want its init and sleep running on", n)
		}
		if err := l2.Destroy(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		if exists(dir) {
			t.Fatalf("cgroup %s survived the destroy", dir)
		}
	})
}
