package cli

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/corral/corral/api/resources"
	"github.com/spf13/cobra"
)

func TestRelevant(t *testing.T) {
	cases := []struct{ have, want, out string }{
		{"cpus:2;mem:1024;disk:100;ports:[31000-32000]", "cpus:100;mem:32", "cpus:2;mem:1024"},
		{"cpus:2;mem:1024", "cpus:0.1;mem:32;gpus:1", "cpus:2;mem:1024, no gpus"},
		{"disk:5", "gpus:1;cpus:1", "no gpus, no cpus"},
		{"cpus:2;ports:[31000-31005]", "ports:[31000-31000]", "ports:[31000-31005]"},
	}
	for _, tc := range cases {
		have, err := resources.Parse(tc.have)
		if err != nil {
			t.Fatal(err)
		}
		want, err := resources.Parse(tc.want)
		if err != nil {
			t.Fatal(err)
		}
		if got := relevant(have, want); got != tc.out {
			t.Errorf("relevant(%s, %s) = %q, want %q", tc.have, tc.want, got, tc.out)
		}
	}
}

func TestOffersSummaryIsStable(t *testing.T) {
	m := map[string]string{"a": "host-b: cpus:1", "b": "host-a: cpus:2"}
	for range 10 {
		if got := offersSummary(m); got != "host-a: cpus:2; host-b: cpus:1" {
			t.Fatalf("offersSummary = %q", got)
		}
	}
}

func TestTailLines(t *testing.T) {
	cases := []struct {
		name    string
		data    string
		partial bool
		n       int
		want    []string
	}{
		{"empty", "", false, 10, nil},
		{"one", "/bin/sh: 1: x: not found\n", false, 10, []string{"/bin/sh: 1: x: not found"}},
		{"no final newline", "a\nb", false, 10, []string{"a", "b"}},
		{"last n", "1\n2\n3\n4\n", false, 2, []string{"3", "4"}},
		{"cut first line dropped", "art of a line\nwhole\n", true, 10, []string{"whole"}},
		{"crlf", "a\r\nb\r\n", false, 10, []string{"a", "b"}},
	}
	for _, tc := range cases {
		if got := tailLines(tc.data, tc.partial, tc.n); !slices.Equal(got, tc.want) {
			t.Errorf("%s: tailLines = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestMasterAddr(t *testing.T) {
	cases := map[string]string{
		"127.0.0.1:5050":                 "127.0.0.1:5050",
		"http://m:5050":                  "m:5050",
		"http://m:5050/api/v1/scheduler": "m:5050",
		"http://m":                       "m:80",
		"https://m/api/v1/scheduler":     "m:443",
		"http://[::1]:5050":              "[::1]:5050",
		"http://":                        "",
		"http://%zz":                     "",
		"https://leader.example.com:15050/x?y=1#z": "leader.example.com:15050",
	}
	for in, want := range cases {
		if got := masterAddr(in); got != want {
			t.Errorf("masterAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestExplainEnv(t *testing.T) {
	cmd := &cobra.Command{Use: "x"}
	var level, levelX string
	cmd.Flags().StringVar(&level, "logging_level", "INFO", "")
	cmd.Flags().StringVar(&levelX, "logging_level_x", "", "")
	t.Setenv("CORRAL_LOGGING_LEVEL_X", "y")
	if err := envFlags(cmd); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ msg, want string }{
		// Set by the environment: named.
		{"--logging_level_x: bad", "--logging_level_x: bad (--logging_level_x was set by the environment variable CORRAL_LOGGING_LEVEL_X)"},
		// --logging_level is a prefix of it, but came from no variable.
		{"--logging_level: bad", "--logging_level: bad"},
		// Already named.
		{"CORRAL_LOGGING_LEVEL_X=y (for --logging_level_x): bad", "CORRAL_LOGGING_LEVEL_X=y (for --logging_level_x): bad"},
	}
	for _, tc := range cases {
		err := explainEnv(cmd, errors.New(tc.msg))
		if err.Error() != tc.want {
			t.Errorf("explainEnv(%q) = %q, want %q", tc.msg, err, tc.want)
		}
	}
	if !namesFlag("a --port: b", "port") || namesFlag("a --port_x: b", "port") || !namesFlag("--port", "port") {
		t.Error("namesFlag: wrong")
	}
}

func TestExitCodes(t *testing.T) {
	cases := []struct {
		args []string
		code int
	}{
		{[]string{"version"}, 0},
		{[]string{"--version"}, 0},
		{[]string{}, 2},
		{[]string{"nope"}, 2},
		{[]string{"run", "--nope"}, 2},
		{[]string{"master", "-z"}, 2},
		{[]string{"version", "extra"}, 2},
		{[]string{"run", "--name", "x", "--command", "y"}, 2},
		{[]string{"master", "--port", "-1"}, 2},
		{[]string{"local", "--agent_port", "99999"}, 2},
		{[]string{"local", "--agent_port", "5050", "--port", "5050"}, 2},
	}
	for _, tc := range cases {
		if got := Main(tc.args); got != tc.code {
			t.Errorf("corral %q: exit %d, want %d", tc.args, got, tc.code)
		}
	}
}

func TestQuietHandler(t *testing.T) {
	var buf bytes.Buffer
	quiet := false
	log := slog.New(&quietHandler{h: slog.NewTextHandler(&buf, nil), quiet: func() bool { return quiet }}).With("component", "driver")
	log.Warn("first")
	quiet = true
	log.Warn("dropped")
	log.Error("kept")
	out := buf.String()
	if !strings.Contains(out, "first") || strings.Contains(out, "dropped") || !strings.Contains(out, "kept") || !strings.Contains(out, "component=driver") {
		t.Errorf("quietHandler output:\n%s", out)
	}
	if (&quietHandler{h: slog.NewTextHandler(&buf, nil), quiet: func() bool { return true }}).Enabled(context.Background(), slog.LevelError) != true {
		t.Error("errors must pass while quiet")
	}
}
