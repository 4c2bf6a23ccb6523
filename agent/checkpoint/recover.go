package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

// State is what Recover found: the latest agent and everything it had.
type State struct {
	// BootID is the boot recorded by the last WriteBootID ("" if none);
	// CurrentBootID is this boot's. Rebooted means they differ: no process
	// of any recorded run can still be alive.
	BootID        string
	CurrentBootID string
	Rebooted      bool
	// AgentID is empty when no agent was ever recorded (a fresh work_dir).
	AgentID    string
	Agent      *mesos.AgentInfo
	Frameworks map[string]*Framework
	// Inconsistencies lists what non-strict recovery skipped, cut or
	// ignored; each names its file. Strict recovery fails on the first.
	Inconsistencies []Inconsistency
	// Truncated counts update streams cut back to their last whole record:
	// torn tails (an append cut short by a crash; cut in strict mode too,
	// logged, and not an inconsistency) and, in non-strict mode, streams
	// damaged in the middle.
	Truncated int
	// Incomplete counts directories dropped because the agent died between
	// creating them and writing their first file: nothing had acted on them.
	Incomplete int
}

// Framework is a recovered framework.
type Framework struct {
	ID        string
	Info      *mesos.FrameworkInfo
	Executors map[string]*Executor
}

// Executor is a recovered executor.
type Executor struct {
	ID   string
	Info *mesos.ExecutorInfo
	Runs map[string]*Run
}

// Run is a recovered run of an executor: one container.
type Run struct {
	ContainerID string
	Info        *RunInfo
	// Completed is set once MarkRunCompleted was recorded.
	Completed bool
	Tasks     map[string]*Task
}

// Task is a recovered task and its update stream.
type Task struct {
	ID      string
	Record  *TaskRecord
	Updates []Update
}

// Update is one recorded status update and whether it was acknowledged.
type Update struct {
	Update *cluster.StatusUpdate
	Acked  bool
}

// Pending returns the task's unacknowledged updates, oldest first: what the
// status update manager must (re)send, in this order.
func (t *Task) Pending() []*cluster.StatusUpdate {
	var out []*cluster.StatusUpdate
	for _, u := range t.Updates {
		if !u.Acked {
			out = append(out, u.Update)
		}
	}
	return out
}

// LatestState is the state of the task's last recorded update; ok is false
// when it has none (it was recorded but never reported on).
func (t *Task) LatestState() (state mesos.TaskState, ok bool) {
	if len(t.Updates) == 0 {
		return 0, false
	}
	return t.Updates[len(t.Updates)-1].Update.GetStatus().GetState(), true
}

// Inconsistency is one thing non-strict recovery did not trust.
type Inconsistency struct {
	Path string
	Err  error
}

func (i Inconsistency) String() string { return i.Err.Error() }

// Recover reads the latest agent's checkpoints. A torn last record of an
// update stream — an append a crash cut short, nothing acted on yet — is
// cut off with a warning in either mode, as Mesos does. In strict mode the
// first inconsistency (a torn or corrupt whole file, a corrupt record, a
// directory whose info file is missing though it holds more, an
// acknowledgement of nothing) is returned as an error naming the file. Otherwise each one is logged,
// listed in State.Inconsistencies and skipped — the damaged entity with
// everything under it, or a stream's records from the bad one on, which are
// cut off so later appends continue a clean stream.
//
// Either way Recover deletes what unfinished writes left and nothing acted
// on: directories without their first file, and the removal trash. Temp
// files of whole-file writes are never read.
func (s *Store) Recover(ctx context.Context, strict bool) (*State, error) {
	st := &State{Frameworks: map[string]*Framework{}}
	cur, err := s.CurrentBootID()
	if err != nil {
		return nil, err
	}
	st.CurrentBootID = cur
	w := &walker{s: s, ctx: ctx, strict: strict, st: st}
	r := &reader{w: w, buf: make([]byte, 0, 8<<10)}

	w.emptyTrash()
	bootPath := filepath.Join(s.dir, bootIDFile)
	var payload []byte
	payload, r.buf, err = readValue(bootPath, r.buf)
	switch {
	case err == nil:
		st.BootID = string(payload)
		st.Rebooted = st.BootID != cur
	case errors.Is(err, fs.ErrNotExist):
	default:
		if err := w.problem(bootPath, err); err != nil {
			return nil, err
		}
	}

	link := filepath.Join(s.dir, slavesDir, latestLink)
	id, err := os.Readlink(link)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("recovering %s: %w", link, err)
	}
	dir, err := s.path(Key{Agent: id}, levelAgent)
	if err != nil {
		return nil, fmt.Errorf("recovering %s: %w", link, err)
	}
	st.AgentID = id
	if err := r.agent(dir); err != nil {
		return nil, err
	}
	if err := w.runJobs(); err != nil {
		return nil, err
	}
	// Executors are read in parallel; report in a stable order.
	sort.Slice(st.Inconsistencies, func(i, j int) bool { return st.Inconsistencies[i].Path < st.Inconsistencies[j].Path })
	return st, nil
}

