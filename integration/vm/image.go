// The tier builds its image with debootstrap and chroot in a mount
// namespace and ties qemu to its runner with Pdeathsig: Linux hosts only.

//go:build linux

// Package vm is Corral's VM test tier: it builds a Debian guest image once
// (debootstrap, no loop mounts), boots it under qemu in each cgroup mode of
// the matrix with systemd as PID 1, runs Corral's compiled test binaries in
// it as root and collects their results. `make vm-test` drives it through
// integration/vm/cmd/vmtest; README.md ("VM tests") tells how to use it and
// vmenv how a test knows it runs in a guest.
package vm

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ProvisionScript is integration/vm/provision.sh, shared with the
// Vagrantfile: it lists the guest's packages and configures the image.
//
//go:embed provision.sh
var ProvisionScript []byte

// GuestScript is integration/vm/guest-run.sh, copied into every run's
// payload share; it is not part of the image.
//
//go:embed guest-run.sh
var GuestScript []byte

// Recipe is what an image is built from; its hash names the cached image,
// so any change to it (or to provision.sh) builds a new one.
type Recipe struct {
	Suite    string // Debian suite
	Variant  string // debootstrap --variant
	DiskSize string // mkfs.ext4 size
	Mirror   string // not hashed: any mirror gives the same image
}

// DefaultRecipe is the image every mode boots.
var DefaultRecipe = Recipe{Suite: "bookworm", Variant: "minbase", DiskSize: "3G"}

// recipeVersion changes when the build steps below change in a way the
// other fields do not show.
const recipeVersion = "2"

// Hash names the image built from r.
func (r Recipe) Hash() string {
	h := sha256.New()
	fmt.Fprintf(h, "corral-vm-image %s\nsuite %s\nvariant %s\ndisk %s\n", recipeVersion, r.Suite, r.Variant, r.DiskSize)
	h.Write(ProvisionScript)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Image is a built guest: kernel, initrd and root disk.
type Image struct {
	Dir, Kernel, Initrd, Disk string
}

func imageAt(dir string) Image {
	return Image{Dir: dir, Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img"), Disk: filepath.Join(dir, "disk.qcow2")}
}

func (im Image) complete() bool {
	for _, f := range []string{im.Kernel, im.Initrd, im.Disk} {
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
			return false
		}
	}
	return true
}

// EnsureImage returns the cached image of r under cacheDir, building it
// first when there is none (or when rebuild is set). Build logs go to log.
// Images of other recipes are removed once a new one is built.
func EnsureImage(ctx context.Context, cacheDir string, r Recipe, rebuild bool, log io.Writer) (img Image, built bool, err error) {
	final := filepath.Join(cacheDir, "image-"+r.Hash())
	img = imageAt(final)
	if !rebuild && img.complete() {
		return img, false, nil
	}
	if os.Geteuid() != 0 {
		return img, false, fmt.Errorf("building the guest image needs root (debootstrap, chroot)")
	}
	log = &stampWriter{w: log, start: time.Now(), bol: true}
	tmp := final + ".tmp"
	os.RemoveAll(tmp)
	defer os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return img, false, err
	}
	rootfs := filepath.Join(tmp, "rootfs")
	run := func(name string, args ...string) error {
		fmt.Fprintf(log, "+ %s %s\n", name, strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Stdout, cmd.Stderr = log, log
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C.UTF-8",
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
		// Interrupted: end the whole process group (debootstrap runs dpkg
		// and maintainer scripts below it), not only its leader.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 10 * time.Second
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %v", name, err)
		}
		return nil
	}
	// inTree runs a command that mounts things in the tree (debootstrap
	// mounts /proc and /sys there) in a mount namespace of its own: when it
	// ends, however it ends, its mounts are gone with the namespace.
	inTree := func(name string, args ...string) error {
		return run("unshare", append([]string{"--mount", "--propagation", "private", "--", name}, args...)...)
	}
	pkgs, err := packages()
	if err != nil {
		return img, false, err
	}
	mirror := r.Mirror
	if mirror == "" {
		mirror = HostMirror()
	}
	start := time.Now()
	// Two stages, so that provision.sh --pre-image can configure the tree
	// before any package is configured: the first downloads and extracts,
	// the second (chrooted) installs and configures.
	if err := inTree("debootstrap", "--foreign", "--variant="+r.Variant, "--include="+pkgs, r.Suite, rootfs, mirror); err != nil {
		return img, false, err
	}
	fmt.Fprintf(log, "debootstrap first stage took %v\n", time.Since(start).Round(time.Second))
	script := filepath.Join(rootfs, "tmp", "provision.sh")
	if err := os.WriteFile(script, ProvisionScript, 0o755); err != nil {
		return img, false, err
	}
	if err := run("/bin/sh", script, "--pre-image", rootfs); err != nil {
		return img, false, err
	}
	if err := inTree("chroot", rootfs, "/debootstrap/debootstrap", "--second-stage"); err != nil {
		return img, false, err
	}
	fmt.Fprintf(log, "debootstrap took %v\n", time.Since(start).Round(time.Second))
	// The second stage empties /tmp.
	if err := os.WriteFile(script, ProvisionScript, 0o755); err != nil {
		return img, false, err
	}
	if err := inTree("chroot", rootfs, "/bin/sh", "/tmp/provision.sh", "--image"); err != nil {
		return img, false, err
	}
	os.Remove(script)
	timg := imageAt(tmp)
	for _, f := range []struct{ glob, to string }{{"vmlinuz-*", timg.Kernel}, {"initrd.img-*", timg.Initrd}} {
		m, _ := filepath.Glob(filepath.Join(rootfs, "boot", f.glob))
		if len(m) != 1 {
			return img, false, fmt.Errorf("want one /boot/%s in the guest, found %d", f.glob, len(m))
		}
		if err := copyFile(m[0], f.to); err != nil {
			return img, false, err
		}
	}
	raw := filepath.Join(tmp, "disk.raw")
	if err := run("mkfs.ext4", "-q", "-F", "-L", "corral-root", "-d", rootfs, raw, r.DiskSize); err != nil {
		return img, false, err
	}
	if err := os.RemoveAll(rootfs); err != nil {
		return img, false, err
	}
	if err := run("qemu-img", "convert", "-O", "qcow2", raw, timg.Disk); err != nil {
		return img, false, err
	}
	os.Remove(raw)
	recipe := fmt.Sprintf("recipe %s\nsuite %s\nvariant %s\ndisk %s\nmirror %s\npackages %s\nbuilt %s in %v\n",
		recipeVersion, r.Suite, r.Variant, r.DiskSize, mirror, pkgs, time.Now().UTC().Format(time.RFC3339), time.Since(start).Round(time.Second))
	if err := os.WriteFile(filepath.Join(tmp, "recipe.txt"), []byte(recipe), 0o644); err != nil {
		return img, false, err
	}
	os.RemoveAll(final)
	if err := os.Rename(tmp, final); err != nil {
		return img, false, err
	}
	// Images of older recipes are dead weight (~300 MB each).
	// Only image directories: image-build.log sits beside them.
	old, _ := filepath.Glob(filepath.Join(cacheDir, "image-*"))
	for _, o := range old {
		if fi, err := os.Stat(o); err == nil && fi.IsDir() && o != final {
			os.RemoveAll(o)
		}
	}
	return img, true, nil
}

