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
	// Inconsistencies lists the damage recovery went past, each naming its
	// file: in non-strict mode everything it skipped, cut or ignored; in
	// strict mode the damage inside executors (each also listed on its
	// Executor.Damaged) and a damaged boot id. Other damage fails strict
	// recovery.
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
	ID string
	// Info is nil only in a damaged executor whose executor.info is.
	Info *mesos.ExecutorInfo
	Runs map[string]*Run
	// Damaged is set by strict recovery when a checkpoint inside the
	// executor cannot be trusted — its executor.info, a run's run.info or
	// completed sentinel, a task's task.info, an update stream damaged
	// anywhere but in a torn tail, or a directory that cannot be read —
	// and lists that damage. Such an executor is unrecoverable: the agent
	// treats its containers as orphans and reports its unfinished tasks
	// gone. What could be read of it is here all the same, so that those
	// tasks can be named: a Run's Info or a Task's Record may be nil (a
	// task's ID is then its directory's name) and a Task's Updates are
	// those before the damage in its stream.
	Damaged []Inconsistency
}

// Run is a recovered run of an executor: one container.
type Run struct {
	ContainerID string
	// Info is nil only in a damaged executor (Executor.Damaged).
	Info *RunInfo
	// Completed is set once MarkRunCompleted was recorded.
	Completed bool
	Tasks     map[string]*Task
}

