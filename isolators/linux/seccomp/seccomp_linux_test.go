package seccomp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/corral/corral/launcher/containerinit"
)

// ---------------------------------------------------------------------------
// Parsing and compiling

func TestDefaultProfileCompiles(t *testing.T) {
	p, _ := mustNotPanic(t, "Default", func() (*Profile, error) { return Default(), nil })
	prog, err := p.Compile()
	if err != nil {
		t.Fatalf("Compile of the default profile: %v", err)
	}
	if len(prog) == 0 || len(prog)%8 != 0 || len(prog)/8 > maxInstructions {
		t.Fatalf("Compile of the default profile gave %d bytes, not 1-%d sock_filter entries", len(prog), maxInstructions)
	}
	t.Logf("default profile: %d instructions, %d rules; names without a %s syscall: %v",
		len(prog)/8, len(p.rules), runtime.GOARCH, p.UnknownSyscalls)

	// Load reads the same profile from a directory and compiles it alike.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "default.json"), defaultJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(dir, "default.json")
	if err != nil {
		t.Fatalf("Load of the default profile: %v", err)
	}
	prog2, err := loaded.Compile()
	if err != nil {
		t.Fatalf("Compile of the loaded default profile: %v", err)
	}
	if !bytes.Equal(prog, prog2) {
		t.Fatal("Load+Compile of default.json differs from Default().Compile()")
	}

	// No name of the deny list may be dropped silently: each is a rule here
	// or reported in UnknownSyscalls as a call of another architecture.
	var raw jsonProfile
	if err := json.Unmarshal(defaultJSON, &raw); err != nil {
		t.Fatal(err)
	}
	ruled := map[uint32]bool{}
	for _, r := range p.rules {
		ruled[r.nr] = true
	}
	for _, sc := range raw.Syscalls {
		for _, name := range sc.Names {
			nr, native := p.target.info.SyscallNames[name]
			switch {
			case native && !ruled[uint32(nr)]:
				t.Errorf("%s (nr %d) is in default.json but has no rule", name, nr)
			case !native && !slices.Contains(p.UnknownSyscalls, name):
				t.Errorf("%s is in default.json, not in the %s table, and not in UnknownSyscalls", name, runtime.GOARCH)
			}
		}
	}
	for _, name := range p.UnknownSyscalls {
		if _, native := p.target.info.SyscallNames[name]; native || !knownAnywhere(name) {
			t.Errorf("UnknownSyscalls has %q, which is native or in no table", name)
		}
	}
}

// TestDefaultJSONSays pins what default.json says about the calls the
// kernel test probes, so that test asserts what the profile says.
func TestDefaultJSONSays(t *testing.T) {
	var raw jsonProfile
	if err := json.Unmarshal(defaultJSON, &raw); err != nil {
		t.Fatal(err)
	}
	errnoFor := func(name string) (errno uint32, hasArgs bool, found bool) {
		for _, sc := range raw.Syscalls {
			if slices.Contains(sc.Names, name) {
				if sc.Action != "SCMP_ACT_ERRNO" {
					t.Fatalf("%s: action %s, not SCMP_ACT_ERRNO", name, sc.Action)
				}
				errno = errnoEPERM
				if sc.ErrnoRet != nil {
					errno = *sc.ErrnoRet
				}
				return errno, len(sc.Args) > 0, true
			}
		}
		return 0, false, false
	}
	for _, tc := range []struct {
		name    string
		errno   syscall.Errno
		hasArgs bool
	}{
		{"mount", unix.EPERM, false},
		{"keyctl", unix.EPERM, false},
		{"add_key", unix.EPERM, false},
		{"ptrace", unix.EPERM, false},
		{"bpf", unix.EPERM, false},
		{"kexec_load", unix.EPERM, false},
		{"clone3", unix.ENOSYS, false},
		{"unshare", unix.EPERM, true},
		{"clone", unix.EPERM, true},
		{"personality", unix.EPERM, true},
	} {
		errno, hasArgs, found := errnoFor(tc.name)
		if !found {
			t.Errorf("default.json has no rule for %s", tc.name)
			continue
		}
		if syscall.Errno(errno) != tc.errno || hasArgs != tc.hasArgs {
			t.Errorf("default.json: %s gives %s (argument rule: %v), the kernel test expects %s (argument rule: %v)",
				tc.name, unix.ErrnoName(syscall.Errno(errno)), hasArgs, unix.ErrnoName(tc.errno), tc.hasArgs)
		}
	}
}

