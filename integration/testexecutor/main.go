// Command testexecutor is a custom Mesos executor built on driver/executor.
// The end-to-end tests launch it through an ExecutorInfo to prove that
// custom executors run against the agent unchanged.
//
// For every task it runs a shell command with `sh -c` in the sandbox and
// reports TASK_RUNNING, then TASK_FINISHED (exit 0), TASK_FAILED ("exit
// status N") or TASK_KILLED. The command is the task's command.value, else
// the value of its label "command", else its data. Framework messages are
// echoed back prefixed with "echo:". It stays up until SHUTDOWN, or until it
// loses the agent for good, and logs to stderr (the sandbox's stderr file).
// With checkpointing (MESOS_CHECKPOINT=1) it survives an agent restart: the
// driver re-subscribes for up to MESOS_RECOVERY_TIMEOUT, backing off up to
// MESOS_SUBSCRIPTION_BACKOFF_MAX, handing over its unacknowledged updates
// and tasks; TESTEXECUTOR_STALL_ON_DISCONNECT=1 makes it never re-subscribe.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/duration"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/driver/executor"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	os.Exit(run(log))
}

func run(log *slog.Logger) int {
	cfg, err := executor.FromEnv()
	if err != nil {
		log.Error("cannot start", "err", err)
		return 2
	}
	// The driver's logger carries the executor and framework IDs itself.
	dlog := log
	log = log.With("executor_id", cfg.ExecutorID)
	log.Info("starting", "agent", cfg.AgentEndpoint, "sandbox", cfg.Sandbox, "checkpoint", cfg.Checkpoint,
		"shutdown_grace_period", duration.Format(cfg.ShutdownGracePeriod), "codec", cfg.Codec.MediaType())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ex := newTestExecutor(cfg, log)
	d, err := executor.New(ex, cfg, executor.WithLogger(dlog))
	if err != nil {
		log.Error("cannot start", "err", err)
		return 2
	}
	err = d.Run(ctx)
	// Whatever ended the run, no task may outlive the executor.
	ex.killAll()
	switch {
	case err == nil:
		log.Info("exiting")
		return 0
	case errors.Is(err, executor.ErrShutdownGraceExpired) && !errors.Is(err, executor.ErrDisconnected) && !errors.Is(err, executor.ErrRecoveryTimeout):
		// The agent asked us to go; having been slow about it is not a failure.
		log.Warn("exiting after the shutdown grace period", "err", err)
		return 0
	default:
		log.Error("exiting", "err", err)
		return 1
	}
}

// defaultKillGrace is how long a task gets between SIGTERM and SIGKILL when
// its KillPolicy sets none (Mesos' command executor uses 3 seconds too).
const defaultKillGrace = 3 * time.Second

// updateTimeout bounds one status update call.
const updateTimeout = 15 * time.Second

type testExecutor struct {
	executor.BaseExecutor
	cfg executor.Config
	log *slog.Logger

	mu           sync.Mutex
	tasks        map[string]*task // running tasks
	shuttingDown bool
	disconnected bool
	wg           sync.WaitGroup // one per running task, done once its last update is sent
}

type task struct {
	info   *mesos.TaskInfo
	cmd    *exec.Cmd
	killed bool
	exited chan struct{}
}

func newTestExecutor(cfg executor.Config, log *slog.Logger) *testExecutor {
	return &testExecutor{cfg: cfg, log: log, tasks: make(map[string]*task)}
}

func (e *testExecutor) Registered(_ executor.Driver, ei *mesos.ExecutorInfo, fi *mesos.FrameworkInfo, ai *mesos.AgentInfo) {
	e.log.Info("registered", "executor_name", ei.GetName(), "framework", fi.GetName(),
		"framework_id", fi.GetId().GetValue(), "agent_id", ai.GetId().GetValue(), "agent_host", ai.GetHostname())
}

func (e *testExecutor) Reregistered(_ executor.Driver, ai *mesos.AgentInfo) {
	e.mu.Lock()
	e.disconnected = false
	e.mu.Unlock()
	e.log.Info("re-registered", "agent_id", ai.GetId().GetValue())
}