// Task is a recovered task and its update stream.
type Task struct {
	ID string
	// Record is nil only in a damaged executor (Executor.Damaged).
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
// cut off with a warning in either mode, as Mesos does.
//
// Other damage (a torn or corrupt whole file, a corrupt record, a directory
// whose info file is missing though it holds more, an acknowledgement of
// nothing) is handled by where it is and by mode:
//
//   - Node level — slave.info, the latest link, a framework.info, a
//     directory of frameworks or executors that cannot be read: strict
//     recovery fails with an error naming the file. Without these the agent
//     cannot register as itself, or re-register a framework with the master
//     (FrameworkInfo is sent as is) or know its checkpoint and partition-
//     aware capabilities, which decide the fate of every task of it.
//   - Inside one executor (see Executor.Damaged): strict recovery marks that
//     executor unrecoverable, reads on what it can of it, and goes on with
//     the rest. Mesos' --strict aborts the agent on any of these; here one
//     executor's records cannot take the node down, and the executor's
//     tasks are still reported, with the damaged file named.
//   - The boot id: in either mode the damage is listed and the runs say
//     instead whether the node rebooted (an unfinished run recorded in
//     another boot than this one). It is the one record the agent may
//     rewrite in place on a full disk (space.go).
//
// Non-strict recovery logs each one, lists it in State.Inconsistencies and
// skips it — the damaged entity with everything under it, or a stream's
// records from the bad one on, which are cut off so later appends continue
// a clean stream.
//
// Either way Recover deletes what unfinished writes left and nothing acted
// on: directories without their first file, and the removal trash. Temp
// files of whole-file writes are never read. Recover writes nothing else
// and needs no free space.
func (s *Store) Recover(ctx context.Context, strict bool) (*State, error) {
	st := &State{Frameworks: map[string]*Framework{}}
	cur, err := s.CurrentBootID()
	if err != nil {
		return nil, err
	}
	st.CurrentBootID = cur
	w := &walker{s: s, ctx: ctx, strict: strict, st: st}
	r := &reader{w: w, buf: make([]byte, 0, 8<<10)}

	s.emptyTrash()
	bootPath := filepath.Join(s.dir, bootIDFile)
	var payload []byte
	bootDamaged := false
	payload, r.buf, err = readValue(bootPath, r.buf)
	switch {
	case err == nil:
		st.BootID = string(payload)
		st.Rebooted = st.BootID != cur
	case errors.Is(err, fs.ErrNotExist):
	default:
		bootDamaged = true
		s.log.Warn("damaged boot id; whether the node rebooted is read from the runs' boot ids", "path", bootPath, "err", err)
		st.Inconsistencies = append(st.Inconsistencies, Inconsistency{Path: bootPath, Err: err})
	}
	defer func() {
		if bootDamaged {
			st.Rebooted = st.Rebooted || otherBoot(st, cur)
		}
	}()

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

// otherBoot reports whether an unfinished run was started in another boot
// than cur: then the node rebooted since, and none of its processes lives.
func otherBoot(st *State, cur string) bool {
	for _, fw := range st.Frameworks {
		for _, ex := range fw.Executors {
			for _, run := range ex.Runs {
				if b := run.Info.GetBootId(); !run.Completed && b != "" && b != cur {
					return true
				}
			}
		}
	}
	return false
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
	// ex is the executor being read, while one is: damage found then is
	// that executor's (Executor.Damaged) in strict mode.
	ex *Executor
}

// problem handles one inconsistency. Outside an executor it is fatal in
// strict mode; inside one it marks the executor damaged and reading goes
// on (salvage). In non-strict mode it is recorded and the caller skips the
// damaged entity.
func (r *reader) problem(path string, err error) error {
	w := r.w
	switch {
	case w.strict && r.ex == nil:
		return err
	case w.strict:
		w.s.log.Error("damaged checkpoint: its executor cannot be recovered (strict recovery)", "executor", r.ex.ID, "path", path, "err", err)
		r.ex.Damaged = append(r.ex.Damaged, Inconsistency{Path: path, Err: err})
	default:
		w.s.log.Warn("checkpoint inconsistency skipped (non-strict recovery)", "path", path, "err", err)
	}
	w.mu.Lock()
	w.st.Inconsistencies = append(w.st.Inconsistencies, Inconsistency{Path: path, Err: err})
	w.mu.Unlock()
	return nil
}

// salvage reports whether reading goes on past damage, with what can be
// read (strict recovery inside an executor), rather than skipping the
// damaged entity (non-strict recovery).
func (r *reader) salvage() bool { return r.w.strict && r.ex != nil }

func (w *walker) count(n *int) {
	w.mu.Lock()
	*n++
	w.mu.Unlock()
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

// found is what reading an entity's info file found.
type found int

const (
	foundOK      found = iota
	foundNone          // never written: the entity is dropped
	foundDamaged       // damage, handled by problem
)

// missingInfo handles an entity directory without its info file. With
// nothing else in it, the agent died between creating it and renaming the
// file in, so nothing acted on it: it is dropped. With more in it,
// something that should not exist does.
func (r *reader) missingInfo(dir, infoName string) (found, error) {
	w := r.w
	names, err := readNames(dir)
	if err != nil {
		return foundDamaged, r.problem(dir, fmt.Errorf("recovering %s: %w", dir, err))
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
		return foundNone, nil
	}
	path := filepath.Join(dir, infoName)
	return foundDamaged, r.problem(path, &CorruptError{Path: path, Reason: fmt.Sprintf("missing, but its directory holds %v", children)})
}

// info reads an entity's info file into m and checks that it names the
// entity its directory does (id, as idOf reads it from m).
func (r *reader) info(dir, name, what, id string, m proto.Message, idOf func() string) (found, error) {
	path := filepath.Join(dir, name)
	var err error
	r.buf, err = readMessage(path, r.buf, m)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return r.missingInfo(dir, name)
	case err != nil:
		return foundDamaged, r.problem(path, err)
	}
	if got := idOf(); got != id {
		// A directory renamed or copied by hand.
		return foundDamaged, r.problem(path, &CorruptError{Path: path, Reason: fmt.Sprintf("records %s %q", what, got)})
	}
	return foundOK, nil
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
		return r.problem(path, err)
	}
	if got := info.GetId().GetValue(); got != w.st.AgentID {
		return r.problem(path, &CorruptError{Path: path, Reason: fmt.Sprintf("records agent %q", got)})
	}
	w.st.Agent = info
	fws := filepath.Join(dir, frameworksDir)
	ids, err := readNames(fws)
	if err != nil {
		return r.problem(fws, fmt.Errorf("recovering frameworks: %w", err))
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
	if f, err := r.info(dir, frameworkInfoFile, "framework", id, info, func() string { return info.GetId().GetValue() }); f != foundOK {
		return err
	}
	fw := &Framework{ID: id, Info: info, Executors: map[string]*Executor{}}
	exs := filepath.Join(dir, executorsDir)
	ids, err := readNames(exs)
	if err != nil {
		return r.problem(exs, fmt.Errorf("recovering executors: %w", err))
	}
	for _, ex := range ids {
		r.w.jobs = append(r.w.jobs, executorJob{fw: fw, dir: filepath.Join(exs, ex), id: ex})
	}
	r.w.st.Frameworks[id] = fw
	return nil
}

// executor reads one executor with its runs. Problems found from here on
// are the executor's (reader.problem).
func (r *reader) executor(fw *Framework, dir, id string) error {
	ex := &Executor{ID: id, Runs: map[string]*Run{}}
	r.ex = ex
	defer func() { r.ex = nil }()
	info := &mesos.ExecutorInfo{}
	switch f, err := r.info(dir, executorInfoFile, "executor", id, info, func() string { return info.GetExecutorId().GetValue() }); {
	case err != nil:
		return err
	case f == foundNone:
		return nil
	case f == foundDamaged && !r.salvage():
		return nil
	case f == foundOK:
		ex.Info = info
	}
	runs := filepath.Join(dir, runsDir)
	ids, err := readNames(runs)
	if err != nil {
		if err := r.problem(runs, fmt.Errorf("recovering runs: %w", err)); err != nil || !r.salvage() {
			return err
		}
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
	run := &Run{ContainerID: id, Tasks: map[string]*Task{}}
	switch f, err := r.info(dir, runInfoFile, "container", id, info, func() string { return info.GetContainerId().GetValue() }); {
	case err != nil:
		return err
	case f == foundNone:
		return nil
	case f == foundDamaged && !r.salvage():
		return nil
	case f == foundOK:
		run.Info = info
	}
	cpath := filepath.Join(dir, runCompletedFile)
	var err error
	var done bool
	done, r.buf, err = readSentinel(cpath, r.buf)
	switch {
	case err == nil:
		run.Completed = done
	default:
		// A damaged sentinel still says the run was ending; it is taken as
		// completed rather than waited for.
		run.Completed = true
		if err := r.problem(cpath, err); err != nil {
			return err
		}
	}
	tasks := filepath.Join(dir, tasksDir)
	ids, err := readNames(tasks)
	if err != nil {
		if err := r.problem(tasks, fmt.Errorf("recovering tasks: %w", err)); err != nil || !r.salvage() {
			return err
		}
	}
	for _, t := range ids {
		if err := r.task(run, filepath.Join(tasks, t), t); err != nil {
			return err
		}
	}
	ex.Runs[id] = run
	return nil
}

// readSentinel reads a run's completed sentinel: an empty file, or (as
// earlier versions wrote it) one empty whole-file record.
func readSentinel(path string, buf []byte) (exists bool, b []byte, err error) {
	b, err = readFile(path, buf)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, b, nil
	case err != nil:
		return false, b, err
	case len(b) == 0:
		return true, b, nil
	}
	_, b, err = readValue(path, b)
	return err == nil, b, err
}

func (r *reader) task(run *Run, dir, id string) error {
	rec := &TaskRecord{}
	t := &Task{ID: id}
	switch f, err := r.info(dir, taskInfoFile, "task", id, rec, func() string { return rec.GetInfo().GetTaskId().GetValue() }); {
	case err != nil:
		return err
	case f == foundNone:
		return nil
	case f == foundDamaged && !r.salvage():
		return nil
	case f == foundOK:
		t.Record = rec
	}
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
		return r.problem(path, err)
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
					return r.problem(path, cerr)
				}
				w.s.log.Warn("cut off the torn last record of a status update stream (an append that never finished)",
					"path", path, "offset", off, "dropped_bytes", len(b)-off, "reason", fe.reason)
				return nil
			}
			if r.salvage() {
				// Strict: the executor is unrecoverable; the stream is left
				// as it is for whoever looks into it, its readable prefix
				// kept to name and report the task.
				return r.problem(path, cerr)
			}
			// Nothing after a bad frame can be found reliably (its length
			// is untrusted). Cut the stream back to its whole prefix so the
			// next append starts on a record boundary.
			w.count(&w.st.Truncated)
			if err := truncate(path, int64(off)); err != nil {
				cerr.Reason += "; and cutting it off failed: " + err.Error()
			}
			return r.problem(path, cerr)
		}
		// A frame that is whole but whose content is wrong costs only that
		// record: the framing around it is intact.
		if err := record(t, path, off, kind, payload); err != nil {
			if err := r.problem(path, err); err != nil {
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
