package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/internal/testsupport"
)

// TestCommandTasks runs command tasks through the scheduler API, over
// both codecs, and checks their states, messages and sandbox output.
func TestCommandTasks(t *testing.T) {
	prefix := rootTest(t)
	c := startCluster(t, prefix)

	cases := []struct {
		name    string
		command string
		state   mesos.TaskState
		reason  mesos.TaskStatus_Reason // checked unless 0
		message string                  // in the terminal status
		file    string                  // sandbox file ...
		output  string                  // ... holding this
	}{
		{name: "hello", command: "echo hello", state: mesos.TaskState_TASK_FINISHED, file: "stdout", output: "hello\n"},
		{name: "exit3", command: "exit 3", state: mesos.TaskState_TASK_FAILED,
			reason: mesos.TaskStatus_REASON_COMMAND_EXECUTOR_FAILED, message: "status 3"},
		{name: "stderr", command: "echo oops >&2; exit 1", state: mesos.TaskState_TASK_FAILED, message: "status 1",
			file: "stderr", output: "oops"},
		{name: "env", command: `test -d "$MESOS_SANDBOX" && echo "$MESOS_TASK_ID"`, state: mesos.TaskState_TASK_FINISHED,
			file: "stdout", output: "env-"},
	}
	for _, cd := range codecs {
		t.Run(cd.name, func(t *testing.T) {
			f := newFramework(t, c, "e2e-command-"+cd.name, cd.codec)
			var ids []string
			for _, tc := range cases {
				id := tc.name + "-" + cd.name
				ids = append(ids, id)
				f.launch(commandTask(t, id, tc.command))
			}
			got := f.awaitTerminal(t, ids...)
			for i, tc := range cases {
				id := ids[i]
				h := got[id]
				s := h.last
				if s.GetState() != tc.state || !strings.Contains(s.GetMessage(), tc.message) {
					t.Errorf("%s (%q) ended %v %q, want %v with %q (states %v)", id, tc.command, s.GetState(), s.GetMessage(), tc.state, tc.message, h)
				}
				if tc.reason != 0 && s.GetReason() != tc.reason {
					t.Errorf("%s ended with reason %v, want %v", id, s.GetReason(), tc.reason)
				}
				want := []mesos.TaskState{mesos.TaskState_TASK_STARTING, mesos.TaskState_TASK_RUNNING, tc.state}
				if !slices.Equal(h.states, want) {
					t.Errorf("%s went %v, want %v", id, h, want)
				}
				if len(s.GetUuid()) != 16 {
					t.Errorf("%s: terminal status without a 16-byte uuid: %v", id, s)
				}
				if tc.file != "" {
					if out := readFile(t, filepath.Join(c.sandbox(t, id), tc.file)); !strings.Contains(out, tc.output) {
						t.Errorf("%s: sandbox %s is %q, want it to hold %q", id, tc.file, out, tc.output)
					}
				}
			}
		})
	}
}

// TestKillTask kills a running task whose shell has children, one of them
// in a session of its own, and checks that nothing of it is left.
func TestKillTask(t *testing.T) {
	prefix := rootTest(t)
	c := startCluster(t, prefix)
	f := newFramework(t, c, "e2e-kill", nil)

	cases := []struct{ name, command string }{
		{"sleep", "sleep 1000"},
		{"tree", "sleep 1000 & sleep 1001 & wait"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.launch(commandTask(t, tc.name, tc.command))
			running := f.await(t, []string{tc.name}, func(s *mesos.TaskStatus) bool {
				return s.GetState() == mesos.TaskState_TASK_RUNNING || s.GetState().IsTerminal()
			})[tc.name]
			if running.last.GetState() != mesos.TaskState_TASK_RUNNING {
				t.Fatalf("task went %v, want TASK_RUNNING", running)
			}
			cid := running.last.GetContainerStatus().GetContainerId().GetValue()
			if cid == "" {
				t.Fatalf("TASK_RUNNING carries no container ID: %v", running.last)
			}
			// The sleeps may take a moment to be exec'd after RUNNING.
			testsupport.Eventually(t, "the task's sleep processes", taskTimeout, func() bool {
				n := 0
				for _, p := range processesOf(cid) {
					if _, cmd, _ := strings.Cut(p, ": "); strings.HasPrefix(cmd, "sleep 10") {
						n++
					}
				}
				return n == strings.Count(tc.command, "sleep")
			})

			f.kill(t, tc.name)
			h := f.awaitTerminal(t, tc.name)[tc.name]
			if s := h.last; s.GetState() != mesos.TaskState_TASK_KILLED {
				t.Fatalf("killed task ended %v %v %q (states %v), want TASK_KILLED", s.GetState(), s.GetReason(), s.GetMessage(), h)
			}
			testsupport.Eventually(t, "no process of the killed container", taskTimeout, func() bool { return len(processesOf(cid)) == 0 })
		})
	}
}

