//go:build linux

package vm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// DefaultPatterns are the packages the VMs run by default: those with the
// root tests (real cgroups, namespaces, processes, the agent end to end)
// and the guest-only checks. Patterns whose directory does not exist yet
// (integration/e2e on an older tree) are left out; packages without tests
// are dropped, so a package gains a place here by having tests.
var DefaultPatterns = []string{
	"./launcher/...",
	"./isolators/...",
	"./container/...",
	"./agent/...",
	"./integration/e2e/...",
	"./integration/vm/guestcheck",
}

// TestPackage is one package compiled into a test binary for the guest.
type TestPackage struct {
	ImportPath string
	Dir        string // source directory: the binary runs there, as under go test
	Name       string // file name of the test binary in the payload
}

// PayloadOptions say what the guest runs.
type PayloadOptions struct {
	Go       string   // go command
	Root     string   // module root
	Patterns []string // go package patterns; empty: the default selection
	All      bool     // every package with tests
	Run      string   // -test.run
	Short    bool     // -test.short
	Timeout  int      // seconds per test binary
	Count    int      // -test.count (runs of each test); 0 is 1
}

// Payload is the read-only share every guest mounts.
type Payload struct {
	Dir      string
	Packages []TestPackage
}

type listed struct {
	ImportPath, Dir, Name string
	Tests                 int
	Imports               []string
}

func goList(ctx context.Context, o PayloadOptions, patterns []string) ([]listed, error) {
	args := append([]string{"list", "-e", "-f",
		"{{.ImportPath}}\t{{.Dir}}\t{{.Name}}\t{{len .TestGoFiles}}\t{{len .XTestGoFiles}}\t{{join .TestImports \" \"}} {{join .XTestImports \" \"}}"},
		patterns...)
	cmd := exec.CommandContext(ctx, o.Go, args...)
	cmd.Dir = o.Root
	cmd.Env = goEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list %s: %v\n%s", strings.Join(patterns, " "), err, stderr.String())
	}
	var pkgs []listed
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(line, "\t", 6)
		if len(f) < 6 {
			continue
		}
		var nt, nx int
		fmt.Sscan(f[3], &nt)
		fmt.Sscan(f[4], &nx)
		pkgs = append(pkgs, listed{ImportPath: f[0], Dir: f[1], Name: f[2], Tests: nt + nx, Imports: strings.Fields(f[5])})
	}
	return pkgs, nil
}

// goEnv builds for the guest: static, linux/amd64.
func goEnv() []string {
	return append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
}

// SelectPackages lists the packages to run: those matching o.Patterns
// (every package with o.All), by default DefaultPatterns. Packages without
// tests are dropped.
func SelectPackages(ctx context.Context, o PayloadOptions) ([]TestPackage, error) {
	patterns := o.Patterns
	switch {
	case o.All:
		patterns = []string{"./..."}
	case len(patterns) == 0:
		patterns = existing(o.Root, DefaultPatterns)
	}
	pkgs, err := goList(ctx, o, patterns)
	if err != nil {
		return nil, err
	}
	mod, err := modulePath(ctx, o)
	if err != nil {
		return nil, err
	}
	var out []TestPackage
	for _, p := range pkgs {
		if p.Tests == 0 {
			continue
		}
		if slices.ContainsFunc(out, func(q TestPackage) bool { return q.ImportPath == p.ImportPath }) {
			continue // matched by two patterns
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, mod), "/")
		if rel == "" {
			rel = "root"
		}
		out = append(out, TestPackage{ImportPath: p.ImportPath, Dir: p.Dir, Name: strings.ReplaceAll(rel, "/", "_") + ".test"})
	}
	return out, nil
}

// existing keeps the relative patterns whose directory exists under root.
func existing(root string, patterns []string) []string {
	var out []string
	for _, p := range patterns {
		dir := strings.TrimSuffix(strings.TrimSuffix(p, "..."), "/")
		if fi, err := os.Stat(filepath.Join(root, dir)); err == nil && fi.IsDir() {
			out = append(out, p)
		}
	}
	return out
}

func modulePath(ctx context.Context, o PayloadOptions) (string, error) {
	cmd := exec.CommandContext(ctx, o.Go, "list", "-m")
	cmd.Dir = o.Root
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list -m: %v", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// BuildPayload fills dir with what every guest mounts read-only: bin/ (the
// module's commands, static), tests/ (one static test binary per package
// and a manifest), config.env and guest-run.sh.
func BuildPayload(ctx context.Context, o PayloadOptions, pkgs []TestPackage, dir string, log io.Writer) (*Payload, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	bin, tests := filepath.Join(dir, "bin"), filepath.Join(dir, "tests")
	for _, d := range []string{bin, tests} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	gorun := func(args ...string) error {
		fmt.Fprintf(log, "+ %s %s\n", o.Go, strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, o.Go, args...)
		cmd.Dir = o.Root
		cmd.Env = goEnv()
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		log.Write(out.Bytes())
		if err != nil {
			return fmt.Errorf("go %s: %v\n%s", args[0], err, out.String())
		}
		return nil
	}
	// Every command of the module (./cmd/... and helpers such as test
	// executors), as `make build` builds them; not the harness itself.
	all, err := goList(ctx, o, []string{"./..."})
	if err != nil {
		return nil, err
	}
	mains := []string{}
	for _, p := range all {
		if p.Name == "main" && !strings.Contains(p.ImportPath, "/integration/vm/") {
			mains = append(mains, p.ImportPath)
		}
	}
	if err := gorun(append([]string{"build", "-trimpath", "-ldflags", "-s -w", "-o", bin + "/"}, mains...)...); err != nil {
		return nil, err
	}
	var manifest strings.Builder
	for _, p := range pkgs {
		// No -trimpath: file paths in the binary stay the host's, and the
		// guest mounts the source tree at the same path.
		if err := gorun("test", "-c", "-o", filepath.Join(tests, p.Name), p.ImportPath); err != nil {
			return nil, err
		}
		if _, err := os.Stat(filepath.Join(tests, p.Name)); err != nil {
			continue // go test -c writes nothing when there is nothing to test
		}
		fmt.Fprintf(&manifest, "%s %s\n", p.Name, p.Dir)
	}
	if err := os.WriteFile(filepath.Join(tests, "manifest"), []byte(manifest.String()), 0o644); err != nil {
		return nil, err
	}
	short := "0"
	if o.Short {
		short = "1"
	}
	count := max(o.Count, 1)
	config := fmt.Sprintf("CORRAL_VM_SRC=%s\nCORRAL_VM_TEST_TIMEOUT=%d\nCORRAL_VM_SHORT=%s\nCORRAL_VM_RUN=%s\nCORRAL_VM_COUNT=%d\n",
		o.Root, o.Timeout, short, shellQuote(o.Run), count)
	if err := os.WriteFile(filepath.Join(dir, "config.env"), []byte(config), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "guest-run.sh"), GuestScript, 0o755); err != nil {
		return nil, err
	}
	return &Payload{Dir: dir, Packages: pkgs}, nil
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