func TestParseRejects(t *testing.T) {
	// rule wraps one syscalls entry in an otherwise valid profile.
	rule := func(entry string) string {
		return `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [` + entry + `]}`
	}
	for _, tc := range []struct {
		name, profile, want string
	}{
		{"empty input", ``, "seccomp: profile: EOF"},
		{"truncated JSON", `{"defaultAction": "SCMP_ACT_ALLOW"`, "unexpected EOF"},
		{"not JSON", `defaultAction: SCMP_ACT_ALLOW`, "invalid character"},
		{"not an object", `["SCMP_ACT_ALLOW"]`, "cannot unmarshal array"},
		{"data after the object", `{"defaultAction": "SCMP_ACT_ALLOW"} {}`, "data after the JSON object"},
		{"unknown field", `{"defaultAction": "SCMP_ACT_ALLOW", "defaultAktion": "x"}`, `unknown field "defaultAktion"`},
		{"wrong type", `{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": "EPERM"}`, "cannot unmarshal string"},
		{"no defaultAction", `{"syscalls": []}`, "defaultAction is required"},
		{"unknown defaultAction", `{"defaultAction": "SCMP_ACT_EXPLODE"}`, `defaultAction: unknown action "SCMP_ACT_EXPLODE"`},
		{"unsupported defaultAction", `{"defaultAction": "SCMP_ACT_NOTIFY"}`, "SCMP_ACT_NOTIFY is not supported"},
		{"defaultErrnoRet without ERRNO", `{"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}`, "defaultErrnoRet is set but defaultAction is SCMP_ACT_ALLOW"},
		{"defaultErrnoRet too large", `{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 4096}`, "defaultErrnoRet 4096 is out of range 0-4095"},
		{"unknown architecture only", `{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_BOGUS"]}`, "architectures/archMap do not include"},
		{"other architecture only", `{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_S390X"]}`, "architectures/archMap do not include"},
		{"archMap without this architecture", `{"defaultAction": "SCMP_ACT_ALLOW", "archMap": [{"architecture": "SCMP_ARCH_PPC64LE", "subArchitectures": ["SCMP_ARCH_PPC64"]}]}`, "architectures/archMap do not include"},
		{"flags", `{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"]}`, "flags [SECCOMP_FILTER_FLAG_LOG] are not supported"},
		{"listener", `{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock"}`, "listenerPath/listenerMetadata"},
		{"unknown syscall", rule(`{"names": ["mount", "definitely_not_a_syscall"], "action": "SCMP_ACT_ERRNO"}`), `syscalls[0]: unknown syscall "definitely_not_a_syscall"`},
		{"no names", rule(`{"names": [], "action": "SCMP_ACT_ERRNO"}`), "syscalls[0]: names is empty"},
		{"no action", rule(`{"names": ["mount"]}`), "syscalls[0].action is required"},
		{"unknown action", rule(`{"names": ["mount"], "action": "SCMP_ACT_DENY"}`), `syscalls[0].action: unknown action "SCMP_ACT_DENY"`},
		{"trace action", rule(`{"names": ["mount"], "action": "SCMP_ACT_TRACE"}`), "SCMP_ACT_TRACE is not supported"},
		{"errnoRet without ERRNO", rule(`{"names": ["mount"], "action": "SCMP_ACT_KILL", "errnoRet": 1}`), "syscalls[0].errnoRet is set but syscalls[0].action is SCMP_ACT_KILL"},
		{"errnoRet negative", rule(`{"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": -1}`), "cannot unmarshal number -1"},
		{"arg index", rule(`{"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}`), "syscalls[0].args[0].index 6 is out of range 0-5"},
		{"arg operator", rule(`{"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_LIKE"}]}`), `syscalls[0].args[0].op: unsupported operator "SCMP_CMP_LIKE"`},
		{"arg without operator", rule(`{"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1}]}`), `unsupported operator ""`},
		{"valueTwo outside mask", rule(`{"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 255, "valueTwo": 256, "op": "SCMP_CMP_MASKED_EQ"}]}`), "could never match"},
		{"valueTwo without MASKED_EQ", rule(`{"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "valueTwo": 1, "op": "SCMP_CMP_EQ"}]}`), "valueTwo is only used by SCMP_CMP_MASKED_EQ"},
		{"too many comparisons", rule(`{"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "args": [` + strings.Repeat(`{"index": 0, "value": 1, "op": "SCMP_CMP_NE"},`, maxArgsPerRule) + `{"index": 0, "value": 2, "op": "SCMP_CMP_NE"}]}`), "at most 32 are supported"},
		{"capability condition", rule(`{"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}}`), "includes.caps: capability-conditional rules are not supported"},
		{"kernel condition", rule(`{"names": ["mount"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "5.8"}}`), "excludes.minKernel: kernel-conditional rules are not supported"},
		{"too large", `{"defaultAction": "SCMP_ACT_ALLOW", "comment": "` + strings.Repeat("x", maxProfileSize) + `"}`, "profile is larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mustNotPanic(t, "Parse", func() (*Profile, error) { return Parse([]byte(tc.profile)) })
			if err == nil {
				t.Fatalf("Parse accepted %.200s", tc.profile)
			}
			if !strings.HasPrefix(err.Error(), "seccomp: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse error %q; want one starting with \"seccomp: \" and containing %q", err, tc.want)
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	other := "vm86" // a call of another architecture, not of this one
	if runtime.GOARCH == "arm64" {
		other = "iopl"
	}
	for _, tc := range []struct {
		name, profile string
		rules         int
		unknown       []string
	}{
		{"empty deny list", `{"defaultAction": "SCMP_ACT_ALLOW"}`, 0, nil},
		{"allow list", `{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]}`, 2, nil},
		{"Docker's pre-1.13 name", `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "mount", "action": "SCMP_ACT_ERRNO"}]}`, 1, nil},
		{"another architecture's call", `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mount", "` + other + `"], "action": "SCMP_ACT_ERRNO"}]}`, 1, []string{other}},
		{"rule for another architecture", `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["s390_only_call"], "action": "SCMP_ACT_ERRNO", "includes": {"arches": ["s390x"]}}]}`, 0, nil},
		{"rule excluded here", `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ERRNO", "excludes": {"arches": ["` + runtime.GOARCH + `"]}}]}`, 0, nil},
		{"rule included here", `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ERRNO", "includes": {"arches": ["` + runtime.GOARCH + `"]}}]}`, 1, nil},
		{"archMap with this architecture", `{"defaultAction": "SCMP_ACT_ALLOW", "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}, {"architecture": "SCMP_ARCH_AARCH64"}]}`, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := mustNotPanic(t, "Parse", func() (*Profile, error) { return Parse([]byte(tc.profile)) })
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if len(p.rules) != tc.rules || !slices.Equal(p.UnknownSyscalls, tc.unknown) {
				t.Fatalf("got %d rules, UnknownSyscalls %v; want %d, %v", len(p.rules), p.UnknownSyscalls, tc.rules, tc.unknown)
			}
			if _, err := p.Compile(); err != nil {
				t.Fatalf("Compile: %v", err)
			}
		})
	}
}

func TestLoadRejects(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	write := func(d, name, data string) {
		if err := os.WriteFile(filepath.Join(d, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(dir, "bad.json", `{"defaultAction": "SCMP_ACT_ALLOW",`)
	write(dir, "unknown-arch.json", `{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_PDP11"]}`)
	write(outside, "escape.json", `{"defaultAction": "SCMP_ACT_ALLOW"}`)
	if err := os.Symlink(filepath.Join(outside, "escape.json"), filepath.Join(dir, "link.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.json"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "fifo.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dir, file, want string
	}{
		{"bad JSON names the file", dir, "bad.json", "(profile bad.json)"},
		{"unknown architecture", dir, "unknown-arch.json", "do not include"},
		{"missing file", dir, "missing.json", "no such file"},
		{"missing directory", filepath.Join(dir, "nope"), "default.json", "profile directory"},
		{"directory", dir, "sub.json", "is not a regular file"},
		{"FIFO", dir, "fifo.json", "is not a regular file"},
		{"symlink out of the directory", dir, "link.json", "seccomp: profile:"},
		{"path", dir, "../" + filepath.Base(outside) + "/escape.json", "must be a file name"},
		{"dot-dot", dir, "..", "must be a file name"},
		{"empty name", dir, "", "must be a file name"},
		{"NUL", dir, "a\x00b", "must be a file name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				defer func() {
					if r := recover(); r != nil {
						done <- fmt.Errorf("Load panicked: %v", r)
					}
				}()
				_, err := Load(tc.dir, tc.file)
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("Load(%q) has not returned after 10s", tc.file)
			}
			if err == nil || !strings.HasPrefix(err.Error(), "seccomp: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load(%q) error %v; want one containing %q", tc.file, err, tc.want)
			}
		})
	}
}

func TestCompileRejectsOversizedFilter(t *testing.T) {
	// 40 calls, each with a rule of 32 comparisons (4 instructions each):
	// more than the kernel's 4096 instructions.
	p := Default()
	var names []string
	for _, name := range []string{"read", "write", "close", "fstat", "lseek", "mmap", "mprotect", "munmap", "brk", "ioctl",
		"pread64", "pwrite64", "readv", "writev", "pipe2", "dup", "dup3", "nanosleep", "getpid", "socket",
		"connect", "accept4", "sendto", "recvfrom", "sendmsg", "recvmsg", "shutdown", "bind", "listen", "getsockname",
		"getpeername", "socketpair", "setsockopt", "getsockopt", "execve", "exit", "wait4", "kill", "uname", "fcntl"} {
		if _, ok := p.target.info.SyscallNames[name]; ok {
			names = append(names, `"`+name+`"`)
		}
	}
	args := strings.TrimSuffix(strings.Repeat(`{"index": 0, "value": 1, "op": "SCMP_CMP_NE"},`, maxArgsPerRule), ",")
	prof := `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [` + strings.Join(names, ",") + `], "action": "SCMP_ACT_ERRNO", "args": [` + args + `]}]}`
	big, err := Parse([]byte(prof))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if _, err := big.Compile(); err == nil || !strings.Contains(err.Error(), "the kernel takes at most 4096") {
		t.Fatalf("Compile of %d rules of %d comparisons: error %v, want one about the 4096-instruction limit", len(names), maxArgsPerRule, err)
	}
}

// mustNotPanic turns a panic in f into a test failure naming what panicked.
func mustNotPanic(t *testing.T, what string, f func() (*Profile, error)) (p *Profile, err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("%s panicked: %v", what, r)
		}
	}()
	return f()
}

