package cgroupfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseLimit(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		bad  bool
	}{
		{"max", Unlimited, false},
		{"-1", Unlimited, false},
		{"9223372036854771712", Unlimited, false}, // v1 PAGE_COUNTER_MAX
		{"0", 0, false},
		{"104857600", 104857600, false},
		{"lots", 0, true},
	}
	for _, tc := range tests {
		got, err := ParseLimit(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("ParseLimit(%q) = %d, %v; want %d (error %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestParseKV(t *testing.T) {
	got := ParseKV("user_usec 12\nsystem_usec 3\n  nr_periods   7  \nbad line x\nnovalue\n")
	want := map[string]uint64{"user_usec": 12, "system_usec": 3, "nr_periods": 7}
	if len(got) != len(want) {
		t.Fatalf("ParseKV = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("ParseKV[%s] = %d, want %d", k, got[k], v)
		}
	}
}

// Plain files stand in for control files.
func TestControlFiles(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "memory.max"), nil, 0o644))
	must(t, Write(dir, "memory.max", "max"))
	if v, err := ReadUint(dir, "memory.max"); err != nil || v != Unlimited {
		t.Errorf("ReadUint = %d, %v", v, err)
	}
	err := Write(dir, "missing", "1")
	if err == nil || !strings.Contains(err.Error(), `writing "1" to `+filepath.Join(dir, "missing")) {
		t.Errorf("Write to a missing file: %v", err)
	}
	if ok, err := WriteOptional(dir, "missing", "1"); ok || err != nil {
		t.Errorf("WriteOptional of a missing file: %v, %v; want not written, no error", ok, err)
	}
	if ok, err := WriteOptional(filepath.Join(dir, "gone"), "missing", "1"); ok || err == nil {
		t.Errorf("WriteOptional in a missing cgroup: %v, %v; want an error", ok, err)
	}
	if ok, err := WriteOptional(dir, "memory.max", "5"); !ok || err != nil {
		t.Errorf("WriteOptional: %v, %v", ok, err)
	}
	must(t, os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte("1\n2\n\n3\n"), 0o644))
	if n, err := CountLines(dir, "cgroup.procs"); err != nil || n != 3 {
		t.Errorf("CountLines = %d, %v", n, err)
	}
	must(t, os.WriteFile(filepath.Join(dir, "memory.stat"), []byte("anon 10\nfile 20\n"), 0o644))
	if kv, err := ReadKV(dir, "memory.stat"); err != nil || kv["anon"] != 10 || kv["file"] != 20 {
		t.Errorf("ReadKV = %v, %v", kv, err)
	}
}
