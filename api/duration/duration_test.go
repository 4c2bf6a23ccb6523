package duration

import (
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"5secs", 5 * time.Second},
		{"15mins", 15 * time.Minute},
		{"100ms", 100 * time.Millisecond},
		{"2.5secs", 2500 * time.Millisecond},
		{"1hrs", time.Hour},
		{"3days", 72 * time.Hour},
		{"10us", 10 * time.Microsecond},
		{"10ns", 10},
		{"1weeks", 7 * 24 * time.Hour},
		{"0secs", 0},
		{"0.5ms", 500 * time.Microsecond},
		{".5secs", 500 * time.Millisecond},
		{"1.secs", time.Second},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseDurationRejects(t *testing.T) {
	tests := []struct{ in, wantErr string }{
		{"", "want a number followed by a unit"},
		{"secs", "want a number followed by a unit"},
		{"5", "missing unit"},
		{"5s", `unknown unit "s"`}, // Go's format is not Mesos'
		{"5m", `unknown unit "m"`},
		{"5 secs", `unknown unit " secs"`},
		{"5sec", "unknown unit"},
		{"-5secs", "want a number followed by a unit"},
		{"1.2.3secs", "bad number"},
		{".secs", "bad number"},
		{"99999999999weeks", "out of range"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Parse(%q) error = %v; want one containing %q", tt.in, err, tt.wantErr)
		}
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{5 * time.Second, "5secs"},
		{15 * time.Minute, "15mins"},
		{100 * time.Millisecond, "100ms"},
		{2500 * time.Millisecond, "2500ms"},
		{2 * time.Hour, "2hrs"},
		{48 * time.Hour, "2days"},
		{14 * 24 * time.Hour, "2weeks"},
		{10 * time.Microsecond, "10us"},
		{7, "7ns"},
		{0, "0ns"},
	}
	for _, tt := range tests {
		got := Format(tt.in)
		if got != tt.want {
			t.Errorf("Format(%v) = %q; want %q", tt.in, got, tt.want)
		}
		if back, err := Parse(got); err != nil || back != tt.in {
			t.Errorf("Parse(Format(%v)) = %v, %v", tt.in, back, err)
		}
	}
}

// Flags may give Go's format or Mesos'.
func TestParseFlag(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"15s": 15 * time.Second, "15secs": 15 * time.Second, "1mins": time.Minute,
		"100ms": 100 * time.Millisecond, "2hrs": 2 * time.Hour, "1.5secs": 1500 * time.Millisecond,
		"1days": 24 * time.Hour, "1weeks": 7 * 24 * time.Hour,
	} {
		got, err := ParseFlag(in)
		if err != nil || got != want {
			t.Errorf("ParseFlag(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "soon", "-1secs", "5 parsecs"} {
		if _, err := ParseFlag(bad); err == nil {
			t.Errorf("ParseFlag(%q) accepted", bad)
		}
	}
}
