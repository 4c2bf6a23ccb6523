package seccomp

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"

	"github.com/elastic/go-seccomp-bpf/arch"
)

// maxProfileSize bounds what Parse and Load read. Docker's own default
// profile, the largest in common use, is about 20 KiB.
const maxProfileSize = 1 << 20

// maxArgsPerRule keeps every jump inside one rule short (a comparison is at
// most 6 instructions and classic BPF conditional jumps reach 255).
const maxArgsPerRule = 32

// Return values of a seccomp filter (linux/seccomp.h). Defined here rather
// than taken from x/sys/unix so the compiler builds on every GOOS.
const (
	retKillThread  = 0x00000000
	retKillProcess = 0x80000000
	retTrap        = 0x00030000
	retErrno       = 0x00050000
	retLog         = 0x7ffc0000
	retAllow       = 0x7fff0000

	errnoEPERM  = 1
	errnoENOSYS = 38
	maxErrno    = 4095 // the kernel clamps larger SECCOMP_RET_DATA to this
)

//go:embed default.json
var defaultJSON []byte

// Profile is a parsed seccomp profile, resolved against the architecture the
// binary was built for.
type Profile struct {
	// UnknownSyscalls are names the profile gives that this architecture
	// does not have (Docker's profiles name calls of every architecture).
	// Their rules were skipped; the agent should log them.
	UnknownSyscalls []string

	target        *target
	defaultAction uint32
	rules         []rule
}

type rule struct {
	nr     uint32
	args   []comparison
	action uint32
}

type comparison struct {
	index           uint32
	op              string
	value, valueTwo uint64
}

// target describes the one architecture a compiled filter admits.
type target struct {
	info     *arch.Info
	scmpName string // SCMP_ARCH_* name in profiles
	x32      bool   // x86_64: syscall numbers with __X32_SYSCALL_BIT are another ABI
}

var targets = map[string]*target{
	"amd64": {info: arch.X86_64, scmpName: "SCMP_ARCH_X86_64", x32: true},
	"arm64": {info: arch.AARCH64, scmpName: "SCMP_ARCH_AARCH64"},
}

// otherTables are the syscall tables go-seccomp-bpf has. A name in none of
// them is a typo or a call newer than the library, and a deny list must not
// quietly drop either.
var otherTables = []*arch.Info{arch.X86_64, arch.X32, arch.I386, arch.ARM, arch.AARCH64}

// The JSON model: Docker's and the OCI runtime spec's field names. Fields
// Corral cannot honour are declared so that a profile using them gets an
// error naming them instead of a filter that silently does something else.
type jsonProfile struct {
	DefaultAction    string          `json:"defaultAction"`
	DefaultErrnoRet  *uint32         `json:"defaultErrnoRet"`
	Architectures    []string        `json:"architectures"`
	ArchMap          []jsonArchMap   `json:"archMap"`
	Syscalls         []jsonSyscall   `json:"syscalls"`
	Flags            []string        `json:"flags"`
	ListenerPath     string          `json:"listenerPath"`
	ListenerMetadata string          `json:"listenerMetadata"`
	Comment          json.RawMessage `json:"comment"`
}

type jsonArchMap struct {
	Architecture     string   `json:"architecture"`
	SubArchitectures []string `json:"subArchitectures"`
}

type jsonSyscall struct {
	Name     string          `json:"name"` // Docker's pre-1.13 form
	Names    []string        `json:"names"`
	Action   string          `json:"action"`
	ErrnoRet *uint32         `json:"errnoRet"`
	Args     []jsonArg       `json:"args"`
	Includes *jsonFilter     `json:"includes"`
	Excludes *jsonFilter     `json:"excludes"`
	Comment  json.RawMessage `json:"comment"`
}

type jsonArg struct {
	Index    uint32 `json:"index"`
	Value    uint64 `json:"value"`
	ValueTwo uint64 `json:"valueTwo"`
	Op       string `json:"op"`
}

type jsonFilter struct {
	Arches    []string `json:"arches"`
	Caps      []string `json:"caps"`
	MinKernel string   `json:"minKernel"`
}

// Default returns Corral's embedded default profile (default.json in this
// package, a deny list in the same format operators write).
func Default() *Profile {
	p, err := Parse(defaultJSON)
	if err != nil {
		panic("seccomp: embedded default profile: " + err.Error())
	}
	return p
}

