package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral/corral/internal/testsupport"
)

// Bounds that only turn a hang into a failure; nothing asserts on time.
const (
	startTimeout = 60 * time.Second
	runTimeout   = 2 * time.Minute
	stopTimeout  = 60 * time.Second
)

func corralBin(tb testing.TB) string {
	tb.Helper()
	p := filepath.Join(testsupport.BinDir(tb), "corral")
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("corral binary: %v", err)
	}
	return p
}

// rootTest skips as non-root and with -short, else returns the test's
// prefix with the leak check registered.
func rootTest(tb testing.TB) string {
	tb.Helper()
	if testing.Short() {
		tb.Skip("runs containers through the real binaries; skipped with -short")
	}
	testsupport.RequireRoot(tb)
	prefix := testsupport.Prefix(tb)
	testsupport.CheckLeaks(tb, prefix)
	return prefix
}

// proc is one running corral process.
type proc struct {
	name    string
	cmd     *exec.Cmd
	out     *testsupport.SyncBuffer // stdout and stderr, unless the test gave its own
	exited  chan struct{}
	waitErr error
	stopped bool // by the test: its exit is no failure
}

func start(tb testing.TB, name string, stdout io.Writer, args ...string) *proc {
	tb.Helper()
	p := &proc{name: name, out: &testsupport.SyncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(corralBin(tb), args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if stdout != nil {
		p.cmd.Stdout, p.cmd.Stderr = stdout, stdout
	}
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	// Registered after the cgroup cleanups (LIFO): the process is gone
	// before its cgroups are checked and removed.
	tb.Cleanup(func() { p.kill() })
	return p
}

// stop sends sig and waits for the exit; a process that ignores it is
// killed and that is an error.
func (p *proc) stop(tb testing.TB, sig syscall.Signal) *os.ProcessState {
	tb.Helper()
	p.stopped = true
	select {
	case <-p.exited:
		return p.cmd.ProcessState
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		p.kill()
		tb.Errorf("%s ignored %v for %v; killed", p.name, sig, stopTimeout)
	}
	return p.cmd.ProcessState
}

func (p *proc) kill() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// cluster is `corral local`, or `corral master` and `corral agent`.
type cluster struct {
	master  string // host:port
	url     string // scheme://host:port of the master
	http    *http.Client
	workDir string
	cgRoot  string
	procs   []*proc
	// agentArgs start the agent of a split cluster again.
	agentArgs []string
}

// clusterOpts shape a test cluster.
type clusterOpts struct {
	split   bool      // `corral master` + `corral agent` instead of `corral local`
	stdout  io.Writer // of corral local (default: a buffer)
	workDir string    // default a new one
	port    int       // master port; default a free one
	extra   []string  // more flags of corral local or corral agent
	// tls, when set, signs the certificate the master and the agent serve
	// (and present to each other).
	tls *testsupport.CA
	// http reaches the master (default: plain, without credentials).
	http *http.Client
}

func startCluster(tb testing.TB, prefix string, o clusterOpts) *cluster {
	tb.Helper()
	c := &cluster{workDir: o.workDir}
	if c.workDir == "" {
		c.workDir = filepath.Join(tb.TempDir(), prefix+"work")
		c.cgRoot = testsupport.CgroupsRoot(tb, prefix)
		reapCgroups(tb, c.cgRoot)
	} else {
		c.cgRoot = prefix + "root"
	}
	port := o.port
	if port == 0 {
		port = testsupport.FreePort(tb)
	}
	c.master = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	c.url, c.http = "http://"+c.master, http.DefaultClient
	if o.http != nil {
		c.http = o.http
	}
	agentArgs := []string{"--work_dir", c.workDir, "--cgroups_root", c.cgRoot, "--resources", "cpus:2;mem:1024;disk:1024",
		"--logging_level", "INFO"}
	var tlsFlags []string
	if o.tls != nil {
		cert, key := o.tls.Issue(tb, "node")
		tlsFlags = o.tls.Flags(cert, key)
		agentArgs = append(agentArgs, tlsFlags...)
		c.url, c.http = "https://"+c.master, o.tls.HTTPClient(tb, cert, key)
	}
	if o.split {
		c.procs = append(c.procs, start(tb, "corral master", nil, append([]string{"master", "--port", strconv.Itoa(port)}, tlsFlags...)...))
		c.agentArgs = append(append([]string{"agent", "--master", c.master, "--port", "0"}, agentArgs...), o.extra...)
		c.procs = append(c.procs, start(tb, "corral agent", nil, c.agentArgs...))
	} else {
		c.procs = append(c.procs, start(tb, "corral local", o.stdout, append(append([]string{"local", "--port", strconv.Itoa(port)}, agentArgs...), o.extra...)...))
	}
	tb.Cleanup(func() {
		for i := len(c.procs) - 1; i >= 0; i-- {
			c.procs[i].stop(tb, syscall.SIGTERM)
		}
		if tb.Failed() {
			for _, p := range c.procs {
				tb.Logf("%s output:\n%s", p.name, p.out.Tail(6000))
			}
		}
	})
	c.waitReady(tb)
	return c
}

// restartAgent starts the agent of a split cluster again, on the same
// work_dir, after the test stopped it.
func (c *cluster) restartAgent(tb testing.TB) {
	tb.Helper()
	c.procs = append(c.procs, start(tb, "corral agent (restarted)", nil, c.agentArgs...))
	c.waitReady(tb)
}

// waitReady waits until the master lists an active agent.
func (c *cluster) waitReady(tb testing.TB) {
	tb.Helper()
	var last error
	for deadline := time.Now().Add(startTimeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, p := range c.procs {
			if !p.stopped && !p.running() {
				tb.Fatalf("%s exited during start-up: %v\n%s", p.name, p.waitErr, p.out.Tail(4000))
			}
		}
		var st struct {
			Slaves []struct {
				Active bool   `json:"active"`
				PID    string `json:"pid"`
			} `json:"slaves"`
		}
		if last = testsupport.GetJSONWith(c.http, c.url+"/state", &st); last == nil {
			for _, s := range st.Slaves {
				if s.Active {
					return
				}
			}
			last = errors.New("no active agent yet")
		}
	}
	tb.Fatalf("cluster not ready after %v: %v", startTimeout, last)
}

// result is a finished corral command.
type result struct {
	stdout, stderr string
	code           int
}

// corral runs the corral binary to its end, with env added.
func corral(tb testing.TB, env []string, args ...string) result {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, corralBin(tb), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		tb.Fatalf("corral %q did not end within %v\nstdout:\n%s\nstderr:\n%s", args, runTimeout, out.String(), errOut.String())
	}
	r := result{stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		tb.Fatalf("corral %q: %v", args, err)
	}
	return r
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// containerCgroups lists the containers' cgroups under root in every
// mounted hierarchy.
func containerCgroups(root string) []string {
	var out []string
	hiers, _ := os.ReadDir("/sys/fs/cgroup")
	for _, h := range append([]string{""}, names(hiers)...) {
		entries, _ := os.ReadDir(filepath.Join("/sys/fs/cgroup", h, root))
		for _, e := range entries {
			if e.IsDir() {
				out = append(out, filepath.Join("/sys/fs/cgroup", h, root, e.Name()))
			}
		}
	}
	return out
}

func names(es []os.DirEntry) []string {
	var out []string
	for _, e := range es {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// freezerState is a v1 freezer cgroup's state, or a v2 cgroup's frozen
// flag as "FROZEN"/"THAWED"; "" when neither file is there.
func freezerState(dir string) string {
	if b, err := os.ReadFile(filepath.Join(dir, "freezer.state")); err == nil {
		return strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile(filepath.Join(dir, "cgroup.freeze")); err == nil {
		if strings.TrimSpace(string(b)) == "1" {
			return "FROZEN"
		}
		return "THAWED"
	}
	return ""
}

// reapCgroups registers a cleanup that, should a test fail half-way, thaws
// and kills whatever is still in the containers' cgroups under root and
// removes them, so that a failure leaves nothing frozen or running. It runs
// after the corral processes were stopped and before the root is removed.
func reapCgroups(tb testing.TB, root string) {
	tb.Cleanup(func() {
		for _, dir := range containerCgroups(root) {
			thawAndKill(dir)
		}
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			left := 0
			for _, dir := range containerCgroups(root) {
				if err := rmdirTree(dir); err != nil {
					left++
				}
			}
			if left == 0 {
				return
			}
		}
		tb.Errorf("cgroups left under %s: %v", root, containerCgroups(root))
	})
}

func thawAndKill(dir string) {
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		_ = os.WriteFile(filepath.Join(p, "freezer.state"), []byte("THAWED"), 0o644)
		_ = os.WriteFile(filepath.Join(p, "cgroup.freeze"), []byte("0"), 0o644)
		b, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		return nil
	})
}

// rmdirTree removes a cgroup and those below it, children first.
func rmdirTree(dir string) error {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
			return err
		}
	}
	return nil
}

// processesOf lists the live processes whose command line or environment
// holds s (a sandbox path holds the work dir, named by the test's prefix),
// with their state letters.
func processesOf(s string) []string {
	var out []string
	for _, p := range testsupport.ProcessesWith(s) {
		out = append(out, fmt.Sprintf("%s (%s, ppid %s): %s", p.PID, p.State, p.PPid, p.Cmdline))
	}
	return out
}

func procState(pid string) string { return testsupport.ProcStatus(pid, "State:") }
