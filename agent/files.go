package agent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/corral/corral/api/auth"
	"github.com/corral/corral/api/authz"
	"github.com/corral/corral/api/httpapi"
)

// Mesos' /files endpoints on the agent: browse, read and download what is
// in the sandboxes — how operators and tools (Mesos' UI, its CLI) read a
// task's stdout and stderr. A path is either a sandbox's real path (the
// "directory" /state gives) or Mesos' virtual one,
// /frameworks/<fw>/executors/<ex>/runs/<run|latest>/...; nothing outside the
// work_dir's sandboxes is served, symbolic links that lead out included.

// readCap bounds one /files/read answer: 16 pages, as Mesos.
var readCap = int64(os.Getpagesize() * 16)

func (a *Agent) registerFiles(mux *http.ServeMux) {
	for name, h := range map[string]http.HandlerFunc{"browse": a.serveBrowse, "read": a.serveRead, "download": a.serveDownload} {
		h = auth.Require(a.cfg.readonlyCredentials, agentReadonlyRealm, h)
		mux.HandleFunc("/files/"+name, h)
		mux.HandleFunc("/files/"+name+".json", h)
	}
}

// openSandboxPath opens what a /files path names, beneath the sandboxes'
// root. The error is an HTTP status with its reason.
func (a *Agent) openSandboxPath(r *http.Request) (*os.File, fs.FileInfo, string, *httpError) {
	p := r.URL.Query().Get("path")
	if p == "" {
		return nil, nil, "", &httpError{http.StatusBadRequest, "Expecting 'path' in query"}
	}
	clean := path.Clean("/" + p)
	slaves := filepath.Join(a.cfg.WorkDir, "slaves")
	var root, rel string
	switch {
	case strings.HasPrefix(clean, slaves+"/"):
		root, rel = slaves, strings.TrimPrefix(clean, slaves+"/")
	case strings.HasPrefix(clean, "/frameworks/"):
		id := a.ID()
		if id == "" {
			return nil, nil, "", &httpError{http.StatusNotFound, fmt.Sprintf("%s not found: the agent has no ID yet", p)}
		}
		root, rel = filepath.Join(slaves, id), strings.TrimPrefix(clean, "/")
	default:
		return nil, nil, "", &httpError{http.StatusNotFound, fmt.Sprintf("%s not found: only sandboxes are served", p)}
	}
	if herr := a.authorizeSandbox(r, &root, &rel, p); herr != nil {
		return nil, nil, "", herr
	}
	f, err := openBeneath(root, rel)
	switch {
	case err == nil:
		// A task may plant a FIFO or a device: reading those could block
		// or touch hardware. Only files and directories are served.
		fi, err := f.Stat()
		if err != nil || !(fi.Mode().IsRegular() || fi.IsDir()) {
			f.Close()
			return nil, nil, "", &httpError{http.StatusBadRequest, fmt.Sprintf("%s is not a regular file or a directory", p)}
		}
		return f, fi, clean, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil, "", &httpError{http.StatusNotFound, fmt.Sprintf("%s not found", p)}
	case errors.Is(err, errOutside):
		return nil, nil, "", &httpError{http.StatusForbidden, fmt.Sprintf("%s leads out of the sandboxes", p)}
	default:
		return nil, nil, "", &httpError{http.StatusInternalServerError, fmt.Sprintf("opening %s: %v", p, err)}
	}
}

// openFile is openSandboxPath for the endpoints that want a file, not a
// directory; verb names what they do in the refusal.
func (a *Agent) openFile(r *http.Request, verb string) (*os.File, fs.FileInfo, string, *httpError) {
	f, fi, p, herr := a.openSandboxPath(r)
	if herr != nil {
		return nil, nil, "", herr
	}
	if fi.IsDir() {
		f.Close()
		return nil, nil, "", &httpError{http.StatusBadRequest, fmt.Sprintf("Cannot %s a directory: %s", verb, p)}
	}
	return f, fi, p, nil
}

type httpError struct {
	code int
	msg  string
}

func (e *httpError) write(w http.ResponseWriter) { httpapi.Error(w, e.code, "%s", e.msg) }

// serveBrowse lists a directory (or describes one file) as Mesos does: a
// JSON array of {path, nlink, size, mtime, mode, uid, gid}.
func (a *Agent) serveBrowse(w http.ResponseWriter, r *http.Request) {
	f, fi, p, herr := a.openSandboxPath(r)
	if herr != nil {
		herr.write(w)
		return
	}
	defer f.Close()
	out := []map[string]any{}
	if !fi.IsDir() {
		out = append(out, fileJSON(p, fi))
		httpapi.WriteJSON(w, out)
		return
	}
	entries, err := f.ReadDir(-1)
	if err != nil {
		httpapi.Error(w, http.StatusInternalServerError, "listing %s: %v", p, err)
		return
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, fileJSON(path.Join(p, e.Name()), info))
	}
	slices.SortFunc(out, func(x, y map[string]any) int { return strings.Compare(x["path"].(string), y["path"].(string)) })
	httpapi.WriteJSON(w, out)
}