func (e *testExecutor) Disconnected(executor.Driver) {
	e.mu.Lock()
	e.disconnected = true
	e.mu.Unlock()
	e.log.Warn("disconnected from agent", "checkpoint", e.cfg.Checkpoint)
	if os.Getenv(StallEnv) != "" {
		// Tests of the agent's re-registration timeout: an executor that
		// stays alive, with its tasks, but never re-subscribes. The driver
		// calls Disconnected from its run loop, which stays blocked here.
		e.log.Warn("not re-subscribing", "env", StallEnv)
		select {}
	}
}

// StallEnv, set in the executor's environment, makes it never re-subscribe
// after it loses the agent (while its tasks keep running).
const StallEnv = "TESTEXECUTOR_STALL_ON_DISCONNECT"

func (e *testExecutor) Error(_ executor.Driver, msg string) {
	e.log.Error("agent reported an error", "message", msg)
}

func (e *testExecutor) LaunchTask(d executor.Driver, t *mesos.TaskInfo) { e.launch(d, t) }

func (e *testExecutor) LaunchTaskGroup(d executor.Driver, g *mesos.TaskGroupInfo) {
	e.log.Info("launching task group", "tasks", len(g.GetTasks()))
	for _, t := range g.GetTasks() {
		e.launch(d, t)
	}
}

// command is what the task asks to run. Mesos forbids a TaskInfo that has
// both an executor and a command, so a label or the data carry it when the
// scheduler follows that rule.
func command(t *mesos.TaskInfo) (string, bool) {
	if v := t.GetCommand().GetValue(); v != "" {
		return v, true
	}
	for _, l := range t.GetLabels().GetLabels() {
		if l.GetKey() == "command" && l.GetValue() != "" {
			return l.GetValue(), true
		}
	}
	if len(t.GetData()) > 0 {
		return string(t.GetData()), true
	}
	return "", false
}

func (e *testExecutor) launch(d executor.Driver, t *mesos.TaskInfo) {
	id := t.GetTaskId().GetValue()
	log := e.log.With("task_id", id)
	cmdline, ok := command(t)
	if !ok {
		log.Warn("task has no command")
		e.update(d, t.GetTaskId(), mesos.TaskState_TASK_FAILED, `no command: set command.value, the label "command", or data`)
		return
	}
	e.mu.Lock()
	if e.tasks[id] != nil {
		e.mu.Unlock()
		log.Warn("ignoring a second launch of a running task")
		return
	}
	if e.shuttingDown {
		e.mu.Unlock()
		log.Warn("refusing a task during shutdown")
		e.update(d, t.GetTaskId(), mesos.TaskState_TASK_FAILED, "executor is shutting down")
		return
	}
	cmd := exec.Command("sh", "-c", cmdline)
	cmd.Dir = e.cfg.Sandbox
	cmd.Env = append(os.Environ(), "MESOS_TASK_ID="+id)
	// The sandbox's stdout and stderr are ours: task output lands there too.
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	ownGroup(cmd)
	if err := cmd.Start(); err != nil {
		e.mu.Unlock()
		log.Error("cannot start task", "err", err)
		e.update(d, t.GetTaskId(), mesos.TaskState_TASK_FAILED, fmt.Sprintf("starting command: %v", err))
		return
	}
	tk := &task{info: t, cmd: cmd, exited: make(chan struct{})}
	e.tasks[id] = tk
	e.wg.Add(1)
	e.mu.Unlock()

	log.Info("task started", "pid", cmd.Process.Pid, "command", cmdline)
	// RUNNING goes out before the wait begins, so it always precedes the
	// terminal update.
	e.update(d, t.GetTaskId(), mesos.TaskState_TASK_RUNNING, "")
	go e.wait(d, tk)
}

func (e *testExecutor) wait(d executor.Driver, tk *task) {
	defer e.wg.Done()
	err := tk.cmd.Wait()
	close(tk.exited)
	id := tk.info.GetTaskId().GetValue()
	e.mu.Lock()
	killed := tk.killed
	delete(e.tasks, id)
	e.mu.Unlock()
	state, msg := outcome(err, killed)
	e.log.Info("task ended", "task_id", id, "state", state.String(), "message", msg)
	e.update(d, tk.info.GetTaskId(), state, msg)
}

