package e2e

import (
	"fmt"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/testsupport"
)

// TestFullWorkDirWithChurn: a task fills the work_dir's file system (a
// 64 MB loop-mounted ext4) while a checkpointing framework keeps launching
// short tasks. The agent stays up; every churn task gets its end (it ran,
// or its launch failed with a reason and a message), none is lost; the
// agent killed on the full disk starts again and re-attaches the filler,
// which is then killed like any task.
func TestFullWorkDirWithChurn(t *testing.T) {
	forEachLauncher(t, func(t *testing.T, launcher, prefix string) {
		mnt := testsupport.LoopExt4(t, prefix, 64)
		work := filepath.Join(mnt, prefix+"work")
		n := startNode(t, prefix, launcher, "--work_dir", work)
		n.workDir = work
		f := ckptFramework(t, n.master, "full-disk", false, false)

		f.launch(commandTask(t, "filler", "dd if=/dev/zero of=fill bs=64k 2>/dev/null; exec sleep 1000"))
		f.running(t, "filler")
		var ids []string
		for i := 0; i < 4; i++ {
			id := fmt.Sprintf("before-%d", i)
			ids = append(ids, id)
			f.launch(commandTask(t, id, "echo churn; true"))
		}
		// The agent's reserve comes and goes once the disk is full: a few
		// blocks.
		testsupport.Eventually(t, "the filler to fill the work_dir's file system", taskTimeout, func() bool {
			var st unix.Statfs_t
			return unix.Statfs(mnt, &st) == nil && st.Bavail*uint64(st.Bsize) < 1<<20
		})
		for i := 0; i < 16; i++ {
			id := fmt.Sprintf("full-%d", i)
			ids = append(ids, id)
			f.launch(commandTask(t, id, "echo churn; true"))
		}
		ended := f.awaitTerminal(t, ids...)
		outcomes := map[string]int{}
		for _, id := range ids {
			s := ended[id].last
			outcomes[s.GetState().String()+" "+s.GetReason().String()]++
			switch {
			case s.GetState() == mesos.TaskState_TASK_FINISHED:
			case s.GetState() == mesos.TaskState_TASK_FAILED && s.Reason != nil && s.GetMessage() != "":
			default:
				t.Errorf("%s: %s (%v %q); want TASK_FINISHED, or TASK_FAILED with a reason and a message", id, historyOf(ended, id), s.GetReason(), s.GetMessage())
			}
		}
		t.Logf("churn tasks on the full disk: %v", outcomes)
		if !n.agent.running() {
			t.Fatalf("the agent stopped on the full disk:\n%s", n.agent.tail())
		}

		n.restartAgent(t)
		if st := n.taskStates(t); st["filler"] != "TASK_RUNNING" {
			t.Errorf("after a restart on the full disk the tasks are %v, want the filler running", st)
		}
		f.kill(t, "filler")
		if s := f.awaitTerminal(t, "filler")["filler"].last; s.GetState() != mesos.TaskState_TASK_KILLED {
			t.Errorf("filler ended %v %v %q, want TASK_KILLED", s.GetState(), s.GetReason(), s.GetMessage())
		}
	})
}