// serveRead answers {"data": ..., "offset": ...}: up to length bytes (16
// pages at most) from offset; offset -1 (or none) asks for the file's size
// only, which is how Mesos' clients tail a log.
func (a *Agent) serveRead(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	offset, length := int64(-1), int64(-1)
	for _, v := range []struct {
		name string
		dst  *int64
	}{{"offset", &offset}, {"length", &length}} {
		s := q.Get(v.name)
		if s == "" {
			continue
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			httpapi.Error(w, http.StatusBadRequest, "Failed to parse %s: %q is not a number", v.name, s)
			return
		}
		if n < -1 {
			httpapi.Error(w, http.StatusBadRequest, "Negative %s provided: %d", v.name, n)
			return
		}
		*v.dst = n
	}
	f, fi, p, herr := a.openFile(r, "read")
	if herr != nil {
		herr.write(w)
		return
	}
	defer f.Close()
	size := fi.Size()
	if offset == -1 {
		httpapi.WriteJSON(w, map[string]any{"data": "", "offset": size})
		return
	}
	if length == -1 || length > readCap {
		length = readCap
	}
	if offset >= size || length == 0 {
		httpapi.WriteJSON(w, map[string]any{"data": "", "offset": offset})
		return
	}
	buf := make([]byte, min(length, size-offset))
	n, err := f.ReadAt(buf, offset)
	if err != nil && !errors.Is(err, io.EOF) {
		httpapi.Error(w, http.StatusInternalServerError, "reading %s: %v", p, err)
		return
	}
	httpapi.WriteJSON(w, map[string]any{"data": string(buf[:n]), "offset": offset})
}

// serveDownload sends a file whole (ranges honoured) as an attachment.
func (a *Agent) serveDownload(w http.ResponseWriter, r *http.Request) {
	f, fi, p, herr := a.openFile(r, "download")
	if herr != nil {
		herr.write(w)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", path.Base(p)))
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// fileJSON is one entry of /files/browse, in Mesos' shape.
func fileJSON(p string, fi fs.FileInfo) map[string]any {
	out := map[string]any{
		"path": p, "size": fi.Size(), "mode": modeString(fi.Mode()),
		"mtime": float64(fi.ModTime().UnixNano()) / float64(time.Second),
		"nlink": 1, "uid": "", "gid": "",
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		out["nlink"] = st.Nlink
		out["uid"], out["gid"] = names.user(st.Uid), names.group(st.Gid)
	}
	return out
}

// modeString is ls -l's mode column (Go's FileMode.String differs for
// links, devices and special bits).
func modeString(m fs.FileMode) string {
	b := []byte("----------")
	switch {
	case m.IsDir():
		b[0] = 'd'
	case m&fs.ModeSymlink != 0:
		b[0] = 'l'
	case m&fs.ModeNamedPipe != 0:
		b[0] = 'p'
	case m&fs.ModeSocket != 0:
		b[0] = 's'
	case m&fs.ModeCharDevice != 0:
		b[0] = 'c'
	case m&fs.ModeDevice != 0:
		b[0] = 'b'
	}
	const rwx = "rwxrwxrwx"
	for i := range 9 {
		if m.Perm()&(1<<(8-i)) != 0 {
			b[i+1] = rwx[i]
		}
	}
	if m&fs.ModeSetuid != 0 {
		b[3] = map[bool]byte{true: 's', false: 'S'}[b[3] == 'x']
	}
	if m&fs.ModeSetgid != 0 {
		b[6] = map[bool]byte{true: 's', false: 'S'}[b[6] == 'x']
	}
	if m&fs.ModeSticky != 0 {
		b[9] = map[bool]byte{true: 't', false: 'T'}[b[9] == 'x']
	}
	return string(b)
}

// names caches uid and gid names: a browse of a large sandbox asks for the
// same few again and again.
var names = &idNames{users: map[uint32]string{}, groups: map[uint32]string{}}

type idNames struct {
	mu            sync.Mutex
	users, groups map[uint32]string
}

func (n *idNames) user(id uint32) string {
	return n.lookup(n.users, id, func(s string) (string, error) {
		u, err := user.LookupId(s)
		if err != nil {
			return "", err
		}
		return u.Username, nil
	})
}

func (n *idNames) group(id uint32) string {
	return n.lookup(n.groups, id, func(s string) (string, error) {
		g, err := user.LookupGroupId(s)
		if err != nil {
			return "", err
		}
		return g.Name, nil
	})
}

func (n *idNames) lookup(m map[uint32]string, id uint32, find func(string) (string, error)) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s, ok := m[id]; ok {
		return s
	}
	s := strconv.FormatUint(uint64(id), 10)
	if name, err := find(s); err == nil {
		s = name
	}
	m[id] = s
	return s
}

// openChecked resolves rel below root with EvalSymlinks and refuses a
// result outside root, then opens it. Between the check and the open a link
// may be swapped in; only kernels without openat2 rely on it.
func openChecked(root, rel string) (*os.File, error) {
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, err
	}
	p, err := filepath.EvalSymlinks(filepath.Join(root, rel))
	if err != nil {
		return nil, err
	}
	if p != realRoot && !strings.HasPrefix(p, realRoot+string(filepath.Separator)) {
		return nil, errOutside
	}
	return os.Open(p)
}