// walker is one recovery's shared state. Executors are read by several
// goroutines (reader): recovery time is system calls — several per file and
// directory — and they overlap well.
type walker struct {
	s      *Store
	ctx    context.Context
	strict bool

	mu   sync.Mutex // guards st (maps, lists, counters) from readers
	st   *State
	jobs []executorJob
}

type executorJob struct {
	fw  *Framework
	dir string
	id  string
}

// reader reads files for one goroutine, reusing its buffer.
type reader struct {
	w   *walker
	buf []byte
}

// problem handles one inconsistency: fatal in strict mode, else recorded.
func (w *walker) problem(path string, err error) error {
	if w.strict {
		return err
	}
	w.s.log.Warn("checkpoint inconsistency skipped (non-strict recovery)", "path", path, "err", err)
	w.mu.Lock()
	w.st.Inconsistencies = append(w.st.Inconsistencies, Inconsistency{Path: path, Err: err})
	w.mu.Unlock()
	return nil
}

func (w *walker) count(n *int) {
	w.mu.Lock()
	*n++
	w.mu.Unlock()
}

func (w *walker) emptyTrash() {
	trash := filepath.Join(w.s.dir, trashDir)
	names, _ := readNames(trash)
	for _, n := range names {
		if err := os.RemoveAll(filepath.Join(trash, n)); err != nil {
			w.s.log.Warn("emptying checkpoint trash", "path", filepath.Join(trash, n), "err", err)
		}
	}
}

