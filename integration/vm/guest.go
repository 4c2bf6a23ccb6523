//go:build linux

package vm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Mode is one column of the matrix: kernel arguments and the file system
// type /sys/fs/cgroup must then have.
type Mode struct {
	Name       string
	KernelArgs []string
	CgroupFS   string // stat -fc %T /sys/fs/cgroup
}

// Modes is the matrix, in the default order.
var Modes = []Mode{
	{Name: "v2", KernelArgs: []string{"systemd.unified_cgroup_hierarchy=1"}, CgroupFS: "cgroup2fs"},
	{Name: "v1", KernelArgs: []string{"systemd.unified_cgroup_hierarchy=0"}, CgroupFS: "tmpfs"},
}

// LookupMode returns the mode called name.
func LookupMode(name string) (Mode, bool) {
	for _, m := range Modes {
		if m.Name == name {
			return m, true
		}
	}
	return Mode{}, false
}

// BootOptions say how to boot one guest.
type BootOptions struct {
	Image       Image
	Payload     *Payload
	Src         string // source tree, mounted read-only at the same path
	Dir         string // this mode's run directory: share/ and console.log go there
	Accel       string // "kvm" or "tcg"
	Memory      int    // MiB
	CPUs        int
	BootTimeout time.Duration // qemu start to the suite's start
	Timeout     time.Duration // hard limit for the whole guest
	Console     io.Writer     // optional: the serial console as it comes
	Progress    func(mode, event string)
}

// PackageResult is one test binary's outcome in a guest.
type PackageResult struct {
	Name             string
	RC               int // -1: did not run or did not finish
	Pass, Fail, Skip int
	Duration         time.Duration
	Output           string // path of its go test -v output
}

// OK tells whether the binary passed.
func (p PackageResult) OK() bool { return p.RC == 0 }

// GuestResult is what one boot gave.
type GuestResult struct {
	Mode            string
	Accel           string
	Err             error // the guest did not finish, or booted wrong
	BootToFirstTest time.Duration
	Suite           time.Duration // first test binary started to the last one ended
	Total           time.Duration // qemu start to qemu exit
	Packages        []PackageResult
	Env             map[string]string // guest.env
	Console         string            // path of the serial console log
	Share           string            // the guest's output directory
	started         bool              // the runner script started
}

// Counts sums the results; a binary that failed without a failing test
// (panic, timeout, crash) or did not run counts as one failure.
func (g *GuestResult) Counts() (pass, fail, skip int) {
	for _, p := range g.Packages {
		pass += p.Pass
		skip += p.Skip
		fail += p.Fail
		if !p.OK() && p.Fail == 0 {
			fail++
		}
	}
	return
}

// OK tells whether the guest finished and every binary passed.
func (g *GuestResult) OK() bool {
	if g.Err != nil {
		return false
	}
	for _, p := range g.Packages {
		if !p.OK() {
			return false
		}
	}
	return true
}

// QemuArgs returns qemu-system-x86_64's arguments for a test boot in mode.
func QemuArgs(o BootOptions, mode Mode, share string) []string {
	cpu := "max"
	if o.Accel == "kvm" {
		cpu = "host"
	}
	append_ := strings.Join(append([]string{"console=ttyS0", "root=/dev/vda", "rw", "panic=-1", "loglevel=4"},
		append(mode.KernelArgs, "corral.vmtest=1", "corral.vm_mode="+mode.Name)...), " ")
	virtfs := func(path, tag string, ro bool) string {
		s := fmt.Sprintf("local,path=%s,mount_tag=%s,security_model=none", path, tag)
		if ro {
			s += ",readonly=on"
		}
		return s
	}
	return []string{
		"-accel", o.Accel, "-cpu", cpu, "-m", strconv.Itoa(o.Memory), "-smp", strconv.Itoa(o.CPUs),
		"-nographic", "-nodefaults", "-serial", "stdio", "-no-reboot",
		"-kernel", o.Image.Kernel, "-initrd", o.Image.Initrd, "-append", append_,
		"-drive", "file=" + o.Image.Disk + ",if=virtio,format=qcow2,snapshot=on",
		"-device", "virtio-rng-pci",
		"-virtfs", virtfs(o.Payload.Dir, "payload", true),
		"-virtfs", virtfs(share, "out", false),
		"-virtfs", virtfs(o.Src, "src", true),
	}
}

