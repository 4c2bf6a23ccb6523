//go:build linux

// Command vmtest is `make vm-test`: it builds (or reuses) the Debian guest
// image, builds Corral's commands and test binaries statically, boots one
// qemu guest per cgroup mode with systemd as PID 1, runs the tests in it as
// root, and prints a summary per mode. It exits 1 when a test fails or a
// guest does not finish. Settings come from flags or CORRAL_VM_* variables
// (see -h and README.md, "VM tests").
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/corral/corral/integration/vm"
)

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func envBool(name string, def bool) bool {
	if v, err := strconv.ParseBool(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func main() {
	var (
		modes       = flag.String("modes", env("CORRAL_VM_MODES", "v2,v1"), "cgroup modes to boot, comma separated (v2, v1) [CORRAL_VM_MODES]")
		pkgs        = flag.String("pkgs", env("CORRAL_VM_PKGS", ""), "go package patterns to test, space separated; 'all' for every package with tests; default: "+strings.Join(vm.DefaultPatterns, " ")+" [CORRAL_VM_PKGS]")
		run         = flag.String("run", env("CORRAL_VM_RUN", ""), "-test.run regexp [CORRAL_VM_RUN]")
		short       = flag.Bool("short", envBool("CORRAL_VM_SHORT", false), "run tests with -test.short (skips the end-to-end tests) [CORRAL_VM_SHORT]")
		count       = flag.Int("count", envInt("CORRAL_VM_COUNT", 1), "-test.count: runs of each test, to hunt a flaky one [CORRAL_VM_COUNT]")
		testTimeout = flag.Int("test-timeout", envInt("CORRAL_VM_TEST_TIMEOUT", 600), "seconds per test binary in the guest [CORRAL_VM_TEST_TIMEOUT]")
		bootTimeout = flag.Int("boot-timeout", envInt("CORRAL_VM_BOOT_TIMEOUT", 240), "seconds from qemu start to the suite's start [CORRAL_VM_BOOT_TIMEOUT]")
		timeout     = flag.Int("timeout", envInt("CORRAL_VM_TIMEOUT", 900), "hard limit per guest in seconds, boot included: the guest is killed and the mode fails past it [CORRAL_VM_TIMEOUT]")
		accel       = flag.String("accel", env("CORRAL_VM_ACCEL", "auto"), "auto (KVM when it boots, else TCG), kvm or tcg [CORRAL_VM_ACCEL]")
		cache       = flag.String("dir", env("CORRAL_VM_DIR", ""), "build directory: image cache and run results; default <repo>/build/vm [CORRAL_VM_DIR]")
		mirror      = flag.String("mirror", env("CORRAL_VM_MIRROR", ""), "Debian mirror for debootstrap; default: the host's apt mirror [CORRAL_VM_MIRROR]")
		memory      = flag.Int("memory", envInt("CORRAL_VM_MEMORY", 2048), "guest memory in MiB [CORRAL_VM_MEMORY]")
		cpus        = flag.Int("cpus", envInt("CORRAL_VM_CPUS", 2), "guest CPUs [CORRAL_VM_CPUS]")
		parallel    = flag.Bool("parallel", envBool("CORRAL_VM_PARALLEL", runtime.NumCPU() >= 4), "boot the modes at the same time [CORRAL_VM_PARALLEL]")
		showSkips   = flag.Bool("skips", envBool("CORRAL_VM_SKIPS", true), "list skipped tests with their reasons [CORRAL_VM_SKIPS]")
		verbose     = flag.Bool("v", envBool("CORRAL_VM_VERBOSE", false), "stream the guests' serial consoles [CORRAL_VM_VERBOSE]")
		rebuild     = flag.Bool("rebuild", false, "rebuild the image even when a cached one matches")
		imageOnly   = flag.Bool("image-only", false, "build (or check) the image and stop")
		shell       = flag.String("shell", "", "boot MODE interactively on this terminal (root autologin, no tests; poweroff to leave)")
	)
	flag.Parse()
	// debootstrap, chroot and mkfs.ext4 live in sbin, which a non-login
	// root shell (sudo, su) may not have on PATH; exec looks them up here.
	os.Setenv("PATH", os.Getenv("PATH")+":/usr/local/sbin:/usr/sbin:/sbin")
	log.SetPrefix("vmtest: ")
	log.SetFlags(log.Ltime)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	root, err := moduleRoot()
	check(err)
	dir := *cache
	if dir == "" {
		dir = filepath.Join(root, "build", "vm")
	}
	check(os.MkdirAll(dir, 0o755))
	check(ensureTools())
	unlock, err := lock(filepath.Join(dir, "lock"))
	check(err)
	defer unlock()

	// 1. The image.
	recipe := vm.DefaultRecipe
	recipe.Mirror = *mirror
	t0 := time.Now()
	buildLog, err := os.Create(filepath.Join(dir, "image-build.log"))
	check(err)
	if img := filepath.Join(dir, "image-"+recipe.Hash()); !*rebuild && exists(filepath.Join(img, "disk.qcow2")) {
		log.Printf("image %s (cached)", rel(root, img))
	} else {
		log.Printf("building the guest image (debootstrap %s, ~5 min); log: %s", recipe.Suite, rel(root, buildLog.Name()))
	}
	img, built, err := vm.EnsureImage(ctx, dir, recipe, *rebuild, buildLog)
	buildLog.Close()
	if err != nil {
		log.Printf("image build failed: %v; tail of %s:", err, buildLog.Name())
		printTail(buildLog.Name(), 30, os.Stderr)
		os.Exit(1)
	}
	imageTime := time.Since(t0)
	if built {
		log.Printf("image built in %v: %s", imageTime.Round(time.Second), rel(root, img.Dir))
	}
	if *imageOnly {
		return
	}

	accelName := *accel
	if accelName == "auto" {
		accelName = "tcg"
		if vm.KVMUsable() {
			accelName = "kvm"
		}
	}

	// 2. Interactive boot.
	if *shell != "" {
		mode, ok := vm.LookupMode(*shell)
		if !ok {
			log.Fatalf("unknown mode %q", *shell)
		}
		check(shellBoot(img, mode, accelName, *memory, *cpus))
		return
	}

	// 3. The payload: static commands and test binaries.
	t1 := time.Now()
	goCmd := env("GO", "go")
	po := vm.PayloadOptions{Go: goCmd, Root: root, Run: *run, Short: *short, Timeout: *testTimeout, Count: *count}
	if p := strings.Fields(*pkgs); len(p) == 1 && p[0] == "all" {
		po.All = true
	} else {
		po.Patterns = p
	}
	sel, err := vm.SelectPackages(ctx, po)
	check(err)
	if len(sel) == 0 {
		log.Fatalf("no package with tests selected (CORRAL_VM_PKGS=%q)", *pkgs)
	}
	runDir := filepath.Join(dir, "run")
	check(os.RemoveAll(runDir))
	payloadLog, err := os.Create(filepath.Join(dir, "payload-build.log"))
	check(err)
	payload, err := vm.BuildPayload(ctx, po, sel, filepath.Join(runDir, "payload"), payloadLog)
	payloadLog.Close()
	check(err)
	names := make([]string, len(payload.Packages))
	for i, p := range payload.Packages {
		names[i] = strings.TrimSuffix(p.Name, ".test")
	}
	log.Printf("payload built in %v: %d test binaries (%s)", time.Since(t1).Round(100*time.Millisecond), len(names), strings.Join(names, ", "))

	// 4. The guests.
	hard := time.Duration(*timeout) * time.Second
	if hard <= 0 {
		log.Fatalf("-timeout %d: want a positive number of seconds", *timeout)
	}
	var console io.Writer
	if *verbose {
		console = &syncWriter{w: os.Stdout}
	}
	var modeList []vm.Mode
	for _, name := range strings.Split(*modes, ",") {
		m, ok := vm.LookupMode(strings.TrimSpace(name))
		if !ok {
			log.Fatalf("unknown mode %q (have v2, v1)", name)
		}
		modeList = append(modeList, m)
	}
	var (
		accelMu  sync.Mutex
		kvmProbe sync.Mutex // with auto, the first guest finds out whether KVM boots
	)
	bootOne := func(m vm.Mode) *vm.GuestResult {
		o := vm.BootOptions{
			Image: img, Payload: payload, Src: root, Dir: filepath.Join(runDir, m.Name),
			Memory: *memory, CPUs: *cpus, BootTimeout: time.Duration(*bootTimeout) * time.Second, Timeout: hard,
			Console: console,
			Progress: func(mode, ev string) {
				log.Printf("%s: %s", mode, ev)
			},
		}
		accelMu.Lock()
		o.Accel = accelName
		accelMu.Unlock()
		if o.Accel == "kvm" && *accel == "auto" {
			kvmProbe.Lock()
			accelMu.Lock()
			o.Accel = accelName
			accelMu.Unlock()
			if o.Accel == "kvm" {
				po := o
				po.BootTimeout = 90 * time.Second
				log.Printf("%s: booting (kvm)", m.Name)
				res := vm.Boot(ctx, po, m)
				if !res.DidNotBoot() {
					kvmProbe.Unlock()
					return res
				}
				log.Printf("%s: KVM did not boot the guest (%v); falling back to TCG", m.Name, firstLine(res.Err))
				accelMu.Lock()
				accelName = "tcg"
				accelMu.Unlock()
				o.Accel = "tcg"
			}
			kvmProbe.Unlock()
		}
		log.Printf("%s: booting (%s)", m.Name, o.Accel)
		return vm.Boot(ctx, o, m)
	}
	results := make([]*vm.GuestResult, len(modeList))
	if *parallel {
		var wg sync.WaitGroup
		for i, m := range modeList {
			wg.Add(1)
			go func() { defer wg.Done(); results[i] = bootOne(m) }()
		}
		wg.Wait()
	} else {
		for i, m := range modeList {
			results[i] = bootOne(m)
		}
	}

	// 5. The report.
	ok := true
	fmt.Println()
	fmt.Println("== VM tests ==")
	if built {
		fmt.Printf("image: built in %v (%s)\n", imageTime.Round(time.Second), rel(root, img.Dir))
	} else {
		fmt.Printf("image: cached (%s)\n", rel(root, img.Dir))
	}
	for _, r := range results {
		fmt.Printf("-- %s (%s, kernel %s, %s): results in %s\n", r.Mode, r.Accel, r.Env["kernel"], r.Env["cgroupfs"], rel(root, r.Share))
		for _, p := range r.Packages {
			status := "ok  "
			switch {
			case p.RC == -1:
				status = "DNF "
			case p.RC != 0:
				status = "FAIL"
			}
			fmt.Printf("   %s %-32s %6.1fs  %d passed, %d failed, %d skipped", status, strings.TrimSuffix(p.Name, ".test"), p.Duration.Seconds(), p.Pass, p.Fail, p.Skip)
			if p.RC > 0 {
				fmt.Printf("  (exit %d)", p.RC)
			}
			fmt.Println()
			switch {
			case p.RC == -1:
				// The guest was killed in the middle of it: where was it?
				fmt.Printf("        (did not finish; the tail of its output)\n")
				printTail(p.Output, 30, os.Stdout)
			case p.RC != 0:
				printFailures(p.Output)
			}
			if hang := strings.TrimSuffix(p.Output, ".out") + ".hang"; exists(hang) {
				fmt.Printf("        (hung; the guest's state, from %s)\n", rel(root, hang))
				printHead(hang, 60)
			}
			if *showSkips {
				printSkips(p.Output)
			}
		}
		if r.Err != nil {
			fmt.Printf("   GUEST: %v\n   serial console: %s\n", r.Err, rel(root, r.Console))
		}
		if !r.OK() {
			ok = false
		}
	}
	fmt.Println()
	for _, r := range results {
		pass, fail, skip := r.Counts()
		verdict := "ok"
		if !r.OK() {
			verdict = "FAIL"
		}
		if r.Err != nil {
			verdict = "FAIL (guest did not finish)"
		}
		fmt.Printf("%s: %d passed, %d failed, %d skipped  [boot-to-first-test %.1fs, suite %.1fs, guest %.1fs, %s] %s\n",
			r.Mode, pass, fail, skip, r.BootToFirstTest.Seconds(), r.Suite.Seconds(), r.Total.Seconds(), r.Accel, verdict)
	}
	fmt.Printf("vm-test: %v in all\n", time.Since(t0).Round(time.Second))
	if !ok {
		os.Exit(1)
	}
}

// printFailures shows the failing tests' output: from each top-level
// "=== RUN" of a failed test to its "--- FAIL", and the tail when the
// binary died without one.
func printFailures(path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	failed := false
	for _, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "--- FAIL") {
			failed = true
		}
	}
	shown := 0
	if failed {
		var block []string
		for _, l := range lines {
			if strings.HasPrefix(l, "=== RUN") && !strings.Contains(l, "/") {
				block = block[:0]
			}
			block = append(block, l)
			if strings.HasPrefix(l, "--- FAIL") {
				for _, bl := range block {
					if shown < 200 {
						fmt.Printf("        %s\n", bl)
					}
					shown++
				}
				block = block[:0]
			}
		}
	}
	if !failed || shown == 0 {
		from := max(0, len(lines)-40)
		for _, l := range lines[from:] {
			fmt.Printf("        %s\n", l)
		}
	}
}