// runJobs reads the queued executors on up to GOMAXPROCS goroutines; in
// strict mode the first error stops them all.
func (w *walker) runJobs() error {
	workers := min(runtime.GOMAXPROCS(0), 8, len(w.jobs))
	var (
		next     atomic.Int64
		failed   atomic.Bool
		firstErr error
		errOnce  sync.Once
		wg       sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			r := &reader{w: w, buf: make([]byte, 0, 8<<10)}
			for !failed.Load() {
				i := int(next.Add(1)) - 1
				if i >= len(w.jobs) {
					return
				}
				err := w.ctx.Err()
				if err == nil {
					j := w.jobs[i]
					err = r.executor(j.fw, j.dir, j.id)
				}
				if err != nil {
					failed.Store(true)
					errOnce.Do(func() { firstErr = err })
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

// missingInfo handles an entity directory without its info file. With
// nothing else in it, the agent died between creating it and renaming the
// file in, so nothing acted on it: it is dropped. With more in it,
// something that should not exist does.
func (w *walker) missingInfo(dir, infoName string) error {
	names, err := readNames(dir)
	if err != nil {
		return w.problem(dir, fmt.Errorf("recovering %s: %w", dir, err))
	}
	var children []string
	for _, n := range names {
		if n != infoName+tmpSuffix {
			children = append(children, n)
		}
	}
	if len(children) == 0 {
		w.count(&w.st.Incomplete)
		w.s.log.Info("dropping checkpoint directory that never got its first file", "path", dir)
		if err := os.RemoveAll(dir); err != nil {
			w.s.log.Warn("removing incomplete checkpoint directory", "path", dir, "err", err)
		}
		return nil
	}
	path := filepath.Join(dir, infoName)
	return w.problem(path, &CorruptError{Path: path, Reason: fmt.Sprintf("missing, but its directory holds %v", children)})
}

// info reads an entity's info file into m. ok is false when the entity is
// to be skipped (err is non-nil only when recovery must stop).
func (r *reader) info(dir, name string, m proto.Message) (ok bool, err error) {
	path := filepath.Join(dir, name)
	r.buf, err = readMessage(path, r.buf, m)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, r.w.missingInfo(dir, name)
	}
	return false, r.w.problem(path, err)
}

// mismatch reports an info file naming another entity than its directory
// (a directory renamed or copied by hand).
func (r *reader) mismatch(dir, name, what, got string) error {
	path := filepath.Join(dir, name)
	return r.w.problem(path, &CorruptError{Path: path, Reason: fmt.Sprintf("records %s %q", what, got)})
}

func (r *reader) agent(dir string) error {
	w := r.w
	info := &mesos.AgentInfo{}
	path := filepath.Join(dir, agentInfoFile)
	var err error
	r.buf, err = readMessage(path, r.buf, info)
	if err != nil {
		// latest moves only after slave.info is durable, so even a missing
		// one is damage.
		return w.problem(path, err)
	}
	if got := info.GetId().GetValue(); got != w.st.AgentID {
		return r.mismatch(dir, agentInfoFile, "agent", got)
	}
	w.st.Agent = info
	fws := filepath.Join(dir, frameworksDir)
	ids, err := readNames(fws)
	if err != nil {
		return w.problem(fws, fmt.Errorf("recovering frameworks: %w", err))
	}
	for _, id := range ids {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		if err := r.framework(filepath.Join(fws, id), id); err != nil {
			return err
		}
	}
	return nil
}

// framework reads a framework and queues its executors for runJobs.
func (r *reader) framework(dir, id string) error {
	info := &mesos.FrameworkInfo{}
	if ok, err := r.info(dir, frameworkInfoFile, info); !ok {
		return err
	}
	if got := info.GetId().GetValue(); got != id {
		return r.mismatch(dir, frameworkInfoFile, "framework", got)
	}
	fw := &Framework{ID: id, Info: info, Executors: map[string]*Executor{}}
	exs := filepath.Join(dir, executorsDir)
	ids, err := readNames(exs)
	if err != nil {
		return r.w.problem(exs, fmt.Errorf("recovering executors: %w", err))
	}
	for _, ex := range ids {
		r.w.jobs = append(r.w.jobs, executorJob{fw: fw, dir: filepath.Join(exs, ex), id: ex})
	}
	r.w.st.Frameworks[id] = fw
	return nil
}

func (r *reader) executor(fw *Framework, dir, id string) error {
	info := &mesos.ExecutorInfo{}
	if ok, err := r.info(dir, executorInfoFile, info); !ok {
		return err
	}
	if got := info.GetExecutorId().GetValue(); got != id {
		return r.mismatch(dir, executorInfoFile, "executor", got)
	}
	ex := &Executor{ID: id, Info: info, Runs: map[string]*Run{}}
	runs := filepath.Join(dir, runsDir)
	ids, err := readNames(runs)
	if err != nil {
		return r.w.problem(runs, fmt.Errorf("recovering runs: %w", err))
	}
	for _, c := range ids {
		if err := r.run(ex, filepath.Join(runs, c), c); err != nil {
			return err
		}
	}
	r.w.mu.Lock()
	fw.Executors[id] = ex
	r.w.mu.Unlock()
	return nil
}

func (r *reader) run(ex *Executor, dir, id string) error {
	info := &RunInfo{}
	if ok, err := r.info(dir, runInfoFile, info); !ok {
		return err
	}
	if got := info.GetContainerId().GetValue(); got != id {
		return r.mismatch(dir, runInfoFile, "container", got)
	}
	run := &Run{ContainerID: id, Info: info, Tasks: map[string]*Task{}}
	cpath := filepath.Join(dir, runCompletedFile)
	var err error
	_, r.buf, err = readValue(cpath, r.buf)
	switch {
	case err == nil:
		run.Completed = true
	case errors.Is(err, fs.ErrNotExist):
	default:
		// A damaged sentinel still says the run was ending; in non-strict
		// mode it is taken as completed rather than waited for.
		run.Completed = true
		if err := r.w.problem(cpath, err); err != nil {
			return err
		}
	}
	tasks := filepath.Join(dir, tasksDir)
	ids, err := readNames(tasks)
	if err != nil {
		return r.w.problem(tasks, fmt.Errorf("recovering tasks: %w", err))
	}
	for _, t := range ids {
		if err := r.task(run, filepath.Join(tasks, t), t); err != nil {
			return err
		}
	}
	ex.Runs[id] = run
	return nil
}

func (r *reader) task(run *Run, dir, id string) error {
	rec := &TaskRecord{}
	if ok, err := r.info(dir, taskInfoFile, rec); !ok {
		return err
	}
	if got := rec.GetInfo().GetTaskId().GetValue(); got != id {
		return r.mismatch(dir, taskInfoFile, "task", got)
	}
	t := &Task{ID: id, Record: rec}
	if err := r.updates(filepath.Join(dir, taskUpdatesFile), t); err != nil {
		return err
	}
	run.Tasks[id] = t
	return nil
}

// updates replays a task's update stream; a missing one is empty.
func (r *reader) updates(path string, t *Task) error {
	w := r.w
	b, err := readFile(path, r.buf)
	r.buf = b
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return w.problem(path, err)
	}
	for off := 0; off < len(b); {
		kind, payload, n, fe := parseFrame(b[off:])
		if fe != nil {
			cerr := &CorruptError{Path: path, Offset: int64(off), Torn: fe.torn, Reason: fe.reason}
			if fe.torn && !holdsRecord(b[off+1:]) {
				// A torn tail: the last append never finished (the agent was
				// killed in the middle of it), so nothing it said was acted
				// on — an update is forwarded, an ack dropped from the retry
				// queue, only once its append is durable. As Mesos does, it
				// is cut off with a warning, in strict mode too.
				w.count(&w.st.Truncated)
				if err := truncate(path, int64(off)); err != nil {
					cerr.Reason += "; and cutting it off failed: " + err.Error()
					return w.problem(path, cerr)
				}
				w.s.log.Warn("cut off the torn last record of a status update stream (an append that never finished)",
					"path", path, "offset", off, "dropped_bytes", len(b)-off, "reason", fe.reason)
				return nil
			}
			if w.strict {
				return cerr
			}
			// Nothing after a bad frame can be found reliably (its length
			// is untrusted). Cut the stream back to its whole prefix so the
			// next append starts on a record boundary.
			w.count(&w.st.Truncated)
			if err := truncate(path, int64(off)); err != nil {
				cerr.Reason += "; and cutting it off failed: " + err.Error()
			}
			return w.problem(path, cerr)
		}
		// A frame that is whole but whose content is wrong costs only that
		// record: the framing around it is intact.
		if err := record(t, path, off, kind, payload); err != nil {
			if err := w.problem(path, err); err != nil {
				return err
			}
		}
		off += n
	}
	return nil
}

func record(t *Task, path string, off int, kind byte, payload []byte) error {
	bad := func(format string, args ...any) error {
		return &CorruptError{Path: path, Offset: int64(off), Reason: fmt.Sprintf(format, args...)}
	}
	switch kind {
	case kindUpdate:
		u := &cluster.StatusUpdate{}
		if err := proto.Unmarshal(payload, u); err != nil {
			return bad("unmarshalling update: %v", err)
		}
		if got := u.GetStatus().GetTaskId().GetValue(); got != t.ID {
			return bad("update for task %q", got)
		}
		t.Updates = append(t.Updates, Update{Update: u})
	case kindAck:
		ack := &mesos.UUID{}
		if err := proto.Unmarshal(payload, ack); err != nil {
			return bad("unmarshalling acknowledgement: %v", err)
		}
		for i := range t.Updates {
			if bytes.Equal(t.Updates[i].Update.GetStatus().GetUuid(), ack.GetValue()) {
				// A repeated ack of the same update changes nothing.
				t.Updates[i].Acked = true
				return nil
			}
		}
		return bad("acknowledgement of update %x, which the stream does not hold", ack.GetValue())
	default:
		return bad("record kind %d in an update stream", kind)
	}
	return nil
}

// holdsRecord reports whether a whole, CRC-valid record starts anywhere in b.
// A record that seems to run past the end of the stream is a torn tail only
// if nothing whole follows its start: an append writes one record, so a
// prefix of it cannot hold another, whereas a length field damaged in the
// middle of the stream leaves the later records intact behind it.
func holdsRecord(b []byte) bool {
	for i := 0; i+headerSize <= len(b); i++ {
		i += max(0, bytes.IndexByte(b[i:], frameMagic))
		if b[i] != frameMagic {
			return false
		}
		if _, _, _, fe := parseFrame(b[i:]); fe == nil {
			return true
		}
	}
	return false
}

func truncate(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
}
