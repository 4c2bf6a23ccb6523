package auth

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseCredentials(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     Credentials
		err      string
	}{
		{"json", `{"credentials":[{"principal":"sherman","secret":"kitesurf"},{"principal":"b","secret":"s2"}]}`, Credentials{"sherman": "kitesurf", "b": "s2"}, ""},
		{"text", "sherman kitesurf\n\nb s2\n", Credentials{"sherman": "kitesurf", "b": "s2"}, ""},
		{"no secret", `{"credentials":[{"principal":"a"}]}`, nil, `principal "a" has no secret`},
		{"twice", "a s\na t\n", nil, `line 2: principal "a" is given twice`},
		{"bad line", "a s t\n", nil, "line 1"},
		{"empty", `{"credentials":[]}`, nil, "no credentials"},
		{"bad json", `{"credentials":`, nil, "parsing the credentials"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseCredentials([]byte(c.in))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || len(got) != len(c.want) {
				t.Fatalf("%v %v, want %v", got, err, c.want)
			}
			for p, s := range c.want {
				if got[p] != s {
					t.Fatalf("%v, want %v", got, c.want)
				}
			}
		})
	}
}

func TestLoadCredentialsFileURL(t *testing.T) {
	p := filepath.Join(t.TempDir(), "creds")
	if err := os.WriteFile(p, []byte("a s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := LoadCredentials("file://" + p); err != nil || c["a"] != "s" {
		t.Fatalf("%v %v", c, err)
	}
	if _, err := LoadCredentials(p + ".missing"); err == nil {
		t.Fatal("a missing file loaded")
	}
}

func TestAuthenticate(t *testing.T) {
	creds := Credentials{"a": "secret"}
	for _, c := range []struct {
		name       string
		user, pass string
		basic      bool
		principal  string
		authentic  bool
	}{
		{"right", "a", "secret", true, "a", true},
		{"wrong secret", "a", "secreT", true, "", false},
		{"unknown principal", "b", "secret", true, "", false},
		{"no header", "", "", false, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/api/v1/scheduler", nil)
			if c.basic {
				r.SetBasicAuth(c.user, c.pass)
			}
			p, ok := creds.Authenticate(r)
			if p != c.principal || ok != c.authentic {
				t.Fatalf("%q %v, want %q %v", p, ok, c.principal, c.authentic)
			}
		})
	}
	r := httptest.NewRequest("POST", "/", nil)
	r.Header = BasicHeader("a", "secret")
	if p, ok := creds.Authenticate(r); p != "a" || !ok {
		t.Fatalf("BasicHeader's request: %q %v", p, ok)
	}
	w := httptest.NewRecorder()
	Unauthorized(w, "mesos-master-scheduler")
	if w.Code != 401 || w.Header().Get("WWW-Authenticate") != `Basic realm="mesos-master-scheduler"` {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
}

func TestLoadCredential(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, in string
		want     Credential
		err      string
	}{
		{"json", `{"principal":"agent","secret":"s"}`, Credential{"agent", "s"}, ""},
		{"text", "agent s\n", Credential{"agent", "s"}, ""},
		{"no secret", `{"principal":"agent"}`, Credential{}, "needs a principal and a secret"},
		{"two lines", "a s\nb t\n", Credential{}, "want \"principal secret\""},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.name)
			if err := os.WriteFile(p, []byte(c.in), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := LoadCredential(p)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("%+v %v, want %+v", got, err, c.want)
			}
		})
	}
}

func TestLoadRequired(t *testing.T) {
	if c, err := LoadRequired(false, "--on", "--file", ""); c != nil || err != nil {
		t.Fatalf("off: %v %v", c, err)
	}
	if _, err := LoadRequired(true, "--on", "--file", ""); err == nil || err.Error() != "--on needs --file: the principals to authenticate as" {
		t.Fatalf("on without a file: %v", err)
	}
	if _, err := LoadRequired(true, "--on", "--file", "/nonexistent"); err == nil || !strings.HasPrefix(err.Error(), "--file: ") {
		t.Fatalf("on with a missing file: %v", err)
	}
}