// printSkips lists the skipped tests of one binary with their reasons.
func printSkips(path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	for _, s := range vm.Skipped(f) {
		reason := s.Reason
		if len(reason) > 110 {
			reason = reason[:107] + "..."
		}
		fmt.Printf("        skip %s: %s\n", s.Test, reason)
	}
}

func shellBoot(img vm.Image, mode vm.Mode, accel string, memory, cpus int) error {
	cpu := "max"
	if accel == "kvm" {
		cpu = "host"
	}
	args := []string{"-accel", accel, "-cpu", cpu, "-m", strconv.Itoa(memory), "-smp", strconv.Itoa(cpus),
		"-nographic", "-nodefaults", "-serial", "mon:stdio", "-no-reboot",
		"-kernel", img.Kernel, "-initrd", img.Initrd,
		"-append", "console=ttyS0 root=/dev/vda rw panic=-1 " + strings.Join(mode.KernelArgs, " "),
		"-drive", "file=" + img.Disk + ",if=virtio,format=qcow2,snapshot=on", "-device", "virtio-rng-pci"}
	fmt.Fprintf(os.Stderr, "vmtest: booting %s (%s); root logs in by itself; `poweroff` or Ctrl-A X to leave\n", mode.Name, accel)
	cmd := exec.Command("qemu-system-x86_64", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	return cmd.Run()
}

// ensureTools installs what the harness needs on a fresh Debian machine.
func ensureTools() error {
	need := map[string]string{
		"qemu-system-x86_64": "qemu-system-x86",
		"qemu-img":           "qemu-utils",
		"debootstrap":        "debootstrap",
		"mkfs.ext4":          "e2fsprogs",
		"unshare":            "util-linux",
	}
	var missing []string
	for bin, pkg := range need {
		if _, err := exec.LookPath(bin); err == nil {
			continue
		}
		if exists("/usr/sbin/"+bin) || exists("/sbin/"+bin) {
			continue
		}
		missing = append(missing, pkg)
	}
	if len(missing) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing %s; install them (apt-get install -y %s) or run as root", strings.Join(missing, " "), strings.Join(missing, " "))
	}
	log.Printf("installing %s", strings.Join(missing, " "))
	for _, args := range [][]string{{"update", "-qq"}, append([]string{"install", "-y", "-qq", "--no-install-recommends"}, missing...)} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("apt-get %s: %v", args[0], err)
		}
	}
	return nil
}

func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		log.Printf("waiting for another vm-test using %s", filepath.Dir(path))
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			return nil, err
		}
	}
	return func() { f.Close() }, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command(env("GO", "go"), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run vmtest inside the corral module")
	}
	return filepath.Dir(mod), nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func rel(root, p string) string {
	if r, err := filepath.Rel(root, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(fmt.Sprint(err), "\n")
	return s
}

func printTail(path string, n int, w io.Writer) {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	for _, l := range lines[max(0, len(lines)-n):] {
		fmt.Fprintln(w, "        "+l)
	}
}

func printHead(path string, n int) {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	for _, l := range lines[:min(n, len(lines))] {
		fmt.Println("        " + l)
	}
	if len(lines) > n {
		fmt.Printf("        ... (%d more lines)\n", len(lines)-n)
	}
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}
