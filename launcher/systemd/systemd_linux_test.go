package systemd

import "testing"

// The scope's unit name follows systemd's path escaping, so that any
// --cgroups_root gives a valid, distinct unit name.
func TestUnitName(t *testing.T) {
	tests := []struct{ root, want string }{
		{"corral", "corral.scope"},
		{"/corral/", "corral.scope"},
		{"corral/nested", "corral-nested.scope"},
		{"corral-dash", "corral-dash.scope"},
		{"a.b", "a.b.scope"},
		{".hidden", `\x2ehidden.scope`},
		{"with space", `with\x20space.scope`},
	}
	for _, tc := range tests {
		if got := UnitName(tc.root); got != tc.want {
			t.Errorf("UnitName(%q) = %q, want %q", tc.root, got, tc.want)
		}
	}
}
