package seccomp

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/net/bpf"
)

// maxInstructions is the kernel's BPF_MAXINSNS for one classic filter.
const maxInstructions = 4096

// Offsets into struct seccomp_data. The 64-bit arguments are read as two
// words; every supported target is little-endian, so the low word comes first.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// x32SyscallBit is __X32_SYSCALL_BIT: x32 calls share AUDIT_ARCH_X86_64 and
// differ only by this bit in the number.
const x32SyscallBit = 0x40000000

// Compile assembles the profile into a classic BPF program, returned as the
// raw array of struct sock_filter (8 bytes each, native byte order) that
// seccomp(SECCOMP_SET_MODE_FILTER) takes; launcher/containerinit.LoadSeccomp loads it.
func (p *Profile) Compile() ([]byte, error) {
	prog, err := p.assemble()
	if err != nil {
		return nil, err
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("seccomp: assemble: %w", err)
	}
	if len(raw) > maxInstructions {
		return nil, fmt.Errorf("seccomp: filter has %d instructions; the kernel takes at most %d", len(raw), maxInstructions)
	}
	out := make([]byte, 8*len(raw))
	for i, r := range raw {
		b := out[8*i:]
		binary.LittleEndian.PutUint16(b[0:], r.Op)
		b[2], b[3] = r.Jt, r.Jf
		binary.LittleEndian.PutUint32(b[4:], r.K)
	}
	return out, nil
}

// assemble lays the program out as: architecture check (another ABI would
// use other numbers, so it is killed rather than let past the rules); x32
// check; one chain of equality tests per action for the calls decided by
// number alone; one block per call with argument rules, which ends in its
// own return so the clobbered accumulator is never compared again; the
// default action.
func (p *Profile) assemble() ([]bpf.Instruction, error) {
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: offArch, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(p.target.info.ID), SkipTrue: 1},
		bpf.RetConstant{Val: retKillProcess},
		bpf.LoadAbsolute{Off: offNr, Size: 4},
	}
	if p.target.x32 {
		prog = append(prog,
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: x32SyscallBit, SkipFalse: 1},
			bpf.RetConstant{Val: retErrno | errnoENOSYS},
		)
	}

	// Rules per syscall number, in profile order; an unconditional rule
	// ends its call's list, since nothing after it can be reached.
	var order []uint32
	perNr := map[uint32][]rule{}
	for _, r := range p.rules {
		rs, seen := perNr[r.nr]
		if !seen {
			order = append(order, r.nr)
		}
		if len(rs) > 0 && len(rs[len(rs)-1].args) == 0 {
			continue
		}
		perNr[r.nr] = append(rs, r)
	}

	var actions []uint32
	byAction := map[uint32][]uint32{}
	var blocks [][]bpf.Instruction
	for _, nr := range order {
		rs := perNr[nr]
		if len(rs) == 1 && len(rs[0].args) == 0 {
			if rs[0].action == p.defaultAction {
				continue
			}
			if _, ok := byAction[rs[0].action]; !ok {
				actions = append(actions, rs[0].action)
			}
			byAction[rs[0].action] = append(byAction[rs[0].action], nr)
			continue
		}
		b, err := p.block(nr, rs)
		if err != nil {
			return nil, err
		}
		blocks = append(blocks, b)
	}

	for _, a := range actions {
		nrs := byAction[a]
		for len(nrs) > 0 {
			k := min(len(nrs), 256) // the first test jumps k-1 ahead
			for i, nr := range nrs[:k] {
				if i < k-1 {
					prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipTrue: uint8(k - 1 - i)})
				} else {
					prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipFalse: 1})
				}
			}
			prog = append(prog, bpf.RetConstant{Val: a})
			nrs = nrs[k:]
		}
	}
	for _, b := range blocks {
		prog = append(prog, b...)
	}
	prog = append(prog, bpf.RetConstant{Val: p.defaultAction})
	return prog, nil
}

// block returns the code for one syscall number with argument rules:
// skip unless the number matches; each rule's comparisons, any failure
// going on to the next rule; the default action if none matched.
func (p *Profile) block(nr uint32, rs []rule) ([]bpf.Instruction, error) {
	var body []bpf.Instruction
	for _, r := range rs {
		code, err := ruleCode(r)
		if err != nil {
			return nil, err
		}
		body = append(body, code...)
	}
	body = append(body, bpf.RetConstant{Val: p.defaultAction})

	if len(body) <= 255 {
		return append([]bpf.Instruction{bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipFalse: uint8(len(body))}}, body...), nil
	}
	return append([]bpf.Instruction{
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipTrue: 1},
		bpf.Jump{Skip: uint32(len(body))},
	}, body...), nil
}

