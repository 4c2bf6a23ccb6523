// Package duration reads and writes durations in Mesos' format ("5secs",
// "15mins", "100ms"), which Mesos' flags, executor environment and messages
// use and its clients parse; Go's own ("5s") is not Mesos'.
package duration

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// mesosUnits are the unit suffixes of Mesos' Duration::parse, largest first
// so Format picks the most readable one.
var mesosUnits = []struct {
	name string
	d    time.Duration
}{
	{"weeks", 7 * 24 * time.Hour},
	{"days", 24 * time.Hour},
	{"hrs", time.Hour},
	{"mins", time.Minute},
	{"secs", time.Second},
	{"ms", time.Millisecond},
	{"us", time.Microsecond},
	{"ns", time.Nanosecond},
}

// Parse parses a duration in Mesos' format: a non-negative decimal
// number directly followed by one of ns, us, ms, secs, mins, hrs, days or
// weeks ("5secs", "2.5secs", "15mins"). Go's own format ("5s") is not Mesos'
// and is rejected, as Mesos' clients reject it.
func Parse(s string) (time.Duration, error) {
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 && s != "" {
		return 0, fmt.Errorf("invalid Mesos duration %q: missing unit (ns, us, ms, secs, mins, hrs, days or weeks)", s)
	}
	if i <= 0 {
		return 0, fmt.Errorf("invalid Mesos duration %q: want a number followed by a unit (ns, us, ms, secs, mins, hrs, days, weeks)", s)
	}
	num, unit := s[:i], s[i:]
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid Mesos duration %q: bad number %q", s, num)
	}
	for _, u := range mesosUnits {
		if u.name != unit {
			continue
		}
		ns := v * float64(u.d)
		if ns >= math.MaxInt64 {
			return 0, fmt.Errorf("invalid Mesos duration %q: out of range", s)
		}
		return time.Duration(math.Round(ns)), nil
	}
	return 0, fmt.Errorf("invalid Mesos duration %q: unknown unit %q (want ns, us, ms, secs, mins, hrs, days or weeks)", s, unit)
}

// Format writes d in Mesos' format, using the largest unit that
// divides it exactly ("5secs", "15mins", "1500ms"). Negative durations have
// no Mesos spelling and are written as "0ns".
func Format(d time.Duration) string {
	if d <= 0 {
		return "0ns"
	}
	for _, u := range mesosUnits {
		if d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(d), 10) + "ns" // unreachable: ns divides everything
}

// ParseFlag reads a duration a flag may give either way: Go's ("15s",
// "1m30s") or Mesos' ("15secs", "1mins").
func ParseFlag(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	d, err := Parse(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 15s or 15secs", s)
	}
	return d, nil
}

// Value is a flag (pflag.Value, flag.Value) holding a duration written
// either way ParseFlag reads.
type Value struct{ D *time.Duration }

func (v Value) String() string {
	if v.D == nil {
		return ""
	}
	return v.D.String()
}

// Set parses s into the duration.
func (v Value) Set(s string) error {
	d, err := ParseFlag(s)
	if err != nil {
		return err
	}
	*v.D = d
	return nil
}

// Type names the value in flag usage.
func (Value) Type() string { return "duration" }