// TestCustomExecutor runs tasks through integration/testexecutor, a Mesos
// HTTP executor started from an ExecutorInfo, and checks that teardown
// shuts it down.
func TestCustomExecutor(t *testing.T) {
	prefix := rootTest(t)
	bin := testExecutorBin(t)
	c := startCluster(t, prefix)

	for _, cd := range codecs {
		t.Run(cd.name, func(t *testing.T) {
			f := newFramework(t, c, "e2e-executor-"+cd.name, cd.codec)
			exID := "testexecutor-" + cd.name
			exec := &mesos.ExecutorInfo{
				ExecutorId: &mesos.ExecutorID{Value: proto.String(exID)},
				Type:       mesos.ExecutorInfo_CUSTOM.Enum(),
				Name:       proto.String("e2e test executor"),
				Command:    &mesos.CommandInfo{Value: proto.String(bin), Shell: proto.Bool(false)},
				Resources:  mustResources(t, "cpus:0.1;mem:64"),
			}
			task := func(id, command string, byLabel bool) *mesos.TaskInfo {
				ti := &mesos.TaskInfo{
					Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)},
					Resources: mustResources(t, "cpus:0.1;mem:32"), Executor: exec,
				}
				if byLabel {
					ti.Labels = &mesos.Labels{Labels: []*mesos.Label{{Key: proto.String("command"), Value: proto.String(command)}}}
				} else {
					ti.Data = []byte(command)
				}
				return ti
			}
			ok, fail := "custom-ok-"+cd.name, "custom-fail-"+cd.name
			f.launch(task(ok, "echo custom-hello", true), task(fail, "exit 3", false))
			got := f.awaitTerminal(t, ok, fail)
			if h := got[ok]; h.last.GetState() != mesos.TaskState_TASK_FINISHED || !slices.Contains(h.states, mesos.TaskState_TASK_RUNNING) {
				t.Errorf("%s went %v %q, want TASK_RUNNING then TASK_FINISHED", ok, h, h.last.GetMessage())
			}
			if h := got[fail]; h.last.GetState() != mesos.TaskState_TASK_FAILED || !strings.Contains(h.last.GetMessage(), "3") {
				t.Errorf("%s went %v %q, want TASK_FAILED with the exit status 3", fail, h, h.last.GetMessage())
			}
			sandbox := c.sandbox(t, exID)
			if out := readFile(t, filepath.Join(sandbox, "stdout")); !strings.Contains(out, "custom-hello") {
				t.Errorf("executor sandbox stdout is %q, want custom-hello", out)
			}
			if len(processesOf(sandbox)) == 0 {
				t.Errorf("the executor is not running after its tasks ended; it should wait for SHUTDOWN")
			}
			// Teardown: the agent sends SHUTDOWN and the executor exits.
			f.stop()
			testsupport.Eventually(t, "the executor to exit after teardown", taskTimeout, func() bool { return len(processesOf(sandbox)) == 0 })
		})
	}
}

// TestBatch50 launches 50 command tasks in one ACCEPT; all must finish.
func TestBatch50(t *testing.T) {
	prefix := rootTest(t)
	c := startCluster(t, prefix)
	f := newFramework(t, c, "e2e-batch", nil)

	const n = 50
	var ids []string
	var tasks []*mesos.TaskInfo
	for i := range n {
		id := fmt.Sprintf("batch-%02d", i)
		ids = append(ids, id)
		tasks = append(tasks, commandTask(t, id, "echo out-"+id))
	}
	f.launch(tasks...)
	got := f.awaitTerminal(t, ids...)
	for _, id := range ids {
		h := got[id]
		if h.last.GetState() != mesos.TaskState_TASK_FINISHED {
			t.Errorf("%s went %v %v %q, want TASK_FINISHED", id, h, h.last.GetReason(), h.last.GetMessage())
			continue
		}
		if out := readFile(t, filepath.Join(c.sandbox(t, id), "stdout")); out != "out-"+id+"\n" {
			t.Errorf("%s: stdout %q, want %q", id, out, "out-"+id+"\n")
		}
	}
}