var markerRE = regexp.MustCompile(`corral-vmtest: (start|run|end|hang|done)\b ?(\S*)(?: rc=(-?\d+))?`)

// Boot runs the suite in one guest of the given mode and collects results.
// The guest is killed when it exceeds its timeouts or ctx ends.
func Boot(ctx context.Context, o BootOptions, mode Mode) *GuestResult {
	res := &GuestResult{Mode: mode.Name, Accel: o.Accel}
	share := filepath.Join(o.Dir, "share")
	res.Share, res.Console = share, filepath.Join(o.Dir, "console.log")
	if err := os.RemoveAll(o.Dir); err != nil {
		res.Err = err
		return res
	}
	if err := os.MkdirAll(share, 0o777); err != nil {
		res.Err = err
		return res
	}
	logf, err := os.Create(res.Console)
	if err != nil {
		res.Err = err
		return res
	}
	defer logf.Close()

	cmd := exec.Command("qemu-system-x86_64", QemuArgs(o, mode, share)...)
	fmt.Fprintf(logf, "+ qemu-system-x86_64 %s\n", strings.Join(cmd.Args[1:], " "))
	pr, pw, err := os.Pipe()
	if err != nil {
		res.Err = err
		return res
	}
	cmd.Stdout, cmd.Stderr = pw, pw // stdin: /dev/null, so qemu leaves the terminal alone
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		pw.Close()
		pr.Close()
		res.Err = fmt.Errorf("qemu: %v", err)
		return res
	}
	pw.Close()

	var (
		mu        sync.Mutex
		firstRun  time.Time
		lastEnd   time.Time
		runStart  = map[string]time.Time{}
		durations = map[string]time.Duration{}
		startedCh = make(chan struct{})
		doneCh    = make(chan struct{})
		readDone  = make(chan struct{})
		startOnce sync.Once
		doneOnce  sync.Once
	)
	tail := &lineTail{max: 40}
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			now := time.Now()
			fmt.Fprintf(logf, "[%7.2f] %s\n", now.Sub(start).Seconds(), line)
			tail.add(line)
			if o.Console != nil {
				fmt.Fprintf(o.Console, "%s| %s\n", mode.Name, line)
			}
			m := markerRE.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			mu.Lock()
			switch m[1] {
			case "start":
				startOnce.Do(func() { close(startedCh) })
			case "run":
				if firstRun.IsZero() {
					firstRun = now
				}
				runStart[m[2]] = now
			case "end":
				lastEnd = now
				if t, ok := runStart[m[2]]; ok {
					durations[m[2]] = now.Sub(t)
				}
			case "done":
				doneOnce.Do(func() { close(doneCh) })
			}
			mu.Unlock()
			if o.Progress != nil {
				o.Progress(mode.Name, strings.TrimSpace(m[0][len("corral-vmtest: "):]))
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	kill := func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	hard := time.NewTimer(o.Timeout)
	defer hard.Stop()
	boot := time.NewTimer(o.BootTimeout)
	defer boot.Stop()
	var waitErr error
	var grace <-chan time.Time
	started, done := startedCh, doneCh
loop:
	for {
		select {
		case waitErr = <-exited:
			break loop
		case <-started:
			boot.Stop()
			res.started = true
			started = nil
		case <-done:
			// The suite is over; give the guest a minute to power off.
			grace = time.After(60 * time.Second)
			done = nil
		case <-grace:
			fmt.Fprintf(logf, "vmtest: guest did not power off 60s after the suite; killed\n")
			kill()
		case <-boot.C:
			res.Err = fmt.Errorf("guest did not start the suite within %v (killed); console tail:\n%s", o.BootTimeout, tail.String())
			kill()
		case <-hard.C:
			res.Err = fmt.Errorf("guest did not finish within %v (killed); console tail:\n%s", o.Timeout, tail.String())
			kill()
		case <-ctx.Done():
			res.Err = fmt.Errorf("interrupted: %w", ctx.Err())
			kill()
		}
	}
	<-readDone
	pr.Close()
	res.Total = time.Since(start)
	mu.Lock()
	if !firstRun.IsZero() {
		res.BootToFirstTest = firstRun.Sub(start)
		if !lastEnd.IsZero() {
			res.Suite = lastEnd.Sub(firstRun)
		}
	}
	mu.Unlock()

	res.Env = readEnv(filepath.Join(share, "guest.env"))
	for _, p := range o.Payload.Packages {
		pr := PackageResult{Name: p.Name, RC: -1, Output: filepath.Join(share, p.Name+".out"), Duration: durations[p.Name]}
		if b, err := os.ReadFile(filepath.Join(share, p.Name+".rc")); err == nil {
			if rc, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				pr.RC = rc
			}
		}
		if f, err := os.Open(pr.Output); err == nil {
			pr.Pass, pr.Fail, pr.Skip = CountResults(f)
			f.Close()
		}
		res.Packages = append(res.Packages, pr)
	}
	if res.Err == nil {
		if _, err := os.Stat(filepath.Join(share, "done")); err != nil {
			msg := "guest powered off before the suite ended"
			if waitErr != nil {
				msg = fmt.Sprintf("qemu exited (%v) before the suite ended", waitErr)
			}
			res.Err = fmt.Errorf("%s; console tail:\n%s", msg, tail.String())
		} else if got := res.Env["cgroupfs"]; got != mode.CgroupFS {
			res.Err = fmt.Errorf("guest booted with /sys/fs/cgroup of type %q, mode %s wants %q", got, mode.Name, mode.CgroupFS)
		}
	}
	return res
}