// outcome maps how a command ended to a terminal task state and message.
func outcome(err error, killed bool) (mesos.TaskState, string) {
	var exitErr *exec.ExitError
	switch {
	case killed && err == nil:
		return mesos.TaskState_TASK_KILLED, "killed; exit status 0"
	case killed:
		return mesos.TaskState_TASK_KILLED, "killed: " + err.Error()
	case err == nil:
		return mesos.TaskState_TASK_FINISHED, "exit status 0"
	case errors.As(err, &exitErr) && exitErr.Exited():
		return mesos.TaskState_TASK_FAILED, fmt.Sprintf("exit status %d", exitErr.ExitCode())
	case errors.As(err, &exitErr):
		return mesos.TaskState_TASK_FAILED, "terminated: " + exitErr.String() // "signal: killed"
	default:
		return mesos.TaskState_TASK_FAILED, "waiting for command: " + err.Error()
	}
}

func (e *testExecutor) update(d executor.Driver, id *mesos.TaskID, state mesos.TaskState, msg string) {
	s := &mesos.TaskStatus{TaskId: id, State: state.Enum()}
	if msg != "" {
		s.Message = proto.String(msg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), updateTimeout)
	defer cancel()
	if err := d.SendStatusUpdate(ctx, s); err != nil {
		e.log.Error("status update failed", "task_id", id.GetValue(), "state", state.String(), "err", err)
		return
	}
	e.log.Info("status update sent", "task_id", id.GetValue(), "state", state.String())
}

func (e *testExecutor) KillTask(_ executor.Driver, id *mesos.TaskID) {
	e.mu.Lock()
	tk := e.tasks[id.GetValue()]
	if tk != nil {
		tk.killed = true
	}
	e.mu.Unlock()
	if tk == nil {
		// Already ended (its terminal update is on its way) or never ours.
		e.log.Warn("kill for a task that is not running", "task_id", id.GetValue())
		return
	}
	e.kill(tk, killGrace(tk.info))
}

func killGrace(t *mesos.TaskInfo) time.Duration {
	if g := t.GetKillPolicy().GetGracePeriod(); g != nil {
		return time.Duration(g.GetNanoseconds())
	}
	return defaultKillGrace
}

// kill sends SIGTERM to the task's process group and SIGKILL if it is still
// there after grace.
func (e *testExecutor) kill(tk *task, grace time.Duration) {
	id := tk.info.GetTaskId().GetValue()
	e.log.Info("killing task", "task_id", id, "grace", grace)
	if err := signalGroup(tk.cmd, grace <= 0); err != nil {
		e.log.Warn("signalling task", "task_id", id, "err", err)
	}
	if grace <= 0 {
		return
	}
	go func() {
		select {
		case <-tk.exited:
		case <-time.After(grace):
			e.log.Warn("task ignored SIGTERM; sending SIGKILL", "task_id", id)
			_ = signalGroup(tk.cmd, true)
		}
	}()
}

func (e *testExecutor) FrameworkMessage(d executor.Driver, data []byte) {
	e.log.Info("framework message", "bytes", len(data))
	ctx, cancel := context.WithTimeout(context.Background(), updateTimeout)
	defer cancel()
	if err := d.SendFrameworkMessage(ctx, append([]byte("echo:"), data...)); err != nil {
		e.log.Error("echoing framework message", "err", err)
	}
}

// Shutdown kills every task, lets their TASK_KILLED updates be sent and
// acknowledged, then stops the driver, all within part of the grace period
// so the agent never has to kill us.
func (e *testExecutor) Shutdown(d executor.Driver) {
	e.mu.Lock()
	e.shuttingDown = true
	disconnected := e.disconnected
	var running []*task
	for _, tk := range e.tasks {
		tk.killed = true
		running = append(running, tk)
	}
	e.mu.Unlock()
	budget := e.cfg.ShutdownGracePeriod * 3 / 4
	e.log.Info("shutting down", "running_tasks", len(running), "budget", budget)
	for _, tk := range running {
		e.kill(tk, min(killGrace(tk.info), budget/2))
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), budget)
		defer cancel()
		done := make(chan struct{})
		go func() { e.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			e.log.Warn("tasks did not end in time")
		}
		// Acknowledgements come over the stream; a lost agent sends none.
		if !disconnected {
			if err := d.WaitAcknowledged(ctx); err != nil {
				e.log.Warn("not every update was acknowledged", "err", err)
			}
		}
		d.Stop()
	}()
}

// killAll kills whatever still runs, without grace: the executor is exiting.
func (e *testExecutor) killAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, tk := range e.tasks {
		tk.killed = true
		_ = signalGroup(tk.cmd, true)
	}
}