// TestCorralRun is the quickstart: `corral local --port P --work_dir D`
// (resources detected), then `corral run` exits 0 only on TASK_FINISHED and
// prints a sandbox holding the task's stdout.
func TestCorralRun(t *testing.T) {
	prefix := rootTest(t)
	// An empty --resources (the last one wins) leaves them all detected.
	c := startCluster(t, prefix, "--resources", "")

	cases := []struct {
		name    string
		args    []string
		code    int
		states  []string // lines of stdout, in order
		stdout  string   // in the sandbox's stdout
		message string   // on stderr
	}{
		{name: "hello", args: []string{"--command", "echo hello", "--resources", "cpus:0.1;mem:32"},
			states: []string{"TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"}, stdout: "hello\n"},
		{name: "protobuf", args: []string{"--command", "echo over protobuf", "--codec", "protobuf"},
			states: []string{"TASK_RUNNING", "TASK_FINISHED"}, stdout: "over protobuf\n"},
		{name: "exit3", args: []string{"--command", "exit 3"}, code: 1,
			states:  []string{"TASK_RUNNING", "TASK_FAILED (REASON_COMMAND_EXECUTOR_FAILED): Command exited with status 3"},
			message: "TASK_FAILED"},
		{name: "killed", args: []string{"--command", "sleep 1000", "--kill_after", "100ms"}, code: 1,
			states: []string{"TASK_RUNNING", "TASK_KILLED"}, message: "TASK_KILLED"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--master", c.master, "--name", tc.name}, tc.args...)
			out, errOut, code := runCorral(t, args...)
			if code != tc.code {
				t.Fatalf("corral run %q exited %d, want %d\nstdout:\n%s\nstderr:\n%s", args, code, tc.code, out, errOut)
			}
			rest := out
			for _, st := range tc.states {
				i := strings.Index(rest, st)
				if i < 0 {
					t.Fatalf("stdout lacks %q (in order %q):\n%s", st, tc.states, out)
				}
				rest = rest[i+len(st):]
			}
			if !strings.Contains(errOut, tc.message) {
				t.Errorf("stderr lacks %q:\n%s", tc.message, errOut)
			}
			sandbox := sandboxLine(out)
			if !strings.HasPrefix(sandbox, c.workDir+"/") {
				t.Fatalf("printed sandbox %q is not under the work dir %s:\n%s", sandbox, c.workDir, out)
			}
			if tc.stdout != "" {
				if got := readFile(t, filepath.Join(sandbox, "stdout")); got != tc.stdout {
					t.Errorf("sandbox stdout %q, want %q", got, tc.stdout)
				}
			}
		})
	}
}

// TestCustomExecutorAuthenticates: with --authenticate_http_executors the
// agent gives the executor its token, the executor driver sends it on
// every call (integration/testexecutor's tasks finish), and takes it out of
// the environment: the executor's tasks do not see it.
func TestCustomExecutorAuthenticates(t *testing.T) {
	prefix := rootTest(t)
	bin := testExecutorBin(t)
	key := filepath.Join(t.TempDir(), "jwt.key")
	if err := os.WriteFile(key, []byte("e2e executor key"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, prefix, "--authenticate_http_executors", "--jwt_secret_key", key)
	f := newFramework(t, c, "e2e-executor-auth", nil)
	exID := "testexecutor-auth"
	ti := &mesos.TaskInfo{
		Name: proto.String("auth-ok"), TaskId: &mesos.TaskID{Value: proto.String("auth-ok")},
		Resources: mustResources(t, "cpus:0.1;mem:32"),
		Executor: &mesos.ExecutorInfo{
			ExecutorId: &mesos.ExecutorID{Value: proto.String(exID)},
			Type:       mesos.ExecutorInfo_CUSTOM.Enum(),
			Command:    &mesos.CommandInfo{Value: proto.String(bin), Shell: proto.Bool(false)},
			Resources:  mustResources(t, "cpus:0.1;mem:64"),
		},
		Data: []byte("echo token=${MESOS_EXECUTOR_AUTHENTICATION_TOKEN:-none}"),
	}
	f.launch(ti)
	if h := f.awaitTerminal(t, "auth-ok")["auth-ok"]; h.last.GetState() != mesos.TaskState_TASK_FINISHED {
		t.Fatalf("task of the authenticated executor went %v %q, want TASK_FINISHED", h, h.last.GetMessage())
	}
	if out := readFile(t, filepath.Join(c.sandbox(t, exID), "stdout")); !strings.Contains(out, "token=none") {
		t.Errorf("the executor's task sees the token: stdout %q", out)
	}
	f.stop()
}