// ---------------------------------------------------------------------------
// The compiled program's decisions, run in the x/net/bpf interpreter against
// a reference reading of the profile, for every syscall number. Calls that
// cannot safely be made for real (reboot, swapoff, acct, ...) are checked
// here; the kernel tests below make the ones that can.

func TestFilterDecisions(t *testing.T) {
	p := Default()
	// A deny list longer than one 256-test chain, with argument rules in
	// front, checks the chain split and the jumps over blocks.
	var many []string
	for name := range p.target.info.SyscallNames {
		many = append(many, `"`+name+`"`)
	}
	slices.Sort(many)
	many = many[:300]
	long := `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
		{"names": ["openat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "args": [{"index": 2, "value": 3, "valueTwo": 1, "op": "SCMP_CMP_MASKED_EQ"}]},
		{"names": [` + strings.Join(many, ",") + `], "action": "SCMP_ACT_ERRNO", "errnoRet": 7},
		{"names": ["openat"], "action": "SCMP_ACT_LOG"}]}`
	longP, err := Parse([]byte(long))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}

	argSets := [][6]uint64{{}, {^uint64(0), ^uint64(0), ^uint64(0)}}
	for _, v := range comparisonValues {
		argSets = append(argSets, [6]uint64{v, v, v, v, v, v})
	}
	for _, tc := range []struct {
		name string
		p    *Profile
	}{
		{"default", p},
		{"the kernel comparison test's profile", mustParse(t, semanticsProfile())},
		{"300-name chain", longP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vm := newVM(t, tc.p)
			info := tc.p.target.info
			checked := 0
			for nr := 0; nr < 1024; nr++ {
				for _, args := range argSets {
					got := runVM(t, vm, uint32(info.ID), uint32(nr), args)
					want := referenceDecision(tc.p, uint32(nr), args)
					if got != want {
						t.Fatalf("syscall %d (%s) args %#x: filter returns %#x, profile says %#x", nr, info.SyscallNumbers[nr], args, got, want)
					}
					checked++
				}
			}
			// Another ABI is killed, the x32 ABI gets ENOSYS.
			if got := runVM(t, vm, uint32(info.ID)^1, 0, [6]uint64{}); got != retKillProcess {
				t.Errorf("another architecture: filter returns %#x, want SECCOMP_RET_KILL_PROCESS", got)
			}
			if tc.p.target.x32 {
				if got := runVM(t, vm, uint32(info.ID), x32SyscallBit|0, [6]uint64{}); got != retErrno|errnoENOSYS {
					t.Errorf("x32 read: filter returns %#x, want ENOSYS", got)
				}
			}
			t.Logf("%d decisions match the profile", checked)
		})
	}
}