// CountResults counts go test -v result lines, subtests included.
func CountResults(r io.Reader) (pass, fail, skip int) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := strings.TrimLeft(sc.Text(), " \t")
		switch {
		case strings.HasPrefix(line, "--- PASS: "):
			pass++
		case strings.HasPrefix(line, "--- FAIL: "):
			fail++
		case strings.HasPrefix(line, "--- SKIP: "):
			skip++
		}
	}
	return
}

// Skip is a skipped test and why (its last log line before the skip).
type Skip struct{ Test, Reason string }

var (
	testEventRE = regexp.MustCompile(`^=== (?:RUN|NAME|CONT)\s+(\S+)`)
	testLogRE   = regexp.MustCompile(`^\s+\S+\.go:\d+: (.*)`)
	skipRE      = regexp.MustCompile(`^\s*--- SKIP: (\S+)`)
)

// Skipped lists the skipped tests of a go test -v output with their
// reasons, in the order go test reported them.
func Skipped(r io.Reader) []Skip {
	var (
		out     []Skip
		current string
		last    = map[string]string{}
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if m := testEventRE.FindStringSubmatch(line); m != nil {
			current = m[1]
		} else if m := skipRE.FindStringSubmatch(line); m != nil {
			out = append(out, Skip{Test: m[1], Reason: last[m[1]]})
		} else if m := testLogRE.FindStringSubmatch(line); m != nil && current != "" {
			last[current] = m[1]
		}
	}
	return out
}

func readEnv(path string) map[string]string {
	env := map[string]string{}
	b, err := os.ReadFile(path)
	if err != nil {
		return env
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return env
}

// KVMUsable tells whether /dev/kvm can be opened; whether it boots a
// stock kernel is only known by trying (nested KVM often cannot).
func KVMUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// DidNotBoot tells whether the guest never reached the suite: with KVM
// that means trying again under TCG.
func (g *GuestResult) DidNotBoot() bool {
	return !g.started && g.Err != nil && !errors.Is(g.Err, context.Canceled)
}

type lineTail struct {
	mu    sync.Mutex
	max   int
	lines []string
}

func (t *lineTail) add(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, s)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
}

func (t *lineTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return "    " + strings.Join(t.lines, "\n    ")
}