// authorizeSandbox is access_sandboxes (--acls): a path within an
// executor's sandbox is served to whom the ACLs let see the sandboxes of
// the user that executor runs as, and is then opened beneath that
// executor's directory, so that a symbolic link a task planted does not
// lead into another executor's sandbox. Above the executors (a framework's
// or the agent's directory) only a principal allowed every sandbox is
// served. root and rel are narrowed in place.
func (a *Agent) authorizeSandbox(r *http.Request, root, rel *string, p string) *httpError {
	acls := a.cfg.acls
	if acls == nil {
		return nil
	}
	principal := auth.PrincipalOf(r)
	parts := strings.Split(*rel, "/")
	// Beneath slaves/ a path starts with the agent ID.
	i := 0
	if *root == filepath.Join(a.cfg.WorkDir, "slaves") {
		i = 1
	}
	if len(parts) < i+4 || parts[i] != "frameworks" || parts[i+2] != "executors" {
		if !acls.AllowedAny(authz.AccessSandbox, principal) {
			return &httpError{http.StatusForbidden, fmt.Sprintf("Not authorized to access %s: only the sandboxes of single executors are served to principal '%s'", p, principal)}
		}
		return nil
	}
	fwID, exID := parts[i+1], parts[i+3]
	exDir := filepath.Join(*root, filepath.Join(parts[:i+4]...))
	run := "latest"
	if len(parts) > i+5 && parts[i+4] == "runs" {
		run = parts[i+5]
	}
	// The executor the agent knows is judged by the user it runs as, but
	// only for its own run: an earlier run of the same executor ID (under
	// this agent ID or an older one) may have run as someone else.
	user, dir, known := a.executorUser(fwID, exID)
	if known && run != "latest" && filepath.Join(exDir, "runs", run) != dir {
		known = false
	}
	if !known {
		// An executor that ended is forgotten; its sandbox still belongs to
		// the user it ran as (the agent gives it to that user).
		user, known = sandboxOwner(filepath.Join(exDir, "runs", run))
	}
	allowed := acls.AllowedAny(authz.AccessSandbox, principal)
	if known {
		allowed = acls.Allowed(authz.AccessSandbox, principal, user)
	}
	if !allowed {
		return &httpError{http.StatusForbidden, fmt.Sprintf("Not authorized to access the sandbox of executor %s of framework %s", exID, fwID)}
	}
	*root = exDir
	*rel = strings.Join(parts[i+4:], "/")
	if *rel == "" {
		*rel = "."
	}
	return nil
}

// executorUser is the user an executor the agent knows runs as (its
// command's, else its framework's) and its run's sandbox.
func (a *Agent) executorUser(fwID, exID string) (user, dir string, known bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fw := a.frameworks[fwID]
	if fw == nil {
		return "", "", false
	}
	ex := fw.executors[exID]
	if ex == nil {
		for _, e := range fw.ended {
			if e.id == exID {
				ex = e
			}
		}
	}
	if ex == nil {
		return "", "", false
	}
	return ex.runsAs(), ex.directory, true
}

// runsAs is the user the executor runs as, as the ACLs judge it: its
// command's, else its framework's.
func (ex *executor) runsAs() string {
	if u := ex.info.GetCommand().GetUser(); u != "" {
		return u
	}
	return ex.fw.info.GetUser()
}

// viewer judges what a reader of the agent's /state may see (--acls).
type viewer struct{ authz.Viewer }

func (a *Agent) viewerOf(r *http.Request) viewer { return viewer{a.cfg.acls.ViewerOf(r)} }

func (v viewer) framework(fw *framework) bool { return v.Sees(authz.ViewFramework, fw.info.GetUser()) }

func (v viewer) executor(ex *executor) bool { return v.Sees(authz.ViewExecutor, ex.runsAs()) }

func (v viewer) task(ex *executor, t *task) bool { return v.Sees(authz.ViewTask, t.runsAs(ex)) }

// runsAs is the user the task runs as, as the ACLs judge it and Mesos'
// Task.user says: its command's, else its executor's.
func (t *task) runsAs(ex *executor) string {
	if u := t.info.GetCommand().GetUser(); u != "" {
		return u
	}
	return ex.runsAs()
}