func mustParse(t *testing.T, data []byte) *Profile {
	t.Helper()
	p, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

// referenceDecision is the profile's meaning, read directly: the first rule
// for the number whose comparisons all hold decides.
func referenceDecision(p *Profile, nr uint32, args [6]uint64) uint32 {
	if p.target.x32 && nr >= x32SyscallBit {
		return retErrno | errnoENOSYS
	}
	for _, r := range p.rules {
		if r.nr != nr {
			continue
		}
		holds := true
		for _, c := range r.args {
			holds = holds && c.holds(args[c.index])
		}
		if holds {
			return r.action
		}
	}
	return p.defaultAction
}

func (c comparison) holds(a uint64) bool {
	switch c.op {
	case "SCMP_CMP_EQ":
		return a == c.value
	case "SCMP_CMP_NE":
		return a != c.value
	case "SCMP_CMP_LT":
		return a < c.value
	case "SCMP_CMP_LE":
		return a <= c.value
	case "SCMP_CMP_GT":
		return a > c.value
	case "SCMP_CMP_GE":
		return a >= c.value
	case "SCMP_CMP_MASKED_EQ":
		return a&c.value == c.valueTwo
	}
	panic("operator " + c.op)
}

func newVM(t *testing.T, p *Profile) *bpf.VM {
	t.Helper()
	prog, err := p.Compile()
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	insns := make([]bpf.Instruction, len(prog)/8)
	for i := range insns {
		b := prog[8*i:]
		raw := bpf.RawInstruction{Op: binary.LittleEndian.Uint16(b), Jt: b[2], Jf: b[3], K: binary.LittleEndian.Uint32(b[4:])}
		insns[i] = raw.Disassemble()
		if _, unknown := insns[i].(bpf.RawInstruction); unknown {
			t.Fatalf("instruction %d %+v is not classic BPF", i, raw)
		}
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatalf("the compiled program is not valid classic BPF: %v", err)
	}
	return vm
}

// runVM runs the filter on a struct seccomp_data. The interpreter loads
// words big-endian where the kernel loads them in native order, so each
// 32-bit word is stored big-endian; the program only loads aligned words.
func runVM(t *testing.T, vm *bpf.VM, auditArch, nr uint32, args [6]uint64) uint32 {
	t.Helper()
	var data [64]byte
	binary.BigEndian.PutUint32(data[offNr:], nr)
	binary.BigEndian.PutUint32(data[offArch:], auditArch)
	for i, a := range args {
		binary.BigEndian.PutUint32(data[offArgs+8*i:], uint32(a))
		binary.BigEndian.PutUint32(data[offArgs+8*i+4:], uint32(a>>32))
	}
	ret, err := vm.Run(data[:])
	if err != nil {
		t.Fatalf("running the filter: %v", err)
	}
	return uint32(ret)
}

// ---------------------------------------------------------------------------
// The real kernel. The tests re-execute this test binary in a child
// (TestHelperProcess with helperModeEnv set) that loads a filter, makes
// system calls and reports each errno as a JSON line on stdout.

const (
	helperModeEnv = "CORRAL_SECCOMP_TEST_HELPER"
	helperDirEnv  = "CORRAL_SECCOMP_TEST_DIR"
)

// Helper modes.
const (
	modeControl       = "control"       // no filter
	modeContainerInit = "containerinit" // the default filter loaded as launcher/containerinit does
	modeSemantics     = "semantics"     // semanticsProfile loaded as the container init does
)

type probeResult struct {
	Probe  string `json:"probe"`
	Errno  int    `json:"errno"` // 0: the call succeeded; -1: failed without an errno (see Detail)
	Detail string `json:"detail,omitempty"`
}

// kernelProbe is one system call the child makes.
type kernelProbe struct {
	name string
	// filtered is the errno the default filter must give; 0: the call must
	// still work under it.
	filtered syscall.Errno
	// controlOK: without the filter the call must succeed, which shows it is
	// the filter that refuses it.
	controlOK bool
	// notInControl: too disruptive to let through (it would stop the test
	// binary), so made only under the filter.
	notInControl bool
	run          func(dir string) (int, string)
}

const (
	readImpliesExec = 0x0400000 // READ_IMPLIES_EXEC, a personality the default profile refuses
	personalityGet  = 0xffffffff
)

var kernelProbes = []kernelProbe{
	// Ordinary calls keep working.
	{name: "getpid", controlOK: true, run: func(string) (int, string) { return 0, strconv.Itoa(unix.Getpid()) }},
	{name: "open/write/read a file", controlOK: true, run: probeFile},
	{name: "fork+exec /bin/true", controlOK: true, run: func(string) (int, string) { return errnoOf(exec.Command("/bin/true").Run()) }},
	{name: "personality(query)", controlOK: true, run: func(string) (int, string) {
		return rawErrno(unix.Syscall(unix.SYS_PERSONALITY, personalityGet, 0, 0))
	}},

	// The default profile's deny list.
	{name: "unshare(CLONE_NEWUSER)", filtered: unix.EPERM, controlOK: true, run: func(string) (int, string) {
		// In a freshly forked, single-threaded child: the kernel refuses
		// CLONE_NEWUSER to a threaded process whatever the filter says.
		return errnoOf(commandWith(&syscall.SysProcAttr{Unshareflags: unix.CLONE_NEWUSER}).Run())
	}},
	{name: "clone(CLONE_NEWUSER)", filtered: unix.EPERM, controlOK: true, run: func(string) (int, string) {
		return errnoOf(commandWith(&syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUSER}).Run())
	}},
	{name: "unshare(CLONE_NEWUSER|1<<32)", filtered: unix.EPERM, run: func(string) (int, string) {
		// Garbage in the upper half of the flags must not get past the
		// rule's low-word test (the kernel itself refuses the flag: EINVAL).
		return rawErrno(unix.Syscall(unix.SYS_UNSHARE, unix.CLONE_NEWUSER|1<<32, 0, 0))
	}},
	{name: `mount("tmpfs", dir, "tmpfs")`, filtered: unix.EPERM, controlOK: true, run: func(dir string) (int, string) {
		mnt := filepath.Join(dir, "mnt")
		err := unix.Mount("tmpfs", mnt, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=64k")
		if err == nil {
			// The child has a mount namespace of its own; tidy up anyway.
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
		return errnoOf(err)
	}},
	{name: "add_key", filtered: unix.EPERM, run: func(string) (int, string) {
		_, err := unix.AddKey("user", "corral-seccomp-test", []byte("x"), unix.KEY_SPEC_PROCESS_KEYRING)
		return errnoOf(err)
	}},
	{name: "keyctl(KEYCTL_JOIN_SESSION_KEYRING)", filtered: unix.EPERM, run: func(string) (int, string) {
		return rawErrno(unix.Syscall(unix.SYS_KEYCTL, unix.KEYCTL_JOIN_SESSION_KEYRING, 0, 0)) // NULL: a new anonymous keyring
	}},
	{name: "ptrace(PTRACE_ATTACH, parent)", filtered: unix.EPERM, notInControl: true, run: probePtraceParent},
	{name: "ptrace(PTRACE_ATTACH, own child)", filtered: unix.EPERM, controlOK: true, run: probePtraceChild},
	{name: "bpf(BPF_MAP_CREATE)", filtered: unix.EPERM, run: probeBPF},
	{name: "kexec_load", filtered: unix.EPERM, run: func(string) (int, string) {
		// An unknown flag (0x8000) and too many segments: EINVAL from the
		// kernel without touching any loaded image (0 segments would unload it).
		return rawErrno(unix.Syscall6(unix.SYS_KEXEC_LOAD, 0, 1000, 0, 0x8000, 0, 0))
	}},
	{name: "clone3", filtered: unix.ENOSYS, run: func(string) (int, string) {
		// NULL, size 0: EINVAL from a kernel that has clone3; it can never
		// create a process.
		return rawErrno(unix.Syscall(unix.SYS_CLONE3, 0, 0, 0))
	}},
	{name: "personality(READ_IMPLIES_EXEC)", filtered: unix.EPERM, controlOK: true, run: func(string) (int, string) {
		old, _, e := unix.Syscall(unix.SYS_PERSONALITY, readImpliesExec, 0, 0)
		if e == 0 {
			unix.Syscall(unix.SYS_PERSONALITY, old, 0, 0)
		}
		return rawErrno(0, 0, e)
	}},
}

func TestDefaultFilterOnKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the unfiltered control run must be able to mount and create user namespaces, to show that the filter is what refuses them")
	}
	for _, tool := range []string{"/bin/true", "/bin/sleep"} {
		if _, err := os.Stat(tool); err != nil {
			t.Skipf("the probes run %s: %v", tool, err)
		}
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "mnt"), 0o755); err != nil {
		t.Fatal(err)
	}

	results := map[string]map[string]probeResult{}
	pids := map[string]int{}
	modes := []string{modeControl, modeContainerInit}
	for _, mode := range modes {
		results[mode], pids[mode] = runHelper(t, mode, dir)
	}

	var table strings.Builder
	fmt.Fprintf(&table, "%-36s %-10s %-10s\n", "probe", "control", "containerinit")
	for _, pr := range kernelProbes {
		fmt.Fprintf(&table, "%-36s", pr.name)
		for _, mode := range modes {
			res, ok := results[mode][pr.name]
			switch {
			case !ok:
				fmt.Fprintf(&table, " %-10s", "-")
			default:
				fmt.Fprintf(&table, " %-10s", errnoString(res.Errno))
			}
		}
		table.WriteString("\n")
	}
	t.Logf("errnos seen by the child:\n%s", table.String())

	for _, mode := range modes {
		filtered := mode != modeControl
		for _, pr := range kernelProbes {
			if !filtered && pr.notInControl {
				continue
			}
			res, ok := results[mode][pr.name]
			if !ok {
				t.Errorf("%s: no result for %s", mode, pr.name)
				continue
			}
			switch {
			case filtered && res.Errno != int(pr.filtered):
				t.Errorf("%s: %s gave %s under the default filter, want %s %s", mode, pr.name, errnoString(res.Errno), errnoString(int(pr.filtered)), res.Detail)
			case !filtered && pr.controlOK && res.Errno != 0:
				t.Errorf("control (no filter): %s gave %s, want success; without it the filtered runs prove nothing %s", pr.name, errnoString(res.Errno), res.Detail)
			case !filtered && !pr.controlOK && res.Errno == int(pr.filtered):
				t.Logf("note: %s gives %s without the filter too, so here the filtered result does not show the filter at work", pr.name, errnoString(res.Errno))
			}
		}
		if got := results[mode]["getpid"].Detail; got != strconv.Itoa(pids[mode]) {
			t.Errorf("%s: getpid in the child returned %q, the child is %d", mode, got, pids[mode])
		}

		// Every thread of the child has the filter and no_new_privs (TSYNC),
		// not only the one that loaded it.
		threads := strings.Fields(results[mode]["threads"].Detail)
		t.Logf("%s: Seccomp/NoNewPrivs of each thread: %v", mode, threads)
		want := "0/0"
		if filtered {
			want = "2/1"
		}
		if len(threads) < 2 {
			t.Errorf("%s: %d threads reported (%q); the Go runtime always has more than one", mode, len(threads), threads)
		}
		for i, th := range threads {
			if th != want {
				t.Errorf("%s: thread %d has Seccomp/NoNewPrivs %s, want %s (all: %v)", mode, i, th, want, threads)
			}
		}
	}
}

