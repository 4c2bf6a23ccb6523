package cli

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/corral/corral/api/codec"
	"github.com/corral/corral/api/resources"
	"github.com/corral/corral/api/tlsconfig"
	"github.com/corral/corral/api/v1/mesos"
	sched "github.com/corral/corral/driver/scheduler"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
)

// Exit codes of corral run: those of every subcommand (root.go).
const (
	runExitTaskFailed = exitFailure // the task did not finish, or the run could not complete
	runExitUsage      = exitUsage
)

// runKillGrace is how long corral run waits for a killed task to report a
// terminal state before it tears the framework down anyway (teardown kills
// the task too; waiting only gets the final state printed).
const runKillGrace = 15 * time.Second

type runFlags struct {
	master, name, command, resources, frameworkName, codec, logging string
	principal, secret                                               string
	env                                                             []string
	killAfter, timeout                                              time.Duration
	checkpoint                                                      bool
	tls                                                             tlsconfig.Files
}

func newRunCommand() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run --master HOST:PORT --name NAME --command CMD",
		Short: "Launch one task and follow it to the end (the mesos-execute of Corral)",
		Long: `Launch one task and follow it to the end.

Each state change is printed on stdout as one line: the state first, then
the reason in parentheses and the message after a colon when present, e.g.
  TASK_RUNNING
  TASK_FAILED (REASON_COMMAND_EXECUTOR_FAILED): Command exited with status 1
and, once known, "Sandbox: <path>". Notes go to stderr: while no offer fits
the task, what the cluster offers; when the master cannot be reached, that
it cannot (corral run keeps trying until --timeout); when the task fails,
the last lines of its stderr, read through the agent's /files API.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := envFlags(cmd); err != nil {
				return err
			}
			opts, err := f.options()
			if err != nil {
				return usageError(cmd, err)
			}
			log, err := newLogger(f.logging)
			if err != nil {
				return usageError(cmd, err)
			}
			opts.verbose = log.Enabled(context.Background(), slog.LevelInfo)
			sigs := make(chan os.Signal, 2)
			signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
			defer signal.Stop(sigs)
			return opts.run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), log, sigs)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.master, "master", "", "HOST:PORT (or URL) of the master (required)")
	fl.StringVar(&f.name, "name", "", "task name, also the prefix of its ID (required)")
	fl.StringVar(&f.command, "command", "", "shell command the task runs (required)")
	fl.StringVar(&f.resources, "resources", "cpus:0.1;mem:32", "resources the task needs, e.g. 'cpus:0.5;mem:128'")
	fl.StringVar(&f.frameworkName, "framework_name", "corral-run", "name of the framework corral run registers")
	fl.StringVar(&f.codec, "codec", "json", "media type spoken with the master: json or protobuf")
	fl.StringArrayVar(&f.env, "env", nil, "KEY=VALUE added to the task's environment (repeatable)")
	fl.BoolVar(&f.checkpoint, "checkpoint", false, "the framework checkpoints: its task survives agent restarts (as mesos-execute --checkpoint)")
	fl.DurationVar(&f.killAfter, "kill_after", 0, "kill the task this long after it is running (e.g. 10s)")
	fl.DurationVar(&f.timeout, "timeout", 0, "give up (killing the task) after this long overall; 0 waits forever")
	fl.StringVar(&f.logging, "logging_level", "WARNING", "DEBUG, INFO, WARNING or ERROR (logs go to stderr)")
	fl.StringVar(&f.principal, "principal", "", "principal to authenticate as, to a master with --authenticate_http_frameworks (as mesos-execute)")
	fl.StringVar(&f.tls.CAFile, "tls_ca_file", "", "PEM certificates of the authority that signs the master's and agents' certificates (https: without it the system's roots are trusted)")
	fl.StringVar(&f.tls.CertFile, "tls_cert_file", "", "PEM client certificate presented to the master and the agents (those with --tls_verify_peer want one)")
	fl.StringVar(&f.tls.KeyFile, "tls_key_file", "", "PEM private key of --tls_cert_file")
	fl.StringVar(&f.secret, "secret", "", "secret of --principal (better given as CORRAL_SECRET: a command line is visible to every user)")
	return cmd
}

func init() { register(newRunCommand) }

// runOptions is a validated corral run.
type runOptions struct {
	master     string
	http       *http.Client      // to the master and the agents
	tls        *tls.Config       // nil: plain HTTP
	credential *mesos.Credential // nil: no authentication
	framework  *mesos.FrameworkInfo
	codec      codec.Codec
	task       *mesos.TaskInfo // without agent_id, set from the offer
	want       resources.Resources
	killAfter  time.Duration
	timeout    time.Duration
	// verbose: the user asked for INFO or DEBUG logs, so the driver's
	// retry warnings stay even once the master is reported unreachable.
	verbose bool
}

func (f *runFlags) options() (*runOptions, error) {
	for _, req := range []struct{ name, value string }{{"master", f.master}, {"name", f.name}, {"command", f.command}} {
		if strings.TrimSpace(req.value) == "" {
			return nil, fmt.Errorf("--%s is required", req.name)
		}
	}
	if strings.ContainsAny(f.name, "/\\") || f.name == "." || f.name == ".." || len(f.name) > 200 {
		return nil, fmt.Errorf("--name %q: it prefixes the task ID, which names a directory: no '/', '\\', '.', '..' or more than 200 characters", f.name)
	}
	if !strings.Contains(f.master, "://") {
		if _, _, err := net.SplitHostPort(f.master); err != nil {
			return nil, fmt.Errorf("--master %q: want HOST:PORT or a URL: %w", f.master, err)
		}
	}
	// Any TLS flag means https; a bare --master stays as given otherwise,
	// as the user wrote it in what corral run says.
	master, files := f.master, f.tls
	if files.Enabled() {
		var err error
		if master, err = files.URL("--master", master); err != nil {
			return nil, err
		}
	}
	// An https --master without TLS flags trusts the system's roots.
	files.On = files.On || strings.HasPrefix(master, "https://")
	tlsCfg, err := files.Client()
	if err != nil {
		return nil, err
	}
	var rt http.RoundTripper = tlsconfig.Transport(tlsCfg)
	if f.principal != "" && f.secret != "" {
		// The master's /state and the agent's /files may want credentials
		// (--authenticate_http_readonly): the framework's go there too, but
		// only to the master's host or over TLS: an agent's address comes
		// from its own registration, and a rogue agent must not collect the
		// secret over plain HTTP.
		rt = withBasicAuth{rt, f.principal, f.secret, masterHost(master)}
	}
	// No redirect is followed (the scheduler driver follows the master's
	// itself): one could carry the credentials elsewhere.
	hc := &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	want, err := resources.Parse(f.resources)
	if err != nil {
		return nil, fmt.Errorf("--resources: %w", err)
	}
	if want.Empty() {
		return nil, fmt.Errorf("--resources %q: a task needs some resources", f.resources)
	}
	var c codec.Codec
	switch strings.ToLower(f.codec) {
	case "json":
		c = codec.JSON
	case "protobuf":
		c = codec.Protobuf
	default:
		return nil, fmt.Errorf("--codec %q: want json or protobuf", f.codec)
	}
	var vars []*mesos.Environment_Variable
	for _, kv := range f.env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--env %q: want KEY=VALUE", kv)
		}
		vars = append(vars, &mesos.Environment_Variable{Name: proto.String(k), Value: proto.String(v)})
	}
	if f.killAfter < 0 {
		return nil, fmt.Errorf("--kill_after %v: must not be negative", f.killAfter)
	}
	if f.timeout < 0 {
		return nil, fmt.Errorf("--timeout %v: must not be negative", f.timeout)
	}
	if strings.TrimSpace(f.frameworkName) == "" {
		return nil, errors.New("--framework_name must not be empty")
	}
	var cred *mesos.Credential
	switch {
	case f.principal != "" && f.secret == "":
		return nil, errors.New("--principal needs --secret (or CORRAL_SECRET)")
	case f.principal == "" && f.secret != "":
		return nil, errors.New("--secret needs --principal")
	case f.principal != "":
		cred = &mesos.Credential{Principal: proto.String(f.principal), Secret: proto.String(f.secret)}
	}

	username := "root"
	if u, err := user.Current(); err == nil {
		username = u.Username
	}
	hostname, _ := os.Hostname()
	cmd := &mesos.CommandInfo{Value: proto.String(f.command), Shell: proto.Bool(true)}
	if len(vars) > 0 {
		cmd.Environment = &mesos.Environment{Variables: vars}
	}
	id := f.name + "-" + randomSuffix()
	return &runOptions{
		master: master, http: hc, tls: tlsCfg, credential: cred,
		framework: &mesos.FrameworkInfo{
			User: proto.String(username), Name: proto.String(f.frameworkName), Hostname: proto.String(hostname),
			// Nothing fails over to a finished corral run: if it dies, its
			// task should go with it.
			FailoverTimeout: proto.Float64(0),
			Checkpoint:      proto.Bool(f.checkpoint),
		},
		codec: c,
		task: &mesos.TaskInfo{
			Name: proto.String(f.name), TaskId: &mesos.TaskID{Value: proto.String(id)},
			Resources: want, Command: cmd,
		},
		want:      want,
		killAfter: f.killAfter,
		timeout:   f.timeout,
	}, nil
}

// withBasicAuth sends a principal's credentials with the requests that
// carry none, to the master's host or over TLS.
type withBasicAuth struct {
	http.RoundTripper
	principal, secret string
	masterHost        string
}

func (b withBasicAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Authorization") == "" && (r.URL.Scheme == "https" || r.URL.Hostname() == b.masterHost) {
		r = r.Clone(r.Context())
		r.SetBasicAuth(b.principal, b.secret)
	}
	return b.RoundTripper.RoundTrip(r)
}

// masterHost is the host --master names.
func masterHost(master string) string {
	host, _, err := net.SplitHostPort(masterAddr(master))
	if err != nil {
		return ""
	}
	return host
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// run launches the task and follows it. Signals on sigs kill the task (a
// second one gives up waiting); either way the framework is torn down.
func (o *runOptions) run(ctx context.Context, out, errOut io.Writer, log *slog.Logger, sigs <-chan os.Signal) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rs := &runScheduler{opts: o, out: out, errOut: errOut, log: log, done: make(chan error, 1), running: make(chan struct{})}
	// The driver's retry warnings go quiet once the user has been told,
	// plainly, that the master is unreachable (watchMaster).
	dlog := slog.New(&quietHandler{h: log.Handler(), quiet: rs.quietDriver})
	d, err := sched.New(sched.Config{
		Master: o.master, HTTPClient: o.http, Framework: o.framework, Codec: o.codec, Log: dlog, Credential: o.credential,
		// Acknowledged inside StatusUpdate, so the terminal update is
		// acknowledged before the teardown that follows it.
		ExplicitAcks: true,
	}, rs)
	if err != nil {
		return &exitError{code: runExitUsage, err: err}
	}
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()
	go rs.watchMaster(ctx)
	stop := func() {
		_ = d.Stop(false)
		select {
		case <-runErr:
		case <-time.After(5 * time.Second):
		}
	}

	var timeout, killAfter, killDeadline <-chan time.Time
	if o.timeout > 0 {
		t := time.NewTimer(o.timeout)
		defer t.Stop()
		timeout = t.C
	}
	running := rs.running
	var abort error // why we are killing the task ourselves
	for {
		select {
		case err := <-rs.done:
			stop()
			if abort != nil && err != nil {
				return &exitError{code: runExitTaskFailed, err: fmt.Errorf("%w; %w", abort, err)}
			}
			if err != nil {
				return &exitError{code: runExitTaskFailed, err: err}
			}
			return nil
		case err := <-runErr:
			if err == nil {
				err = errors.New("scheduler driver stopped")
			}
			return &exitError{code: runExitTaskFailed, err: err}
		case <-running:
			running = nil
			if o.killAfter > 0 {
				t := time.NewTimer(o.killAfter)
				defer t.Stop()
				killAfter = t.C
			}
		case <-killAfter:
			killAfter = nil
			log.Info("killing task: --kill_after passed", "kill_after", o.killAfter)
			rs.kill(ctx, d)
		case s := <-sigs:
			if abort != nil {
				stop()
				return &exitError{code: runExitTaskFailed, err: fmt.Errorf("%w; gave up waiting for the task after a second %v", abort, s)}
			}
			abort = fmt.Errorf("interrupted by %v%s", s, rs.progress())
			if !rs.kill(ctx, d) {
				stop()
				return &exitError{code: runExitTaskFailed, err: abort}
			}
			killDeadline = time.After(runKillGrace)
		case <-timeout:
			timeout = nil
			abort = fmt.Errorf("--timeout %v passed%s", o.timeout, rs.progress())
			if !rs.kill(ctx, d) {
				stop()
				return &exitError{code: runExitTaskFailed, err: abort}
			}
			killDeadline = time.After(runKillGrace)
		case <-killDeadline:
			stop()
			return &exitError{code: runExitTaskFailed, err: fmt.Errorf("%w; the task did not report a terminal state within %v", abort, runKillGrace)}
		}
	}
}

// runScheduler launches one task on the first offer that fits and reports
// its states.
type runScheduler struct {
	sched.BaseScheduler
	opts   *runOptions
	out    io.Writer // state lines
	errOut io.Writer // human notes
	log    *slog.Logger
	done   chan error // the outcome, once

	running     chan struct{} // closed at TASK_RUNNING
	runningOnce sync.Once

	mu         sync.Mutex
	registered bool
	subscribed bool // now: between a (re)registration and a disconnection
	launched   bool
	agentID    *mesos.AgentID
	agentURL   *mesos.URL
	seen       bool // a status of the task arrived
	lastState  mesos.TaskState
	sandbox    bool   // printed
	sandboxDir string // once found
	finished   bool

	offered        map[string]string // agent ID → what its last offers held of what the task wants
	offersNote     string            // the summary of offered last printed
	unreachable    bool              // the user was told the master is unreachable
	unreachableErr error
}

func (s *runScheduler) Registered(_ sched.Driver, id *mesos.FrameworkID, _ *mesos.MasterInfo) {
	s.mu.Lock()
	s.registered, s.subscribed = true, true
	s.mu.Unlock()
	s.log.Info("framework registered", "framework", id.GetValue())
}

func (s *runScheduler) Reregistered(sched.Driver, *mesos.MasterInfo) {
	s.mu.Lock()
	s.subscribed = true
	s.mu.Unlock()
}

// progress says what an aborted run was still waiting for, if it had not
// launched the task yet.
func (s *runScheduler) progress() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !s.registered && s.unreachable:
		return fmt.Sprintf(" before the master %s accepted the framework: it is unreachable (%v)", s.opts.master, s.unreachableErr)
	case !s.registered:
		return " before the master " + s.opts.master + " accepted the framework"
	case !s.launched && s.offersNote != "":
		return " before an offer with " + s.opts.want.String() + " arrived (the cluster offers " + s.offersNote + ")"
	case !s.launched:
		return " before an offer with " + s.opts.want.String() + " arrived (no offer came)"
	}
	return ""
}

func (s *runScheduler) Disconnected(sched.Driver) {
	s.mu.Lock()
	s.subscribed = false
	s.mu.Unlock()
	s.log.Warn("disconnected from the master; re-subscribing")
}

func (s *runScheduler) Error(_ sched.Driver, msg string) {
	s.log.Error("master refused the framework", "message", msg)
}

func (s *runScheduler) ResourceOffers(d sched.Driver, offers []*mesos.Offer) {
	ctx := context.Background()
	s.mu.Lock()
	launched := s.launched
	s.mu.Unlock()
	var unfit []*mesos.Offer
	defer func() {
		if !launched {
			s.noteOffers(unfit)
		}
	}()
	for _, offer := range offers {
		if !launched && s.fits(offer) {
			task := proto.Clone(s.opts.task).(*mesos.TaskInfo)
			task.AgentId = offer.GetAgentId()
			if err := d.LaunchTasks(ctx, []*mesos.OfferID{offer.GetId()}, []*mesos.TaskInfo{task}, &mesos.Filters{RefuseSeconds: proto.Float64(3600)}); err != nil {
				s.finish(fmt.Errorf("launching task %s: %w", task.GetTaskId().GetValue(), err))
				return
			}
			launched = true
			s.mu.Lock()
			s.launched, s.agentID, s.agentURL = true, offer.GetAgentId(), offer.GetUrl()
			s.mu.Unlock()
			fmt.Fprintf(s.errOut, "Launched task %s on agent %s (%s)\n", task.GetTaskId().GetValue(), offer.GetAgentId().GetValue(), offer.GetHostname())
			// One task is all we want: no more offers, no more declines.
			if err := d.SuppressOffers(ctx); err != nil {
				s.log.Warn("suppressing offers", "err", err)
			}
			continue
		}
		unfit = append(unfit, offer)
		// Briefly: resources that do not fit now may fit once freed.
		refuse := 1.0
		if launched {
			refuse = 3600
		}
		if err := d.DeclineOffer(ctx, offer.GetId(), &mesos.Filters{RefuseSeconds: proto.Float64(refuse)}); err != nil {
			s.log.Warn("declining offer", "offer", offer.GetId().GetValue(), "err", err)
		}
	}
}

func (s *runScheduler) fits(offer *mesos.Offer) bool {
	have, err := resources.New(offer.GetResources())
	if err != nil {
		s.log.Warn("offer with invalid resources", "offer", offer.GetId().GetValue(), "err", err)
		return false
	}
	return have.Contains(s.opts.want)
}

func (s *runScheduler) StatusUpdate(d sched.Driver, status *mesos.TaskStatus) {
	ctx := context.Background()
	terminal, outcome := s.report(ctx, d, status)
	// Acknowledged before the outcome is announced: the teardown that
	// follows ends the subscription the acknowledgement needs.
	if err := d.AcknowledgeStatusUpdate(ctx, status); err != nil {
		s.log.Warn("acknowledging status update", "state", status.GetState(), "err", err)
	}
	if terminal {
		s.finish(outcome)
	}
}

// report prints a status of our task and tells whether it is terminal and
// with which outcome (nil for TASK_FINISHED).
func (s *runScheduler) report(ctx context.Context, d sched.Driver, status *mesos.TaskStatus) (terminal bool, outcome error) {
	if status.GetTaskId().GetValue() != s.opts.task.GetTaskId().GetValue() {
		return false, nil
	}
	state := status.GetState()
	s.mu.Lock()
	changed := !s.seen || state != s.lastState
	s.seen, s.lastState = true, state
	wantSandbox := !s.sandbox && status.GetSource() != mesos.TaskStatus_SOURCE_MASTER
	s.mu.Unlock()
	if changed {
		fmt.Fprintln(s.out, stateLine(status))
	}
	if wantSandbox {
		if dir := s.lookupSandbox(ctx, d.FrameworkID().GetValue(), status); dir != "" {
			s.mu.Lock()
			s.sandbox, s.sandboxDir = true, dir
			s.mu.Unlock()
			fmt.Fprintln(s.out, "Sandbox: "+dir)
		}
	}
	if state == mesos.TaskState_TASK_RUNNING {
		s.runningOnce.Do(func() { close(s.running) })
	}
	if !state.IsTerminal() {
		return false, nil
	}
	if state == mesos.TaskState_TASK_FINISHED {
		return true, nil
	}
	if state == mesos.TaskState_TASK_FAILED {
		s.printStderrTail(ctx, d.FrameworkID().GetValue(), status)
	}
	return true, fmt.Errorf("task %s ended in %s", s.opts.task.GetTaskId().GetValue(), stateLine(status))
}

func (s *runScheduler) finish(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.finished {
		s.finished = true
		s.done <- err
	}
}

// kill asks for the task to be killed; false when there is no task yet.
func (s *runScheduler) kill(ctx context.Context, d sched.Driver) bool {
	s.mu.Lock()
	launched, agent := s.launched, s.agentID
	s.mu.Unlock()
	if !launched {
		return false
	}
	kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.KillTask(kctx, s.opts.task.GetTaskId(), agent); err != nil {
		s.log.Warn("killing task", "err", err)
	}
	return true
}

// stateLine is the stable one-line form of a status: the state first.
func stateLine(s *mesos.TaskStatus) string {
	line := s.GetState().String()
	if s.Reason != nil {
		line += " (" + s.GetReason().String() + ")"
	}
	if m := strings.TrimSpace(s.GetMessage()); m != "" {
		line += ": " + strings.Join(strings.Fields(m), " ")
	}
	return line
}

// lookupSandbox finds the task's sandbox in the agent's /state (Mesos'
// shape: frameworks[].executors[].directory, for the executor whose tasks
// include ours). Mesos' ContainerStatus has no directory, so /state is the
// only source. "" when not found.
func (s *runScheduler) lookupSandbox(ctx context.Context, frameworkID string, status *mesos.TaskStatus) string {
	base := s.agentBase(ctx)
	if base == "" {
		return ""
	}
	var st agentState
	if err := getJSON(ctx, s.opts.http, base+"/state", 64<<20, &st); err != nil {
		s.log.Warn("fetching agent state for the sandbox path", "err", err)
		return ""
	}
	return st.sandbox(frameworkID, status.GetTaskId().GetValue())
}

// agentState is the part of an agent's /state that locates sandboxes.
type agentState struct {
	Frameworks          []stateFramework `json:"frameworks"`
	CompletedFrameworks []stateFramework `json:"completed_frameworks"`
	CompletedExecutors  []stateExecutor  `json:"completed_executors_recent"`
}

type stateFramework struct {
	ID                 string          `json:"id"`
	Executors          []stateExecutor `json:"executors"`
	CompletedExecutors []stateExecutor `json:"completed_executors"`
}

type stateExecutor struct {
	ID             string      `json:"id"`
	FrameworkID    string      `json:"framework_id"`
	Directory      string      `json:"directory"`
	Tasks          []stateTask `json:"tasks"`
	QueuedTasks    []stateTask `json:"queued_tasks"`
	CompletedTasks []stateTask `json:"completed_tasks"`
}

type stateTask struct {
	ID        string `json:"id"`
	Directory string `json:"directory"` // Corral's: a task's own sandbox in a group
}

// sandbox is the directory of the task, looked up in every executor list
// since a short task may already be in a completed one.
func (st *agentState) sandbox(frameworkID, taskID string) string {
	var all []stateExecutor
	for _, fws := range [][]stateFramework{st.Frameworks, st.CompletedFrameworks} {
		for _, fw := range fws {
			if frameworkID != "" && fw.ID != "" && fw.ID != frameworkID {
				continue
			}
			all = append(all, fw.Executors...)
			all = append(all, fw.CompletedExecutors...)
		}
	}
	all = append(all, st.CompletedExecutors...)
	for _, ex := range all {
		if frameworkID != "" && ex.FrameworkID != "" && ex.FrameworkID != frameworkID {
			continue
		}
		for _, list := range [][]stateTask{ex.Tasks, ex.QueuedTasks, ex.CompletedTasks} {
			for _, t := range list {
				if t.ID != taskID {
					continue
				}
				if t.Directory != "" {
					return t.Directory
				}
				return ex.Directory
			}
		}
	}
	return ""
}
