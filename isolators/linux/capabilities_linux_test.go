package linux

import (
	"slices"
	"strings"
	"testing"

	"github.com/corral/corral/container"
)

func TestParseCapabilities(t *testing.T) {
	tests := []struct {
		in      string
		want    []uint
		wantErr string
	}{
		{in: "", want: nil},
		{in: "[]", want: []uint{}},
		{in: `{"capabilities":[]}`, want: []uint{}},
		{in: "NET_RAW,chown", want: []uint{0, 13}},
		{in: "CAP_SYS_ADMIN", want: []uint{21}},
		{in: `{"capabilities":["KILL","KILL","SETUID"]}`, want: []uint{5, 7}},
		{in: "NET_RAW,BOGUS", wantErr: `unknown capability "BOGUS"`},
		{in: `{"capabilities":"KILL"}`, wantErr: "neither"},
	}
	for _, tc := range tests {
		got, err := ParseCapabilities(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseCapabilities(%q) error %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("ParseCapabilities(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestCapabilitiesFlagsAndRequests(t *testing.T) {
	def, _ := capNumbers(DefaultCapabilities)
	tests := []struct {
		name          string
		bounding, eff string
		ask           []string
		want          []uint
		wantErr       string
	}{
		{name: "defaults", want: def},
		{name: "ask fewer", ask: []string{"NET_RAW"}, want: []uint{13}},
		{name: "ask more", ask: []string{"SYS_ADMIN"}, wantErr: "SYS_ADMIN is not allowed"},
		{name: "operator allows more", bounding: "SYS_ADMIN,KILL", ask: []string{"SYS_ADMIN"}, want: []uint{21}},
		{name: "effective from bounding", bounding: "SYS_ADMIN,KILL", want: []uint{5}},
		{name: "effective outside bounding", bounding: "KILL", eff: "SETUID", wantErr: "SETUID is not in --bounding_capabilities"},
		{name: "bad flag", bounding: "NOPE", wantErr: "--bounding_capabilities"},
	}
	for _, tc := range tests {
		i, err := NewCapabilities(container.Options{Settings: container.NewSettings().With(
			&Settings{BoundingCapabilities: tc.bounding, EffectiveCapabilities: tc.eff})})
		var li *container.LaunchInfo
		if err == nil {
			li, err = i.Prepare(t.Context(), &container.Config{Capabilities: tc.ask})
		}
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(*li.Capabilities, tc.want) {
			t.Errorf("%s: got %v, %v; want %v", tc.name, li, err, tc.want)
		}
	}
}