// semanticsProfile exercises every comparison of the compiler at the edges
// of 64-bit values, conjunctions, first-match order, a block longer than
// one conditional jump reaches and the unconditional chain, on calls with
// no side effects that the Go runtime does not make.
func semanticsProfile() []byte {
	cmp := func(index uint32, op string, value, valueTwo uint64) jsonArg {
		return jsonArg{Index: index, Op: op, Value: value, ValueTwo: valueTwo}
	}
	errno := func(names []string, e uint32, args ...jsonArg) jsonSyscall {
		return jsonSyscall{Names: names, Action: "SCMP_ACT_ERRNO", ErrnoRet: &e, Args: args}
	}
	var ne, inRange []jsonArg
	for k := range uint64(maxArgsPerRule) {
		ne = append(ne, cmp(0, "SCMP_CMP_NE", k+1, 0))
	}
	for range maxArgsPerRule / 2 {
		inRange = append(inRange, cmp(0, "SCMP_CMP_GE", 3, 0), cmp(0, "SCMP_CMP_LE", 10, 0))
	}
	jp := jsonProfile{DefaultAction: "SCMP_ACT_ALLOW", Syscalls: []jsonSyscall{
		// A block of 2 rules of 32 comparisons: longer than 255 instructions.
		errno([]string{"sched_getscheduler"}, 80, ne...),
		errno([]string{"sched_getscheduler"}, 81, inRange...),
		errno([]string{"getppid"}, 90, cmp(0, "SCMP_CMP_EQ", cmpValue, 0)),
		errno([]string{"getuid"}, 91, cmp(0, "SCMP_CMP_NE", cmpValue, 0)),
		errno([]string{"getgid"}, 92, cmp(0, "SCMP_CMP_LT", cmpValue, 0)),
		errno([]string{"geteuid"}, 93, cmp(0, "SCMP_CMP_LE", cmpValue, 0)),
		errno([]string{"getegid"}, 94, cmp(0, "SCMP_CMP_GT", cmpValue, 0)),
		errno([]string{"getsid"}, 95, cmp(0, "SCMP_CMP_GE", cmpValue, 0)),
		errno([]string{"getpgid"}, 96, cmp(0, "SCMP_CMP_MASKED_EQ", cmpMask, cmpMasked)),
		// Conjunction, a low-word-only mask, then first match.
		errno([]string{"getpriority"}, 82, cmp(0, "SCMP_CMP_EQ", 7, 0), cmp(1, "SCMP_CMP_MASKED_EQ", 0xff, 9)),
		errno([]string{"getpriority"}, 83, cmp(0, "SCMP_CMP_EQ", 7, 0)),
		// Unconditional: goes to the chain, and a later rule for the same
		// call is unreachable.
		errno([]string{"sched_get_priority_max"}, 84),
		errno([]string{"sched_get_priority_max"}, 85, cmp(0, "SCMP_CMP_EQ", 1, 0)),
		// Same as the default action: no code at all.
		{Names: []string{"sched_get_priority_min"}, Action: "SCMP_ACT_ALLOW"},
	}}
	data, err := json.Marshal(jp)
	if err != nil {
		panic(err)
	}
	return data
}

