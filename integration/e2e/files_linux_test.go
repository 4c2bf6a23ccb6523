package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corral/corral/api/v1/mesos"
)

// get is one GET on the agent: status and body.
func (n *node) get(tb testing.TB, endpoint string, query url.Values) (int, []byte) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := "http://127.0.0.1:" + strconv.Itoa(n.agentPort) + endpoint + "?" + query.Encode()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("GET %s: %v", u, err)
	}
	return resp.StatusCode, b
}

// The agent's /files endpoints serve a task's sandbox in Mesos' shapes, by
// its real path and by Mesos' virtual one, and nothing outside sandboxes:
// not a host path, not a link a task planted to one.
func TestFilesEndpoints(t *testing.T) {
	prefix := rootTest(t)
	n := startNode(t, prefix, "posix")
	f := ckptFramework(t, n.master, "files", false, false)
	script := `printf 'hello files\n'; printf '0123456789' > data; ln -s /etc/hostname escape; ln -s data inside; mkfifo pipe`
	f.launch(commandTask(t, "writer", script))
	if s := f.awaitTerminal(t, "writer")["writer"].last; s.GetState() != mesos.TaskState_TASK_FINISHED {
		t.Fatalf("writer ended %v %q", s.GetState(), s.GetMessage())
	}
	box := n.taskSandbox(t, "writer")
	rel, err := filepath.Rel(filepath.Join(n.workDir, "slaves", n.agentID(t)), box)
	if err != nil {
		t.Fatal(err)
	}
	exDir := filepath.Dir(filepath.Dir(rel))
	virtual := "/" + exDir + "/runs/latest"

	for _, tc := range []struct{ name, dir string }{{"real-path", box}, {"virtual-path", virtual}} {
		dir := tc.dir
		t.Run(tc.name, func(t *testing.T) {
			code, body := n.get(t, "/files/browse", url.Values{"path": {dir}})
			if code != http.StatusOK {
				t.Fatalf("browse %s: %d %s", dir, code, body)
			}
			var entries []struct {
				Path  string  `json:"path"`
				Size  int64   `json:"size"`
				Mode  string  `json:"mode"`
				Nlink int     `json:"nlink"`
				Mtime float64 `json:"mtime"`
				UID   string  `json:"uid"`
				GID   string  `json:"gid"`
			}
			if err := json.Unmarshal(body, &entries); err != nil {
				t.Fatalf("browse %s: %v: %s", dir, err, body)
			}
			byName := map[string]int{}
			for i, e := range entries {
				byName[filepath.Base(e.Path)] = i
			}
			for _, name := range []string{"stdout", "stderr", "data", "escape", "inside", "pipe"} {
				if _, ok := byName[name]; !ok {
					t.Errorf("browse %s lacks %s: %s", dir, name, body)
				}
			}
			if e := entries[byName["data"]]; e.Path != dir+"/data" || e.Size != 10 || e.Mode != "-rw-r--r--" || e.Nlink != 1 || e.UID != "root" || e.GID != "root" ||
				time.Since(time.Unix(int64(e.Mtime), 0)) > time.Hour {
				t.Errorf("browse %s: data is %+v, want %s/data, 10 bytes, -rw-r--r--, root:root, just written", dir, e, dir)
			}
			if e := entries[byName["escape"]]; !strings.HasPrefix(e.Mode, "l") {
				t.Errorf("browse: escape's mode %q, want a link", e.Mode)
			}

			read := func(q url.Values) (int, map[string]any) {
				code, body := n.get(t, "/files/read", q)
				var out map[string]any
				if code == http.StatusOK {
					if err := json.Unmarshal(body, &out); err != nil {
						t.Fatalf("read %v: %v: %s", q, err, body)
					}
				}
				return code, out
			}
			if code, out := read(url.Values{"path": {dir + "/stdout"}, "offset": {"0"}}); code != 200 || !strings.Contains(out["data"].(string), "hello files") || out["offset"].(float64) != 0 {
				t.Errorf("read stdout: %d %v", code, out)
			}
			if code, out := read(url.Values{"path": {dir + "/data"}, "offset": {"-1"}}); code != 200 || out["data"] != "" || out["offset"].(float64) != 10 {
				t.Errorf("read data's size: %d %v, want offset 10", code, out)
			}
			if code, out := read(url.Values{"path": {dir + "/data"}, "offset": {"3"}, "length": {"4"}}); code != 200 || out["data"] != "3456" || out["offset"].(float64) != 3 {
				t.Errorf("read data 3+4: %d %v, want 3456", code, out)
			}
			if code, out := read(url.Values{"path": {dir + "/inside"}, "offset": {"8"}}); code != 200 || out["data"] != "89" {
				t.Errorf("read through a link inside the sandbox: %d %v, want 89", code, out)
			}
			if code, out := read(url.Values{"path": {dir + "/data"}, "offset": {"50"}}); code != 200 || out["data"] != "" || out["offset"].(float64) != 50 {
				t.Errorf("read past the end: %d %v", code, out)
			}
			code, body = n.get(t, "/files/download", url.Values{"path": {dir + "/data"}})
			if code != http.StatusOK || string(body) != "0123456789" {
				t.Errorf("download data: %d %q", code, body)
			}
		})
	}

	// Bad input and forbidden paths: each refused with its status.
	for _, tc := range []struct {
		endpoint string
		q        url.Values
		code     int
	}{
		{"/files/read", url.Values{}, http.StatusBadRequest},
		{"/files/read", url.Values{"path": {box + "/data"}, "offset": {"x"}}, http.StatusBadRequest},
		{"/files/read", url.Values{"path": {box + "/data"}, "offset": {"-2"}}, http.StatusBadRequest},
		{"/files/read", url.Values{"path": {box + "/data"}, "offset": {"0"}, "length": {"-5"}}, http.StatusBadRequest},
		{"/files/read", url.Values{"path": {box}, "offset": {"0"}}, http.StatusBadRequest},
		{"/files/read", url.Values{"path": {box + "/pipe"}, "offset": {"0"}}, http.StatusBadRequest},
		{"/files/read", url.Values{"path": {box + "/missing"}, "offset": {"0"}}, http.StatusNotFound},
		{"/files/read", url.Values{"path": {"/etc/hostname"}, "offset": {"0"}}, http.StatusNotFound},
		{"/files/read", url.Values{"path": {box + "/../../../../../../../../etc/hostname"}, "offset": {"0"}}, http.StatusNotFound},
		{"/files/read", url.Values{"path": {box + "/escape"}, "offset": {"0"}}, http.StatusForbidden},
		{"/files/download", url.Values{"path": {box + "/escape"}}, http.StatusForbidden},
		{"/files/browse", url.Values{"path": {n.workDir}}, http.StatusNotFound},
		{"/files/download", url.Values{"path": {box}}, http.StatusBadRequest},
	} {
		if code, body := n.get(t, tc.endpoint, tc.q); code != tc.code {
			t.Errorf("%s %v: %d %s, want %d", tc.endpoint, tc.q, code, body, tc.code)
		}
	}
}