// packages asks provision.sh for the guest's package list.
func packages() (string, error) {
	cmd := exec.Command("/bin/sh", "-s", "--", "--packages")
	cmd.Stdin = strings.NewReader(string(ProvisionScript))
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("provision.sh --packages: %v", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// HostMirror returns the Debian mirror the host's apt uses (so the image is
// built from where this machine may fetch), else deb.debian.org.
func HostMirror() string {
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	files = append([]string{"/etc/apt/sources.list"}, files...)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if m := mirrorIn(string(b)); m != "" {
			return m
		}
	}
	return "http://deb.debian.org/debian"
}

// mirrorIn finds, in one-line or deb822 apt sources, the URI of a Debian
// archive (not the security one).
func mirrorIn(s string) string {
	ok := func(u string) bool {
		return strings.HasPrefix(u, "http") && strings.HasSuffix(strings.TrimRight(u, "/"), "/debian")
	}
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "deb":
			u := f[1]
			if strings.HasPrefix(u, "[") { // deb [opts] uri suite
				for i := 1; i < len(f); i++ {
					if strings.HasSuffix(f[i], "]") && i+1 < len(f) {
						u = f[i+1]
						break
					}
				}
			}
			if ok(u) {
				return strings.TrimRight(u, "/")
			}
		case len(f) >= 2 && f[0] == "URIs:":
			for _, u := range f[1:] {
				if ok(u) {
					return strings.TrimRight(u, "/")
				}
			}
		}
	}
	return ""
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// stampWriter prefixes every line with the seconds since start, so the
// build log shows where an image build spends its time.
type stampWriter struct {
	w     io.Writer
	start time.Time
	bol   bool // at the beginning of a line
}

func (s *stampWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if s.bol {
			if _, err := fmt.Fprintf(s.w, "[%6.1fs] ", time.Since(s.start).Seconds()); err != nil {
				return 0, err
			}
			s.bol = false
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			_, err := s.w.Write(p)
			return n, err
		}
		if _, err := s.w.Write(p[:i+1]); err != nil {
			return 0, err
		}
		p = p[i+1:]
		s.bol = true
	}
	return n, nil
}