const (
	cmpValue  = 0x1_8000_0000 // both words nonzero, low word with the sign bit
	cmpMask   = 0x00f0_0000_0f00
	cmpMasked = 0x0050_0000_0300
)

// comparisonValues sit on and around cmpValue in each word separately, so
// that a comparison of one word only, or a signed one, gives itself away.
var comparisonValues = []uint64{
	0, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff,
	0x1_0000_0000, 0x1_7fff_ffff, cmpValue - 1, cmpValue, cmpValue + 1, 0x1_ffff_ffff,
	0x2_0000_0000, 0x2_8000_0000, 0x8000_0000_8000_0000, ^uint64(0),
	cmpMasked, cmpMasked | 0xff0f_ff0f_ffff_f0ff, cmpMasked ^ 0x10_0000_0000, cmpMasked ^ 0x100, cmpMask,
}

type semanticsCase struct {
	name   string
	a0, a1 uint64
	want   syscall.Errno // 0: the call must reach the kernel
}

func semanticsCases() []semanticsCase {
	var cs []semanticsCase
	for _, c := range []struct {
		name  string
		errno syscall.Errno
		holds func(uint64) bool
	}{
		{"getppid", 90, func(a uint64) bool { return a == cmpValue }},
		{"getuid", 91, func(a uint64) bool { return a != cmpValue }},
		{"getgid", 92, func(a uint64) bool { return a < cmpValue }},
		{"geteuid", 93, func(a uint64) bool { return a <= cmpValue }},
		{"getegid", 94, func(a uint64) bool { return a > cmpValue }},
		{"getsid", 95, func(a uint64) bool { return a >= cmpValue }},
		{"getpgid", 96, func(a uint64) bool { return a&cmpMask == cmpMasked }},
	} {
		for _, v := range comparisonValues {
			var want syscall.Errno
			if c.holds(v) {
				want = c.errno
			}
			cs = append(cs, semanticsCase{c.name, v, 0, want})
		}
	}
	return append(cs,
		semanticsCase{"sched_getscheduler", 200, 0, 80},
		semanticsCase{"sched_getscheduler", 1<<32 | 5, 0, 80},
		semanticsCase{"sched_getscheduler", 5, 0, 81},
		semanticsCase{"sched_getscheduler", 20, 0, 0},
		semanticsCase{"getpriority", 7, 9, 82},
		semanticsCase{"getpriority", 7, 1<<32 | 9, 82},
		semanticsCase{"getpriority", 7, 0x1309, 82},
		semanticsCase{"getpriority", 7, 8, 83},
		semanticsCase{"getpriority", 1<<32 | 7, 9, 0},
		semanticsCase{"getpriority", 6, 9, 0},
		semanticsCase{"sched_get_priority_max", 1, 0, 84},
		semanticsCase{"sched_get_priority_max", 0, 0, 84},
		semanticsCase{"sched_get_priority_min", 0, 0, 0},
	)
}