// Load parses the profile file name inside dir, as Mesos'
// --seccomp_config_dir and --seccomp_profile_name. name must be a plain file
// name; symbolic links may not lead out of dir.
func Load(dir, name string) (*Profile, error) {
	if name == "" || name == "." || strings.Contains(name, "/") || strings.Contains(name, "..") || strings.ContainsRune(name, 0) {
		return nil, fmt.Errorf("seccomp: profile name %q must be a file name inside %s", name, dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("seccomp: profile directory: %w", err)
	}
	defer root.Close()
	// Refuse what is not a regular file before opening it: opening a FIFO
	// blocks until something writes to it, and the check after the open
	// (which covers a file swapped in meanwhile) would never be reached.
	if st, err := root.Stat(name); err != nil {
		return nil, fmt.Errorf("seccomp: profile: %w", err)
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("seccomp: profile %s is not a regular file", name)
	}
	f, err := root.Open(name)
	if err != nil {
		return nil, fmt.Errorf("seccomp: profile: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return nil, fmt.Errorf("seccomp: profile %s: %w", name, err)
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("seccomp: profile %s is not a regular file", name)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxProfileSize+1))
	if err != nil {
		return nil, fmt.Errorf("seccomp: profile %s: %w", name, err)
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w (profile %s)", err, name)
	}
	return p, nil
}

// Parse parses a profile in the Docker/OCI seccomp JSON format.
//
// Rules are tried in order and the first whose syscall and arguments match
// decides; the comparisons of one rule must all hold. Only the native
// architecture is admitted: a call made through another ABI (i386 int 0x80)
// kills the process, and x32 calls fail with ENOSYS, so neither can go around
// the rules.
func Parse(data []byte) (*Profile, error) {
	if len(data) > maxProfileSize {
		return nil, fmt.Errorf("seccomp: profile is larger than %d bytes", maxProfileSize)
	}
	var jp jsonProfile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&jp); err != nil {
		return nil, fmt.Errorf("seccomp: profile: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("seccomp: profile: data after the JSON object")
	}

	t, ok := targets[runtime.GOARCH]
	if !ok {
		return nil, fmt.Errorf("seccomp: no syscall table for GOARCH %s", runtime.GOARCH)
	}
	p := &Profile{target: t}

	var err error
	if jp.DefaultAction == "" {
		return nil, errors.New("seccomp: profile: defaultAction is required")
	}
	if p.defaultAction, err = parseAction("defaultAction", jp.DefaultAction, "defaultErrnoRet", jp.DefaultErrnoRet); err != nil {
		return nil, err
	}
	if err := checkArches(t, jp.Architectures, jp.ArchMap); err != nil {
		return nil, err
	}
	if len(jp.Flags) > 0 {
		return nil, fmt.Errorf("seccomp: profile: flags %v are not supported (the filter is always loaded with TSYNC only)", jp.Flags)
	}
	if jp.ListenerPath != "" || jp.ListenerMetadata != "" {
		return nil, errors.New("seccomp: profile: listenerPath/listenerMetadata (SCMP_ACT_NOTIFY) are not supported")
	}

	for i, sc := range jp.Syscalls {
		field := fmt.Sprintf("syscalls[%d]", i)
		applies, err := appliesHere(field, t, sc.Includes, sc.Excludes)
		if err != nil {
			return nil, err
		}
		names := sc.Names
		if sc.Name != "" {
			names = append([]string{sc.Name}, names...)
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("seccomp: profile: %s: names is empty", field)
		}
		if sc.Action == "" {
			return nil, fmt.Errorf("seccomp: profile: %s.action is required", field)
		}
		action, err := parseAction(field+".action", sc.Action, field+".errnoRet", sc.ErrnoRet)
		if err != nil {
			return nil, err
		}
		args, err := parseArgs(field, sc.Args)
		if err != nil {
			return nil, err
		}
		if !applies {
			continue
		}
		for _, name := range names {
			nr, known := t.info.SyscallNames[name]
			if !known {
				if !knownAnywhere(name) {
					return nil, fmt.Errorf("seccomp: profile: %s: unknown syscall %q (not in any syscall table; scope it with includes.arches if it belongs to another architecture)", field, name)
				}
				if !slices.Contains(p.UnknownSyscalls, name) {
					p.UnknownSyscalls = append(p.UnknownSyscalls, name)
				}
				continue
			}
			p.rules = append(p.rules, rule{nr: uint32(nr | t.info.SeccompMask), args: args, action: action})
		}
	}
	return p, nil
}

func parseAction(field, name, errnoField string, errnoRet *uint32) (uint32, error) {
	if errnoRet != nil && name != "SCMP_ACT_ERRNO" {
		return 0, fmt.Errorf("seccomp: profile: %s is set but %s is %s, not SCMP_ACT_ERRNO", errnoField, field, name)
	}
	switch name {
	case "SCMP_ACT_ALLOW":
		return retAllow, nil
	case "SCMP_ACT_ERRNO":
		errno := uint32(errnoEPERM)
		if errnoRet != nil {
			errno = *errnoRet
		}
		if errno > maxErrno {
			return 0, fmt.Errorf("seccomp: profile: %s %d is out of range 0-%d", errnoField, errno, maxErrno)
		}
		return retErrno | errno, nil
	case "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD": // SCMP_ACT_KILL is libseccomp's name for KILL_THREAD
		return retKillThread, nil
	case "SCMP_ACT_KILL_PROCESS":
		return retKillProcess, nil
	case "SCMP_ACT_TRAP":
		return retTrap, nil
	case "SCMP_ACT_LOG":
		return retLog, nil
	case "SCMP_ACT_TRACE", "SCMP_ACT_NOTIFY":
		return 0, fmt.Errorf("seccomp: profile: %s %s is not supported (no tracer or listener is attached to tasks)", field, name)
	}
	return 0, fmt.Errorf("seccomp: profile: %s: unknown action %q", field, name)
}

var ops = map[string]bool{
	"SCMP_CMP_EQ": true, "SCMP_CMP_NE": true,
	"SCMP_CMP_LT": true, "SCMP_CMP_LE": true,
	"SCMP_CMP_GT": true, "SCMP_CMP_GE": true,
	"SCMP_CMP_MASKED_EQ": true,
}

func parseArgs(field string, in []jsonArg) ([]comparison, error) {
	if len(in) > maxArgsPerRule {
		return nil, fmt.Errorf("seccomp: profile: %s.args has %d comparisons; at most %d are supported", field, len(in), maxArgsPerRule)
	}
	var out []comparison
	for j, a := range in {
		f := fmt.Sprintf("%s.args[%d]", field, j)
		if a.Index > 5 {
			return nil, fmt.Errorf("seccomp: profile: %s.index %d is out of range 0-5", f, a.Index)
		}
		if !ops[a.Op] {
			return nil, fmt.Errorf("seccomp: profile: %s.op: unsupported operator %q", f, a.Op)
		}
		if a.Op == "SCMP_CMP_MASKED_EQ" {
			// libseccomp: (arg & value) == valueTwo.
			if a.ValueTwo&^a.Value != 0 {
				return nil, fmt.Errorf("seccomp: profile: %s: valueTwo %#x has bits outside the mask value %#x, so the rule could never match (value is the mask)", f, a.ValueTwo, a.Value)
			}
		} else if a.ValueTwo != 0 {
			return nil, fmt.Errorf("seccomp: profile: %s.valueTwo is only used by SCMP_CMP_MASKED_EQ, not %s", f, a.Op)
		}
		out = append(out, comparison{index: a.Index, op: a.Op, value: a.Value, valueTwo: a.ValueTwo})
	}
	return out, nil
}

// checkArches verifies that a profile restricted to some architectures
// includes this one; the list is otherwise unused, since only the native
// architecture is ever admitted.
func checkArches(t *target, arches []string, archMap []jsonArchMap) error {
	if len(arches) == 0 && len(archMap) == 0 {
		return nil
	}
	found := slices.Contains(arches, t.scmpName)
	for _, m := range archMap {
		found = found || m.Architecture == t.scmpName || slices.Contains(m.SubArchitectures, t.scmpName)
	}
	if !found {
		return fmt.Errorf("seccomp: profile: architectures/archMap do not include %s", t.scmpName)
	}
	return nil
}

// appliesHere evaluates Docker's per-rule includes/excludes. Architecture
// conditions are decided here; capability and kernel-version conditions
// depend on the task and the node, so a rule carrying them is refused rather
// than applied unconditionally.
func appliesHere(field string, t *target, inc, exc *jsonFilter) (bool, error) {
	applies := true
	for _, c := range []struct {
		name    string
		f       *jsonFilter
		include bool
	}{{"includes", inc, true}, {"excludes", exc, false}} {
		if c.f == nil {
			continue
		}
		if len(c.f.Caps) > 0 {
			return false, fmt.Errorf("seccomp: profile: %s.%s.caps: capability-conditional rules are not supported", field, c.name)
		}
		if c.f.MinKernel != "" {
			return false, fmt.Errorf("seccomp: profile: %s.%s.minKernel: kernel-conditional rules are not supported", field, c.name)
		}
		if len(c.f.Arches) > 0 {
			here := slices.Contains(c.f.Arches, runtime.GOARCH) || slices.Contains(c.f.Arches, t.info.Name)
			if here != c.include {
				applies = false
			}
		}
	}
	return applies, nil
}

func knownAnywhere(name string) bool {
	for _, info := range otherTables {
		if _, ok := info.SyscallNames[name]; ok {
			return true
		}
	}
	return false
}
