package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binDir holds the corral and corral-init binaries under test: $CORRAL_BIN_DIR
// when set, otherwise a fresh build of ../.. made by TestMain.
var binDir string

// skipReason, when set, makes every test skip with it (not root, or the
// binaries could not be found).
var skipReason string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		skipReason = "conformance tests need root: the agent launches containers (run as root, e.g. `sudo -E go test ./...`)"
		return m.Run()
	}
	if dir := os.Getenv("CORRAL_BIN_DIR"); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "corral")); err != nil {
			fmt.Fprintf(os.Stderr, "CORRAL_BIN_DIR=%s: %v\n", dir, err)
			return 2
		}
		binDir = dir
		return m.Run()
	}
	tmp, err := os.MkdirTemp("", "corral-conformance-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer os.RemoveAll(tmp)
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	build := exec.Command("go", "build", "-o", tmp+string(filepath.Separator), "./cmd/corral", "./cmd/corral-init")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building corral in %s: %v\n", root, err)
		return 2
	}
	binDir = tmp
	return m.Run()
}

func requireRoot(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// corral is one running `corral local`.
type corral struct {
	URL     string // http://127.0.0.1:<port>
	WorkDir string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	once    sync.Once
}

// startCorral starts `corral local` on a free loopback port with its own
// work_dir, waits until the master is healthy and an agent is activated, and
// registers cleanup that stops it (SIGTERM, then SIGKILL) and checks that no
// process it launched is left behind.
func startCorral(t *testing.T, extraArgs ...string) *corral {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	workDir := filepath.Join(dir, "work")
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		c, err := tryStartCorral(t, dir, workDir, attempt, extraArgs)
		if err == nil {
			return c
		}
		lastErr = err
	}
	t.Fatalf("corral local did not come up: %v", lastErr)
	return nil
}

func tryStartCorral(t *testing.T, dir, workDir string, attempt int, extraArgs []string) (*corral, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, fmt.Sprintf("corral-%d.log", attempt))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := append([]string{"local",
		"--ip", "127.0.0.1",
		"--port", strconv.Itoa(port),
		"--work_dir", workDir,
		// The wire protocol is under test, not isolation: the posix
		// launcher leaves no cgroups behind.
		"--launcher", "posix",
	}, extraArgs...)
	cmd := exec.Command(filepath.Join(binDir, "corral"), args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, so cleanup can reach anything it forks that
	// stays in the group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	c := &corral{
		URL:     fmt.Sprintf("http://127.0.0.1:%d", port),
		WorkDir: workDir,
		cmd:     cmd,
		logPath: logPath,
		exited:  make(chan struct{}),
	}
	go func() {
		cmd.Wait()
		logFile.Close()
		close(c.exited)
	}()
	t.Cleanup(func() { c.stop(t) })

	if err := c.waitReady(20 * time.Second); err != nil {
		c.stop(t)
		return nil, fmt.Errorf("%v\n%s", err, c.logTail(40))
	}
	t.Logf("corral local up at %s (work_dir %s, log %s)", c.URL, workDir, logPath)
	return c, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (c *corral) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: 2 * time.Second}
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-c.exited:
			return fmt.Errorf("corral exited early: %v", c.cmd.ProcessState)
		default:
		}
		if res, err := hc.Get(c.URL + "/health"); err != nil {
			last = err.Error()
		} else {
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				last = "/health: " + res.Status
			} else if n, err := c.activatedAgents(hc); err != nil {
				last = err.Error()
			} else if n >= 1 {
				return nil
			} else {
				last = "no activated agent yet"
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %v: %s", timeout, last)
}

func (c *corral) activatedAgents(hc *http.Client) (int, error) {
	res, err := hc.Get(c.URL + "/state")
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("/state: %s", res.Status)
	}
	var st struct {
		ActivatedSlaves float64 `json:"activated_slaves"`
	}
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		return 0, fmt.Errorf("/state: %v", err)
	}
	return int(st.ActivatedSlaves), nil
}

// stop sends SIGTERM to corral (and its process group), waits up to 10 s,
// then SIGKILLs it; it then looks for processes corral launched that
// outlived it, kills them (by PID) and fails the test if there were any.
func (c *corral) stop(t *testing.T) {
	c.once.Do(func() {
		pid := c.cmd.Process.Pid
		syscall.Kill(-pid, syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			t.Errorf("corral (pid %d) did not exit 10 s after SIGTERM; sending SIGKILL", pid)
			syscall.Kill(-pid, syscall.SIGKILL)
			<-c.exited
		}
		if left := leftoverProcesses(c.WorkDir); len(left) > 0 {
			for _, p := range left {
				syscall.Kill(p.pid, syscall.SIGKILL)
			}
			t.Errorf("processes launched by corral outlived it (killed now): %v", left)
		}
		if t.Failed() {
			t.Logf("corral log (%s), last lines:\n%s", c.logPath, c.logTail(60))
		}
	})
}

func (c *corral) logTail(n int) string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

type leftover struct {
	pid     int
	cmdline string
}

func (l leftover) String() string { return fmt.Sprintf("%d %q", l.pid, l.cmdline) }

// leftoverProcesses finds processes whose command line, working directory
// or environment mention workDir: everything corral launches runs in a
// sandbox under it.
func leftoverProcesses(workDir string, exclude ...int) []leftover {
	entries, _ := os.ReadDir("/proc")
	self := os.Getpid()
	var out []leftover
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || slices.Contains(exclude, pid) {
			continue
		}
		p := filepath.Join("/proc", e.Name())
		cmdline, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		environ, _ := os.ReadFile(filepath.Join(p, "environ"))
		cwd, _ := os.Readlink(filepath.Join(p, "cwd"))
		if bytes.Contains(cmdline, []byte(workDir)) || bytes.Contains(environ, []byte(workDir)) ||
			cwd == workDir || strings.HasPrefix(cwd, workDir+"/") {
			out = append(out, leftover{pid, strings.TrimSpace(string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))})
		}
	}
	return out
}

// testContext is the per-test bound: 60 s.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