func (c semanticsCase) String() string { return fmt.Sprintf("%s(%#x, %#x)", c.name, c.a0, c.a1) }

// TestComparisonsOnKernel loads semanticsProfile into a child and checks
// that the kernel's verdict on each call is the profile's. It needs no
// privilege: no_new_privs lets any process load a filter.
func TestComparisonsOnKernel(t *testing.T) {
	res, _ := runHelper(t, modeSemantics, t.TempDir())
	markers := map[int]bool{}
	for _, c := range semanticsCases() {
		if c.want != 0 {
			markers[int(c.want)] = true
		}
	}
	n := 0
	for _, c := range semanticsCases() {
		got, ok := res[c.String()]
		switch {
		case !ok:
			t.Errorf("%s: no result", c)
		case c.want != 0 && got.Errno != int(c.want):
			t.Errorf("%s gave %s, the profile says errno %d", c, errnoString(got.Errno), c.want)
		case c.want == 0 && markers[got.Errno]:
			t.Errorf("%s gave errno %d, a rule's; the profile lets it through", c, got.Errno)
		default:
			n++
		}
	}
	t.Logf("%d calls decided as the profile says", n)
}

// runHelper runs TestHelperProcess in mode and returns its results by probe
// name, and its pid. The child gets a private mount namespace, so that a
// mount the control run makes never reaches the host.
func runHelper(t *testing.T, mode, dir string) (map[string]probeResult, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperModeEnv+"="+mode, helperDirEnv+"="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr.Unshareflags = syscall.CLONE_NEWNS
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helper %s: %v\nstdout:\n%s\nstderr:\n%s", mode, err, stdout.String(), stderr.String())
	}
	out := map[string]probeResult{}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var r probeResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("helper %s: line %q: %v", mode, sc.Text(), err)
		}
		out[r.Probe] = r
	}
	if _, ok := out["done"]; !ok {
		t.Fatalf("helper %s stopped before the end\nstdout:\n%s\nstderr:\n%s", mode, stdout.String(), stderr.String())
	}
	return out, cmd.Process.Pid
}

