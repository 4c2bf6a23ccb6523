package disk

import (
	"strings"
	"testing"
	"time"
)

func TestExtraDuration(t *testing.T) {
	if _, err := extraDuration(map[string]string{WatchIntervalKey: "0s"}, WatchIntervalKey, DefaultWatchInterval); err == nil {
		t.Error("a zero interval was accepted")
	}
	if d, err := extraDuration(nil, WatchIntervalKey, DefaultWatchInterval); err != nil || d != 15*time.Second {
		t.Errorf("default interval = %v, %v", d, err)
	}
}

func TestParseRange(t *testing.T) {
	for in, want := range map[string][2]uint32{
		"[5000-10000]": {5000, 10000}, "5000-10000": {5000, 10000}, " [1-1] ": {1, 1},
	} {
		lo, hi, err := parseRange(in)
		if err != nil || lo != want[0] || hi != want[1] {
			t.Errorf("parseRange(%q) = %d, %d, %v", in, lo, hi, err)
		}
	}
	for _, bad := range []string{"", "5000", "[0-10]", "[10-5]", "[a-b]", "[1-4294967295]", "[-5-10]"} {
		if _, _, err := parseRange(bad); err == nil {
			t.Errorf("parseRange(%q) accepted", bad)
		}
	}
}

func TestExtraBool(t *testing.T) {
	if b, err := extraBool(map[string]string{EnforceKey: "true"}, EnforceKey, false); !b || err != nil {
		t.Errorf("true: %v %v", b, err)
	}
	if b, err := extraBool(nil, EnforceKey, false); b || err != nil {
		t.Errorf("default: %v %v", b, err)
	}
	if _, err := extraBool(map[string]string{EnforceKey: "yes please"}, EnforceKey, false); err == nil || !strings.Contains(err.Error(), EnforceKey) {
		t.Errorf("bad bool: %v", err)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0B", 100: "100B", 1024: "1KB", 1536: "1.5KB", 3 << 20: "3MB", 5<<30 + 512<<20: "5.5GB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestKillHeadroom(t *testing.T) {
	if KillHeadroom(1<<20) != 16<<20 || KillHeadroom(1<<30) != 1<<30/10 {
		t.Errorf("KillHeadroom: %d, %d", KillHeadroom(1<<20), KillHeadroom(1<<30))
	}
}
