package disk

import (
	"strings"
	"testing"
	"time"
)

// The settings refuse what the isolators could not use, naming the flag.
func TestSettingsValidate(t *testing.T) {
	if err := DefaultSettings().Validate(); err != nil {
		t.Errorf("the defaults are refused: %v", err)
	}
	for _, tc := range []struct {
		set  func(*Settings)
		flag string
	}{
		{func(s *Settings) { s.WatchInterval = 0 }, "--container_disk_watch_interval"},
		{func(s *Settings) { s.WatchInterval = -time.Second }, "--container_disk_watch_interval"},
		{func(s *Settings) { s.ProjectRange = "[10-5]" }, "--xfs_project_range"},
		{func(s *Settings) { s.ProjectRange = "" }, "--xfs_project_range"},
	} {
		s := DefaultSettings()
		tc.set(s)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("%+v: %v, want an error naming %s", *s, err, tc.flag)
		}
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
