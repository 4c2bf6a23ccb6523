//go:build linux

package testsupport

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Process is a live process of the host as /proc shows it.
type Process struct {
	PID, State, PPid string
	Cmdline          string // arguments joined by spaces
	Environ          []byte // NUL-separated, as /proc/<pid>/environ
}

// ProcessesWith lists the live (not zombie) processes, this one aside,
// whose command line or environment holds s: a container ID, a sandbox
// path, a test's prefix.
func ProcessesWith(s string) []Process {
	var out []Process
	self := strconv.Itoa(os.Getpid())
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid := e.Name()
		if pid == self || pid[0] < '0' || pid[0] > '9' {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		environ, _ := os.ReadFile(filepath.Join("/proc", pid, "environ"))
		if !bytes.Contains(cmdline, []byte(s)) && !bytes.Contains(environ, []byte(s)) {
			continue
		}
		st := ProcStatus(pid, "State:")
		if st == "Z" || st == "" {
			continue
		}
		out = append(out, Process{PID: pid, State: st, PPid: ProcStatus(pid, "PPid:"),
			Cmdline: strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " ")), Environ: environ})
	}
	return out
}

// ProcStatus is the first word of a /proc/<pid>/status line ("State:",
// "PPid:"), "" when the process or the line is not there.
func ProcStatus(pid, key string) string {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			if f := strings.Fields(v); len(f) > 0 {
				return f[0]
			}
		}
	}
	return ""
}