// TestHelperProcess is the child of the kernel tests, not a test itself.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperModeEnv)
	if mode == "" {
		return
	}
	os.Exit(helperMain(mode, os.Getenv(helperDirEnv)))
}

func helperMain(mode, dir string) int {
	// no_new_privs is per thread and checked on the thread that loads the
	// filter; the probes that depend on the thread (ptrace, keyrings,
	// personality) run on it too.
	runtime.LockOSThread()

	var profile []byte
	switch mode {
	case modeControl:
	case modeContainerInit:
		profile = defaultJSON
	case modeSemantics:
		profile = semanticsProfile()
	default:
		fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
		return 2
	}
	if profile != nil {
		p, err := Parse(profile)
		if err == nil {
			var filter []byte
			if filter, err = p.Compile(); err == nil {
				err = loadAsContainerInit(filter)
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "loading the filter: %v\n", err)
			return 2
		}
	}

	enc := json.NewEncoder(os.Stdout)
	report := func(name string, errno int, detail string) {
		if err := enc.Encode(probeResult{Probe: name, Errno: errno, Detail: detail}); err != nil {
			os.Exit(3)
		}
	}
	if mode == modeSemantics {
		table := Default().target.info.SyscallNames
		for _, c := range semanticsCases() {
			nr, ok := table[c.name]
			if !ok {
				report(c.String(), -1, "no such syscall here")
				continue
			}
			_, _, e := unix.Syscall6(uintptr(nr), uintptr(c.a0), uintptr(c.a1), 0, 0, 0, 0)
			report(c.String(), int(e), "")
		}
	} else {
		for _, pr := range kernelProbes {
			if mode == modeControl && pr.notInControl {
				continue
			}
			errno, detail := pr.run(dir)
			report(pr.name, errno, detail)
		}
		report("threads", 0, threadStates())
	}
	report("done", 0, "")
	return 0
}

// loadAsContainerInit loads a filter as the container init does
// (applyPrivileges): no_new_privs, then containerinit.LoadSeccomp, on the
// locked thread.
func loadAsContainerInit(prog []byte) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	return containerinit.LoadSeccomp(prog)
}

// threadStates lists "Seccomp/NoNewPrivs" of every thread of the process.
func threadStates() string {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err.Error()
	}
	var states []string
	for _, task := range tasks {
		status, err := os.ReadFile(filepath.Join("/proc/self/task", task.Name(), "status"))
		if err != nil {
			continue // the thread exited
		}
		field := func(key string) string {
			for line := range strings.SplitSeq(string(status), "\n") {
				if v, ok := strings.CutPrefix(line, key+":"); ok {
					return strings.TrimSpace(v)
				}
			}
			return "?"
		}
		states = append(states, field("Seccomp")+"/"+field("NoNewPrivs"))
	}
	return strings.Join(states, " ")
}

func probeFile(dir string) (int, string) {
	name := filepath.Join(dir, fmt.Sprintf("file-%d", os.Getpid()))
	want := []byte("corral seccomp test\n")
	if err := os.WriteFile(name, want, 0o600); err != nil {
		return errnoOf(err)
	}
	defer os.Remove(name)
	got, err := os.ReadFile(name)
	if err != nil {
		return errnoOf(err)
	}
	if !bytes.Equal(got, want) {
		return -1, fmt.Sprintf("read back %q, wrote %q", got, want)
	}
	return 0, ""
}

func commandWith(attr *syscall.SysProcAttr) *exec.Cmd {
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = attr
	return cmd
}

func probePtraceParent(string) (int, string) {
	ppid := os.Getppid()
	err := unix.PtraceAttach(ppid)
	if err == nil {
		// The filter let it through. Take the SIGSTOP the attach queued
		// and detach without it, or the test binary stays stopped.
		var ws unix.WaitStatus
		_, _ = unix.Wait4(ppid, &ws, unix.WALL, nil)
		_ = unix.PtraceDetach(ppid)
	}
	return errnoOf(err)
}

func probePtraceChild(string) (int, string) {
	cmd := exec.Command("/bin/sleep", "60")
	if err := cmd.Start(); err != nil {
		return -1, "starting sleep: " + err.Error()
	}
	err := unix.PtraceAttach(cmd.Process.Pid)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return errnoOf(err)
}

func probeBPF(string) (int, string) {
	// union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size,
	// max_entries; the rest zero.
	var attr [64]byte
	binary.NativeEndian.PutUint32(attr[0:], unix.BPF_MAP_TYPE_ARRAY)
	binary.NativeEndian.PutUint32(attr[4:], 4)
	binary.NativeEndian.PutUint32(attr[8:], 4)
	binary.NativeEndian.PutUint32(attr[12:], 1)
	fd, _, e := unix.Syscall(unix.SYS_BPF, unix.BPF_MAP_CREATE, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
	if e == 0 {
		unix.Close(int(fd))
	}
	return rawErrno(0, 0, e)
}

func rawErrno(_, _ uintptr, e syscall.Errno) (int, string) { return int(e), "" }

func errnoOf(err error) (int, string) {
	if err == nil {
		return 0, ""
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return int(e), ""
	}
	return -1, err.Error()
}

func errnoString(e int) string {
	switch e {
	case 0:
		return "ok"
	case -1:
		return "failed"
	}
	if name := unix.ErrnoName(syscall.Errno(e)); name != "" {
		return name
	}
	return strconv.Itoa(e)
}
