//go:build linux

package vm

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestCountResults(t *testing.T) {
	out := `=== RUN   TestA
--- PASS: TestA (0.00s)
=== RUN   TestB
=== RUN   TestB/one
    b_test.go:10: oops
=== RUN   TestB/two
--- FAIL: TestB (0.01s)
    --- FAIL: TestB/one (0.00s)
    --- PASS: TestB/two (0.00s)
=== RUN   TestC
    c_test.go:3: needs root
--- SKIP: TestC (0.00s)
FAIL
`
	p, f, s := CountResults(strings.NewReader(out))
	if p != 2 || f != 2 || s != 1 {
		t.Fatalf("got %d passed, %d failed, %d skipped; want 2, 2, 1", p, f, s)
	}
}

func TestSkipped(t *testing.T) {
	out := `=== RUN   TestA
    a_test.go:5: needs a Corral test VM (make vm-test sets CORRAL_VM_MODE)
--- SKIP: TestA (0.00s)
=== RUN   TestB
=== RUN   TestB/v1
    helpers_linux_test.go:57: no cgroup v1 freezer hierarchy
=== RUN   TestB/v2
    b_test.go:9: some log
=== NAME  TestB
    b_test.go:12: after
--- PASS: TestB (0.01s)
    --- SKIP: TestB/v1 (0.00s)
    --- PASS: TestB/v2 (0.00s)
`
	got := Skipped(strings.NewReader(out))
	want := []Skip{
		{"TestA", "needs a Corral test VM (make vm-test sets CORRAL_VM_MODE)"},
		{"TestB/v1", "no cgroup v1 freezer hierarchy"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestGuestCounts(t *testing.T) {
	g := &GuestResult{Packages: []PackageResult{
		{Name: "a.test", RC: 0, Pass: 3, Skip: 1},
		{Name: "b.test", RC: 2, Pass: 1}, // panicked: no --- FAIL line
		{Name: "c.test", RC: -1},         // never ran
		{Name: "d.test", RC: 1, Fail: 2}, // failed tests
	}}
	p, f, s := g.Counts()
	if p != 4 || f != 4 || s != 1 {
		t.Fatalf("got %d/%d/%d, want 4/4/1", p, f, s)
	}
	if g.OK() {
		t.Fatal("OK with failures")
	}
}

func TestMirrorIn(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\n", "http://deb.debian.org/debian"},
		{"deb http://security.debian.org/debian-security bookworm-security main\ndeb [arch=amd64] http://mirror.example/debian/ bookworm main\n", "http://mirror.example/debian"},
		{"deb https://packages.example/apt stable main\n", ""},
	} {
		if got := mirrorIn(tc.in); got != tc.want {
			t.Errorf("mirrorIn(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestProvisionPackages(t *testing.T) {
	pkgs, err := packages()
	if err != nil {
		t.Fatal(err)
	}
	list := strings.Split(pkgs, ",")
	for _, p := range []string{"systemd", "systemd-sysv", "dbus", "linux-image-amd64", "udev", "kmod", "iproute2"} {
		if !slices.Contains(list, p) {
			t.Errorf("provision.sh --packages lacks %s: %s", p, pkgs)
		}
	}
}

func TestScriptsParse(t *testing.T) {
	for _, f := range []string{"provision.sh", "guest-run.sh"} {
		if out, err := exec.Command("sh", "-n", f).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", f, err, out)
		}
	}
}

func TestExisting(t *testing.T) {
	got := existing("../..", []string{"./launcher/...", "./no/such/dir/...", "./integration/vm/guestcheck"})
	want := []string{"./launcher/...", "./integration/vm/guestcheck"}
	if !slices.Equal(got, want) {
		t.Fatalf("existing = %q, want %q", got, want)
	}
}

func TestRecipeHash(t *testing.T) {
	a, b := DefaultRecipe, DefaultRecipe
	b.Mirror = "http://elsewhere/debian"
	if a.Hash() != b.Hash() {
		t.Error("the mirror changed the image hash")
	}
	b.DiskSize = "4G"
	if a.Hash() == b.Hash() {
		t.Error("the disk size did not change the image hash")
	}
}

func TestQemuArgs(t *testing.T) {
	o := BootOptions{Image: imageAt("/img"), Payload: &Payload{Dir: "/p"}, Src: "/src", Accel: "tcg", Memory: 1024, CPUs: 2}
	for _, m := range Modes {
		args := strings.Join(QemuArgs(o, m, "/share"), " ")
		for _, want := range []string{"-accel tcg -cpu max", "snapshot=on", "-no-reboot", "panic=-1", m.KernelArgs[0],
			"corral.vmtest=1", "corral.vm_mode=" + m.Name, "path=/p,mount_tag=payload,security_model=none,readonly=on",
			"path=/share,mount_tag=out,security_model=none ", "path=/src,mount_tag=src"} {
			if !strings.Contains(args, want) {
				t.Errorf("%s: qemu args lack %q:\n%s", m.Name, want, args)
			}
		}
	}
}
