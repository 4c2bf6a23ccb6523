package cli

import (
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral/corral/internal/testsupport"
)

// `corral local 2>&1 | tee log`, a task running, then Ctrl-C: the shell
// signals both, tee dies first and corral local's next log line meets a
// closed pipe. It must still shut down in order: exit 0 (not 141, death by
// SIGPIPE, mid-shutdown), its task's processes killed and reaped (not
// reparented to PID 1 and frozen), its freezer cgroups gone.
func TestLocalShutdownSurvivesClosedPipe(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			prefix := rootTest(t)
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			var log testsupport.SyncBuffer
			readerDone := make(chan struct{})
			go func() {
				defer close(readerDone)
				_, _ = io.Copy(&log, r)
			}()
			c := startCluster(t, prefix, clusterOpts{stdout: w})
			w.Close() // corral local holds the only write end now
			local := c.procs[0]

			run := start(t, "corral run", nil, "run", "--master", c.master, "--name", prefix+"sleeper", "--command", "sleep 1000")
			testsupport.Eventually(t, "the task running", runTimeout, func() bool { return strings.Contains(run.out.String(), "TASK_RUNNING") })
			testsupport.Eventually(t, "the task's sleep", runTimeout, func() bool {
				for _, p := range processesOf(c.workDir) {
					if strings.HasSuffix(p, ": sleep 1000") {
						return true
					}
				}
				return false
			})
			if len(containerCgroups(c.cgRoot)) == 0 {
				t.Fatalf("the task has no cgroup under %s", c.cgRoot)
			}

			// The pipe's reader goes away, as tee does on Ctrl-C.
			r.Close()
			<-readerDone
			st := local.stop(t, sig)
			ws := st.Sys().(syscall.WaitStatus)
			if ws.Signaled() || ws.ExitStatus() != 0 {
				t.Errorf("corral local ended with %v after %v with its output pipe closed, want exit 0 (log until the pipe closed:\n%s)", st, sig, log.String())
			}
			// Killed processes may take a moment to be reaped.
			var left []string
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if left = processesOf(c.workDir); len(left) == 0 {
					break
				}
			}
			if len(left) > 0 {
				t.Errorf("processes of the task outlived corral local: %v", left)
			}
			for _, dir := range containerCgroups(c.cgRoot) {
				t.Errorf("cgroup %s (%s) outlived corral local", dir, freezerState(dir))
			}
		})
	}
}
