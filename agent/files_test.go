package agent

import (
	"io/fs"
	"testing"
)

// /files/browse's mode column is ls -l's, which clients show as it is.
func TestModeString(t *testing.T) {
	tests := []struct {
		mode fs.FileMode
		want string
	}{
		{0o644, "-rw-r--r--"},
		{fs.ModeDir | 0o755, "drwxr-xr-x"},
		{fs.ModeSymlink | 0o777, "lrwxrwxrwx"},
		{fs.ModeNamedPipe | 0o600, "prw-------"},
		{fs.ModeDevice | fs.ModeCharDevice | 0o666, "crw-rw-rw-"},
		{fs.ModeDevice | 0o660, "brw-rw----"},
		{fs.ModeSocket | 0o755, "srwxr-xr-x"},
		{fs.ModeSetuid | 0o755, "-rwsr-xr-x"},
		{fs.ModeSetgid | 0o644, "-rw-r-Sr--"},
		{fs.ModeDir | fs.ModeSticky | 0o777, "drwxrwxrwt"},
	}
	for _, tc := range tests {
		if got := modeString(tc.mode); got != tc.want {
			t.Errorf("modeString(%v) = %q, want %q", tc.mode, got, tc.want)
		}
	}
}