// Jump targets inside a rule, resolved once the rule's length is known.
type jumpTo uint8

const (
	toNext jumpTo = iota // the following instruction
	toPass               // this comparison holds: the next comparison
	toFail               // this rule does not match: the next rule
)

type pendingJump struct {
	at       int
	pass     int // index where this comparison ends
	onT, onF jumpTo
	cond     bpf.JumpTest
	val      uint32
}

// ordered gives, for each ordering operator, the test that lets a high word
// decide the comparison alone (strict) and the test on the low words.
var ordered = map[string]struct{ hi, lo bpf.JumpTest }{
	"SCMP_CMP_GT": {bpf.JumpGreaterThan, bpf.JumpGreaterThan},
	"SCMP_CMP_GE": {bpf.JumpGreaterThan, bpf.JumpGreaterOrEqual},
	"SCMP_CMP_LT": {bpf.JumpLessThan, bpf.JumpLessThan},
	"SCMP_CMP_LE": {bpf.JumpLessThan, bpf.JumpLessOrEqual},
}

// ruleCode emits a rule's comparisons (64-bit, unsigned, as libseccomp's)
// followed by its action.
func ruleCode(r rule) ([]bpf.Instruction, error) {
	var code []bpf.Instruction
	var jumps []pendingJump
	jmp := func(cond bpf.JumpTest, val uint32, onT, onF jumpTo) {
		jumps = append(jumps, pendingJump{at: len(code), cond: cond, val: val, onT: onT, onF: onF})
		code = append(code, nil) // placeholder
	}
	ld := func(off uint32) { code = append(code, bpf.LoadAbsolute{Off: off, Size: 4}) }
	and := func(v uint32) { code = append(code, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: v}) }

	for _, c := range r.args {
		first := len(jumps)
		lo, hi := offArgs+8*c.index, offArgs+8*c.index+4
		vlo, vhi := uint32(c.value), uint32(c.value>>32)
		switch c.op {
		case "SCMP_CMP_EQ":
			ld(hi)
			jmp(bpf.JumpEqual, vhi, toNext, toFail)
			ld(lo)
			jmp(bpf.JumpEqual, vlo, toNext, toFail)
		case "SCMP_CMP_NE":
			ld(hi)
			jmp(bpf.JumpEqual, vhi, toNext, toPass)
			ld(lo)
			jmp(bpf.JumpEqual, vlo, toFail, toNext)
		case "SCMP_CMP_GT", "SCMP_CMP_GE", "SCMP_CMP_LT", "SCMP_CMP_LE":
			// The high words decide unless they are equal; then the low
			// words do. x/net/bpf assembles the "less" tests as JGE/JGT
			// with the targets swapped.
			o := ordered[c.op]
			ld(hi)
			jmp(o.hi, vhi, toPass, toNext)
			jmp(bpf.JumpEqual, vhi, toNext, toFail)
			ld(lo)
			jmp(o.lo, vlo, toNext, toFail)
		case "SCMP_CMP_MASKED_EQ":
			// A zero mask word compares nothing (valueTwo is within the
			// mask), so it is left out; upper garbage in a 32-bit flags
			// argument then cannot defeat a low-word test.
			mlo, mhi := uint32(c.value), uint32(c.value>>32)
			wlo, whi := uint32(c.valueTwo), uint32(c.valueTwo>>32)
			if mhi != 0 {
				ld(hi)
				and(mhi)
				jmp(bpf.JumpEqual, whi, toNext, toFail)
			}
			if mlo != 0 {
				ld(lo)
				and(mlo)
				jmp(bpf.JumpEqual, wlo, toNext, toFail)
			}
		default:
			return nil, fmt.Errorf("seccomp: internal: operator %q", c.op)
		}
		for i := first; i < len(jumps); i++ {
			jumps[i].pass = len(code)
		}
	}
	code = append(code, bpf.RetConstant{Val: r.action})
	fail := len(code)

	for _, j := range jumps {
		skip := func(t jumpTo) (uint8, error) {
			var dest int
			switch t {
			case toNext:
				return 0, nil
			case toPass:
				dest = j.pass
			case toFail:
				dest = fail
			}
			n := dest - j.at - 1
			if n < 0 || n > 255 {
				return 0, fmt.Errorf("seccomp: internal: jump of %d in a rule", n)
			}
			return uint8(n), nil
		}
		t, err := skip(j.onT)
		if err != nil {
			return nil, err
		}
		f, err := skip(j.onF)
		if err != nil {
			return nil, err
		}
		code[j.at] = bpf.JumpIf{Cond: j.cond, Val: j.val, SkipTrue: t, SkipFalse: f}
	}
	return code, nil
}
