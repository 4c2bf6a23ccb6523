// Package checkpoint is the agent's durable record of what it runs, kept
// under <work_dir>/meta in Mesos' layout so that an agent killed at any
// instruction comes back knowing every framework, executor, container, task
// and unacknowledged status update it had:
//
//	meta/boot_id                                     the boot the agent last recovered in
//	meta/reserve                                     preallocated room for writes on a full disk (space.go)
//	meta/slaves/latest -> <agent>                    symlink: the agent ID to recover
//	meta/slaves/<agent>/slave.info                   mesos.v1.AgentInfo
//	  frameworks/<fw>/framework.info                 mesos.v1.FrameworkInfo
//	    executors/<ex>/executor.info                 mesos.v1.ExecutorInfo
//	      runs/<container>/run.info                  RunInfo (no pid: cgroups and pidfds find processes)
//	      runs/<container>/completed                 sentinel (an empty file): the run ended
//	        tasks/<task>/task.info                   TaskRecord
//	        tasks/<task>/task.updates                append-only StatusUpdate and ack records
//
//	meta/journal/<seq>                               write-ahead journal of everything below frameworks/ (journal.go)
//
// Every whole file is written to a temporary file in the same directory and
// renamed over the old one, so a reader sees the old content or the new,
// never a mix (the one exception, the boot id on a full disk, is in
// space.go). Below frameworks/ — what changes with every task — a change is
// durable once its record is in the journal, which shares one fdatasync
// among all the writes that arrive together; the agent-level files are
// fsynced, renamed and their directory fsynced one by one. Every record is
// framed with its length and a CRC32C (record.go) so what a crash or a bad
// disk leaves behind is detected and reported, never trusted.
package checkpoint

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/corral/corral/api/cluster"
	"github.com/corral/corral/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

// DefaultBootIDPath is where Linux publishes the random ID of this boot.
const DefaultBootIDPath = "/proc/sys/kernel/random/boot_id"

const (
	metaDir           = "meta"
	bootIDFile        = "boot_id"
	slavesDir         = "slaves"
	latestLink        = "latest"
	trashDir          = ".trash"
	agentInfoFile     = "slave.info"
	frameworksDir     = "frameworks"
	frameworkInfoFile = "framework.info"
	executorsDir      = "executors"
	executorInfoFile  = "executor.info"
	runsDir           = "runs"
	runInfoFile       = "run.info"
	runCompletedFile  = "completed"
	tasksDir          = "tasks"
	taskInfoFile      = "task.info"
	taskUpdatesFile   = "task.updates"
	// tmpSuffix names the file a whole-file write goes to before its
	// rename: "<name>.tmp". One fixed name per file (writes of one file are
	// serialized) means a crash leftover is overwritten by the next write of
	// that file and goes with its entity's directory, so recovery never has
	// to list directories to hunt for leftovers — and never reads them.
	tmpSuffix = ".tmp"
)

// Options configures a Store.
type Options struct {
	Log *slog.Logger
	// BootIDPath overrides DefaultBootIDPath (tests simulate reboots).
	BootIDPath string
	// Reserve is how many bytes meta/reserve keeps for the writes that must
	// not fail on a full disk (space.go); 0 means DefaultReserve, a
	// negative value none.
	Reserve int64
	// SpaceWait bounds how long such a write waits for space once the
	// reserve is spent; 0 means DefaultSpaceWait.
	SpaceWait time.Duration
}

// Store reads and writes the checkpoints under one work_dir. Its methods are
// safe for concurrent use; writes to one file (one task's update stream)
// are serialized, writes to different files run in parallel.
type Store struct {
	dir        string
	bootIDPath string
	log        *slog.Logger
	// fileMu serializes writes per file (appends to one update stream,
	// rewrites of one info file through its fixed temp name). Striped by
	// path hash rather than a map of per-file locks, so nothing grows or
	// needs pruning as tasks come and go.
	fileMu [64]sync.Mutex
	// noSync skips fsyncs. Only this package's tests and benchmark set-up
	// use it, to build large trees quickly; nothing outside can set it.
	noSync bool
	// syncs counts the fsyncs and fdatasyncs of records and directories.
	syncs atomic.Uint64
	// reserve is the room kept for writes on a full disk (space.go).
	reserve   reserve
	spaceWait time.Duration
	// journal makes the tree below frameworks/ durable. It is nil when
	// Open could not start one, or once it was retired because the disk
	// was full with the reserve spent (commit): then, until the next
	// Open, every write is synced on its own as the agent-level files are.
	journal atomic.Pointer[journal]
}

// Key names a checkpointed entity by its chain of IDs. Each method uses
// the fields down to its level (PutExecutor: Agent, Framework, Executor) and
// ignores the rest.
type Key struct {
	Agent     string
	Framework string
	Executor  string
	// Container is the run: the executor's container ID.
	Container string
	Task      string
}

// Open returns the store of workDir, creating <workDir>/meta if needed.
func Open(workDir string, o Options) (*Store, error) {
	s := &Store{dir: filepath.Join(workDir, metaDir), bootIDPath: o.BootIDPath, log: o.Log}
	if s.bootIDPath == "" {
		s.bootIDPath = DefaultBootIDPath
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.spaceWait = o.SpaceWait
	if s.spaceWait <= 0 {
		s.spaceWait = DefaultSpaceWait
	}
	s.reserve.path = filepath.Join(s.dir, reserveFile)
	s.reserve.target = o.Reserve
	if s.reserve.target == 0 {
		s.reserve.target = DefaultReserve
	}
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return nil, fmt.Errorf("checkpoint directory %s: %w", s.dir, err)
	}
	// mkdirs, not MkdirAll: a new meta/ must be durable in work_dir before
	// anything durable is written inside it.
	if err := s.mkdirs(s.dir); err != nil {
		return nil, err
	}
	if err := s.mkdirs(filepath.Join(s.dir, trashDir)); err != nil {
		if !isNoSpace(err) {
			return nil, err
		}
		// A full disk must not stop the agent; a removal makes it later.
		s.log.Warn("no space to create the checkpoint trash yet", "err", err)
	}
	if s.reserve.target < 0 {
		// None: a reserve an earlier run kept is given back. (A smaller one
		// than before is cut to size by fillLocked.)
		s.reserve.target = 0
		_ = os.Remove(s.reserve.path)
	}
	s.reserve.mu.Lock()
	if !s.reserve.fillLocked() {
		s.log.Warn("the work_dir has no room for the whole checkpoint reserve; retrying as writes go on",
			"path", s.reserve.path, "held_bytes", s.reserve.held, "want_bytes", s.reserve.target)
	}
	s.reserve.mu.Unlock()
	// Replay comes before anything reads the tree. It needs no new blocks
	// when the tree already holds what the journal says (a kill -9), and
	// may free the reserve when it does not (a power cut on a full disk):
	// its records are end states, so a retry redoes nothing twice.
	err := s.ensure(context.Background(), filepath.Join(s.dir, journalDir), true, nil, func() error {
		j, err := openJournal(s.dir, s.log, &s.syncs, s.syncDir)
		if err == nil {
			s.journal.Store(j)
		}
		return err
	})
	if errors.Is(err, errJournalStart) && isNoSpace(err) {
		s.log.Warn("no space to start the checkpoint journal: syncing every checkpoint on its own until the next start", "err", err)
	} else if err != nil {
		return nil, err
	}
	return s, nil
}

// Close makes everything written durable in the tree and retires the
// journal, so the next Open has nothing to replay. Writes after Close
// (what a process that ended as the agent stopped reports) are synced one
// by one.
func (s *Store) Close() error {
	j := s.journal.Load()
	if j == nil {
		return nil
	}
	// Retired before it is let go: a synced write must not start while
	// records it could be replayed under are still in the journal.
	err := j.close()
	s.journal.CompareAndSwap(j, nil)
	return err
}

// journalFor is the journal a write goes through, or nil for a synced one.
func (s *Store) journalFor() *journal {
	if s.noSync {
		return nil
	}
	return s.journal.Load()
}

// commit logs rec in j. With ok false, j is retired and the caller makes
// its change durable the synced way instead: the journal needs blocks as
// it grows, which a full disk may not have when the reserve that would
// pay for them is spent, and a status update must still be recorded
// then. Retiring makes everything logged durable in the tree and deletes
// the segments first, so no record can later be replayed over a change
// synced after it.
func (s *Store) commit(j *journal, rec []byte) (done func(), ok bool, err error) {
	done, err = j.commit(rec)
	switch {
	case err == nil:
		return done, true, nil
	case errors.Is(err, errJournalClosed):
	case isNoSpace(err) && s.ReserveHeld() == 0:
		s.log.Warn("the work_dir is full and the checkpoint reserve spent: retiring the checkpoint journal; "+
			"every checkpoint is synced on its own until the agent restarts", "err", err)
	default:
		// Retried by ensure (which frees space) or fatal to the caller.
		return nil, true, err
	}
	if err := j.close(); err != nil {
		return nil, true, err
	}
	s.journal.CompareAndSwap(j, nil)
	return nil, false, nil
}

// Dir is <work_dir>/meta.
func (s *Store) Dir() string { return s.dir }

// Syncs is how many fsyncs and fdatasyncs of records and directories the
// store has made since it opened: what checkpointing costs the disk.
func (s *Store) Syncs() uint64 { return s.syncs.Load() }

// CurrentBootID is the ID of the running boot.
func (s *Store) CurrentBootID() (string, error) {
	b, err := os.ReadFile(s.bootIDPath)
	if err != nil {
		return "", fmt.Errorf("reading boot id: %w", err)
	}
	id := string(bytes.TrimSpace(b))
	if id == "" {
		return "", fmt.Errorf("reading boot id: %s is empty", s.bootIDPath)
	}
	return id, nil
}

// WriteBootID records the current boot. The agent calls it once recovery
// is complete: a later Recover that finds another boot id knows the node
// rebooted in between and that no process of a recorded run survived.
func (s *Store) WriteBootID(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	id, err := s.CurrentBootID()
	if err != nil {
		return err
	}
	// The payload is the id's text as the kernel gives it; framing it like
	// every other file still makes a torn write detectable.
	data := frame(kindValue, []byte(id))
	path := filepath.Join(s.dir, bootIDFile)
	if b, err := readFile(path, nil); err == nil && bytes.Equal(b, data) {
		// A restart within the boot: nothing to write, so a full disk
		// cannot stop it.
		return nil
	}
	// After a reboot on a full disk with the reserve spent, the old boot id
	// is overwritten in place (its block is there). A crash in the middle
	// leaves it damaged, which Recover survives: the runs say which boot
	// they started in.
	return s.ensure(ctx, path, true, func() error { return rewriteInPlace(path, data) },
		func() error { return s.writeFile(s.dir, bootIDFile, data) })
}

// WriteAgentInfo records the agent's info (its ID set) and makes that ID
// the one Recover restores.
func (s *Store) WriteAgentInfo(ctx context.Context, info *mesos.AgentInfo) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	id := info.GetId().GetValue()
	dir, err := s.path(Key{Agent: id}, levelAgent)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, agentInfoFile)
	old := &mesos.AgentInfo{}
	if _, err := readMessage(path, nil, old); err != nil || !proto.Equal(old, info) {
		// Unchanged (every re-registration of a restarted agent), it is not
		// written again: no space needed.
		if err := s.ensure(ctx, path, true, nil, func() error { return s.putMessage(dir, agentInfoFile, info) }); err != nil {
			return err
		}
	}
	// latest moves only after slave.info is durable, so it never points
	// at an agent without one.
	link := filepath.Join(s.dir, slavesDir, latestLink)
	if cur, err := os.Readlink(link); err == nil && cur == id {
		return nil
	}
	return s.ensure(ctx, link, true, nil, func() error {
		tmp := filepath.Join(s.dir, slavesDir, "."+latestLink+tmpSuffix)
		defer s.lock(tmp).Unlock()
		_ = os.Remove(tmp)
		if err := os.Symlink(id, tmp); err != nil {
			return fmt.Errorf("checkpointing %s: %w", link, err)
		}
		if err := os.Rename(tmp, link); err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("checkpointing %s: %w", link, err)
		}
		return s.syncDir(filepath.Dir(link))
	})
}

// ReadAgentInfo returns the info of the latest agent; the error wraps
// fs.ErrNotExist when none was recorded.
func (s *Store) ReadAgentInfo() (*mesos.AgentInfo, error) {
	link := filepath.Join(s.dir, slavesDir, latestLink)
	id, err := os.Readlink(link)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", link, err)
	}
	dir, err := s.path(Key{Agent: id}, levelAgent)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", link, err)
	}
	info := &mesos.AgentInfo{}
	if _, err := readMessage(filepath.Join(dir, agentInfoFile), nil, info); err != nil {
		return nil, err
	}
	return info, nil
}

// PutFramework records a framework (FrameworkInfo.checkpoint frameworks).
//
// The Put methods admit new work: the first record of an entity fails with
// an error wrapping ErrNoSpace when the work_dir has no room beyond the
// reserve (space.go), and the caller fails the launch. Rewriting a record
// that exists (a kill, a resize) may use the reserve.
func (s *Store) PutFramework(ctx context.Context, k Key, info *mesos.FrameworkInfo) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if id := info.GetId().GetValue(); id != k.Framework {
		return fmt.Errorf("checkpointing framework %q: info has id %q", k.Framework, id)
	}
	dir, err := s.path(k, levelFramework)
	if err != nil {
		return err
	}
	return s.put(ctx, dir, frameworkInfoFile, info)
}

// PutExecutor records an executor of a recorded framework.
func (s *Store) PutExecutor(ctx context.Context, k Key, info *mesos.ExecutorInfo) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if id := info.GetExecutorId().GetValue(); id != k.Executor {
		return fmt.Errorf("checkpointing executor %q: info has id %q", k.Executor, id)
	}
	dir, err := s.path(k, levelExecutor)
	if err != nil {
		return err
	}
	return s.put(ctx, dir, executorInfoFile, info)
}

// PutRun records a run (container) of an executor before it is launched,
// and again whenever its launch changes (an Update of its resources).
func (s *Store) PutRun(ctx context.Context, k Key, info *RunInfo) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if id := info.GetContainerId().GetValue(); id != k.Container {
		return fmt.Errorf("checkpointing run %q: info has container id %q", k.Container, id)
	}
	dir, err := s.path(k, levelRun)
	if err != nil {
		return err
	}
	return s.put(ctx, dir, runInfoFile, info)
}

// MarkRunCompleted records that a run's processes are all gone, so
// recovery neither waits for its executor nor looks for its container.
func (s *Store) MarkRunCompleted(ctx context.Context, k Key) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir, err := s.path(k, levelRun)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, runInfoFile)); err != nil {
		return fmt.Errorf("marking run completed: %w", err)
	}
	// An empty file: its name is all it says, and creating it is atomic
	// and needs an inode but no data block. (Earlier versions wrote one
	// empty framed record; Recover reads both.)
	path := filepath.Join(dir, runCompletedFile)
	return s.ensure(ctx, path, true, nil, func() error {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("checkpointing %s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("checkpointing %s: %w", path, err)
		}
		if j := s.journalFor(); j != nil {
			done, ok, err := s.commit(j, encodeRecord(opCreate, s.rel(path), 0, nil))
			if err != nil {
				return fmt.Errorf("checkpointing %s: %w", path, err)
			}
			if ok {
				done()
				return nil
			}
		}
		return s.syncDir(dir)
	})
}

// PutTask records a task before the agent acts on it, and again when its
// record changes (its container ID is assigned).
func (s *Store) PutTask(ctx context.Context, k Key, rec *TaskRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if id := rec.GetInfo().GetTaskId().GetValue(); id != k.Task {
		return fmt.Errorf("checkpointing task %q: record has task id %q", k.Task, id)
	}
	dir, err := s.path(k, levelTask)
	if err != nil {
		return err
	}
	return s.put(ctx, dir, taskInfoFile, rec)
}

// AppendUpdate appends a status update to its task's stream; it is
// durable when AppendUpdate returns, before the update is forwarded. The
// task must have been recorded with PutTask.
func (s *Store) AppendUpdate(ctx context.Context, k Key, u *cluster.StatusUpdate) error {
	if id := u.GetStatus().GetTaskId().GetValue(); id != k.Task {
		return fmt.Errorf("checkpointing update of task %q: update is for task %q", k.Task, id)
	}
	if len(u.GetStatus().GetUuid()) == 0 {
		// Only updates that will be acknowledged belong in the stream.
		return fmt.Errorf("checkpointing update of task %q: update has no uuid", k.Task)
	}
	return s.appendRecord(ctx, k, kindUpdate, u)
}

// AppendAck appends the acknowledgement of the update with uuid to its
// task's stream, before the update is dropped from the retry queue.
func (s *Store) AppendAck(ctx context.Context, k Key, uuid []byte) error {
	if len(uuid) == 0 {
		return fmt.Errorf("checkpointing acknowledgement for task %q: empty uuid", k.Task)
	}
	return s.appendRecord(ctx, k, kindAck, &mesos.UUID{Value: uuid})
}

// RemoveFramework removes a framework's checkpoints with everything under
// them. Removing what is not there is not an error.
func (s *Store) RemoveFramework(ctx context.Context, k Key) error {
	return s.removeLevel(ctx, k, levelFramework)
}

// RemoveExecutor removes an executor's checkpoints with all its runs.
func (s *Store) RemoveExecutor(ctx context.Context, k Key) error {
	return s.removeLevel(ctx, k, levelExecutor)
}

// RemoveRun removes one run's checkpoints with its tasks.
func (s *Store) RemoveRun(ctx context.Context, k Key) error {
	return s.removeLevel(ctx, k, levelRun)
}

// RemoveTask removes one task's record and update stream.
func (s *Store) RemoveTask(ctx context.Context, k Key) error {
	return s.removeLevel(ctx, k, levelTask)
}

type level int

const (
	levelAgent level = iota
	levelFramework
	levelExecutor
	levelRun
	levelTask
)

// path is the directory of k's entity at lvl. IDs become path components,
// and executor and task IDs come from frameworks: anything that could step
// out of the tree ("..", "a/b") or that the kernel would refuse is
// rejected here rather than trusted.
func (s *Store) path(k Key, lvl level) (string, error) {
	if err := validID("agent", k.Agent); err != nil {
		return "", err
	}
	if k.Agent == latestLink || strings.HasPrefix(k.Agent, ".") {
		return "", fmt.Errorf("agent id %q is reserved", k.Agent)
	}
	parts := make([]string, 0, 12)
	parts = append(parts, s.dir, slavesDir, k.Agent)
	steps := [...]struct{ what, dir, id string }{
		{"framework", frameworksDir, k.Framework},
		{"executor", executorsDir, k.Executor},
		{"container", runsDir, k.Container},
		{"task", tasksDir, k.Task},
	}
	for _, st := range steps[:lvl] {
		if err := validID(st.what, st.id); err != nil {
			return "", err
		}
		parts = append(parts, st.dir, st.id)
	}
	return filepath.Join(parts...), nil
}

func validID(what, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%s id is empty", what)
	case id == "." || id == "..":
		return fmt.Errorf("%s id %q is not a valid path component", what, id)
	case len(id) > 255:
		return fmt.Errorf("%s id is %d bytes, more than a file name may have", what, len(id))
	case strings.ContainsAny(id, "/\x00"):
		return fmt.Errorf("%s id %q contains '/' or NUL", what, id)
	}
	return nil
}

// put writes a record below frameworks/ as an admission (space.go).
func (s *Store) put(ctx context.Context, dir, name string, m proto.Message) error {
	path := filepath.Join(dir, name)
	b, err := marshalFrame(kindValue, m)
	if err != nil {
		return fmt.Errorf("checkpointing %s: %w", path, err)
	}
	return s.admit(ctx, path, func() error {
		if j := s.journalFor(); j != nil {
			if ok, err := s.writeJournaled(j, dir, name, b); ok || err != nil {
				return err
			}
		}
		return s.writeFile(dir, name, b)
	})
}

// rel is path relative to meta/, as journal records name it.
func (s *Store) rel(path string) string { return path[len(s.dir)+1:] }

// writeJournaled replaces dir/name with data, durably through the journal:
// the new content goes to the temp file without a sync (on a full disk it
// fails there, before anything is logged), its record is committed, and
// only then is it renamed in, so the tree never holds a change the journal
// does not. A crash at any point leaves the old file or, on replay, the
// new one. With ok false (the journal was retired) nothing was written
// and the caller writes the synced way.
func (s *Store) writeJournaled(j *journal, dir, name string, data []byte) (ok bool, err error) {
	path := filepath.Join(dir, name)
	tmp := path + tmpSuffix
	defer s.lock(tmp).Unlock()
	if err := s.mkdirsJournaled(j, dir); errors.Is(err, errJournalClosed) {
		// Retired, or being retired: synced writes wait until it is.
		if err := j.close(); err != nil {
			return true, err
		}
		return false, nil
	} else if err != nil {
		return true, err
	}
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		_ = os.Remove(tmp)
		return true, fmt.Errorf("checkpointing %s: %w", path, err)
	}
	done, ok, err := s.commit(j, encodeRecord(opWrite, s.rel(path), 0, data))
	if err != nil || !ok {
		_ = os.Remove(tmp)
		if err != nil {
			err = fmt.Errorf("checkpointing %s: %w", path, err)
		}
		return ok, err
	}
	defer done()
	if err := os.Rename(tmp, path); err != nil {
		// Its directory was removed meanwhile; replay skips the record
		// for the same reason.
		return true, fmt.Errorf("checkpointing %s: %w", path, err)
	}
	return true, nil
}

// mkdirsJournaled is mkdirs through the journal: each directory it creates
// is logged ahead of every record that depends on it (journal.mkdir).
func (s *Store) mkdirsJournaled(j *journal, dir string) error {
	err := j.mkdir(dir, s.rel(dir))
	switch {
	case err == nil, errors.Is(err, fs.ErrExist):
		return nil
	case errors.Is(err, fs.ErrNotExist) && len(dir) > len(s.dir):
		if err := s.mkdirsJournaled(j, filepath.Dir(dir)); err != nil {
			return err
		}
		return s.mkdirsJournaled(j, dir)
	case errors.Is(err, errJournalClosed):
		return err
	}
	return fmt.Errorf("checkpoint directory %s: %w", dir, err)
}

func (s *Store) putMessage(dir, name string, m proto.Message) error {
	b, err := marshalFrame(kindValue, m)
	if err != nil {
		return fmt.Errorf("checkpointing %s: %w", filepath.Join(dir, name), err)
	}
	return s.writeFile(dir, name, b)
}

// writeFile replaces dir/name with data: temp file, fsync, rename, fsync of
// the directory. Readers (and a recovery after a crash at any point) see the
// old file or the new one, never the temp file.
func (s *Store) writeFile(dir, name string, data []byte) (err error) {
	path := filepath.Join(dir, name)
	if err := s.mkdirs(dir); err != nil {
		return err
	}
	tmp := path + tmpSuffix
	defer s.lock(tmp).Unlock()
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("checkpointing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("checkpointing %s: %w", path, err)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if !s.noSync {
		s.syncs.Add(1)
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return s.syncDir(dir)
}

// mkdirs creates dir and any missing parents under the store, fsyncing
// each parent that gained an entry: without that, a power cut could lose
// the new directory together with the durable files inside it.
func (s *Store) mkdirs(dir string) error {
	err := os.Mkdir(dir, 0o755)
	switch {
	case err == nil:
		return s.syncDir(filepath.Dir(dir))
	case errors.Is(err, fs.ErrExist):
		return nil
	case errors.Is(err, fs.ErrNotExist) && len(dir) > len(s.dir): // never above meta/
		if err := s.mkdirs(filepath.Dir(dir)); err != nil {
			return err
		}
		return s.mkdirs(dir)
	}
	return fmt.Errorf("checkpoint directory %s: %w", dir, err)
}

func (s *Store) syncDir(dir string) error {
	if s.noSync {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	defer d.Close()
	s.syncs.Add(1)
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}

// appendRecord appends one framed record to a task's update stream and
// makes it durable. It must not fail for want of space (space.go): a
// status update the agent cannot record it cannot send.
func (s *Store) appendRecord(ctx context.Context, k Key, kind byte, m proto.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir, err := s.path(k, levelTask)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, taskUpdatesFile)
	rec, err := marshalFrame(kind, m)
	if err != nil {
		return fmt.Errorf("checkpointing %s: %w", path, err)
	}
	return s.ensure(ctx, path, true, nil, func() error { return s.appendOnce(dir, path, rec) })
}

func (s *Store) appendOnce(dir, path string, rec []byte) error {
	mu := s.lock(path)
	defer mu.Unlock()
	// No O_CREATE of directories: a stream is appended to only in the
	// directory of a recorded task. (Its task.info may be damaged or, after
	// a damage, missing: strict recovery reports such a task's end through
	// its stream all the same.)
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("checkpointing %s: task not recorded: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("checkpointing %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("checkpointing %s: %w", path, err)
	}
	// A failed write or flush (ENOSPC, EIO) may leave part or all of the
	// record behind, which a later successful append would bury in the
	// middle of the stream (or a retry repeat): it is cut off, so the
	// stream stays a clean sequence of whole records. Only then may the
	// error be taken as retryable.
	cut := func(err error) error {
		if terr := f.Truncate(st.Size()); terr != nil {
			return fmt.Errorf("checkpointing %s: %v; and cutting the failed append off: %w", path, err, terr)
		}
		return fmt.Errorf("checkpointing %s: %w", path, err)
	}
	if _, err := f.Write(rec); err != nil {
		return cut(err)
	}
	if j := s.journalFor(); j != nil {
		// The append is in the page cache; its record makes it durable.
		// (Made first, so a full disk fails the append before anything is
		// logged.)
		done, ok, err := s.commit(j, encodeRecord(opAppend, s.rel(path), st.Size(), rec))
		if err != nil {
			return cut(err)
		}
		if ok {
			done()
			return nil
		}
	}
	if !s.noSync {
		// After a failed fsync the page cache may no longer hold what was
		// written; the caller must not act on this update (checkpoint
		// before act).
		s.syncs.Add(1)
		if err := datasync(f); err != nil {
			return cut(err)
		}
	}
	if st.Size() == 0 {
		// The first record created the file: its directory entry must be
		// durable too.
		return s.syncDir(dir)
	}
	return nil
}

// lock locks the stripe of path and returns it.
func (s *Store) lock(path string) *sync.Mutex {
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(path); i++ {
		h = (h ^ uint32(path[i])) * 16777619
	}
	mu := &s.fileMu[h%uint32(len(s.fileMu))]
	mu.Lock()
	return mu
}

// removeLevel removes an entity's directory. It first renames it into
// meta/.trash — one atomic step, made durable by its journal record or a
// directory fsync — so a crash in the middle of
// deleting a large tree never leaves a half-removed entity that recovery
// would take for a damaged one; Recover empties the trash. The rename
// needs no new block, so removals work on a full disk (where they are what
// frees it).
func (s *Store) removeLevel(ctx context.Context, k Key, lvl level) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir, err := s.path(k, lvl)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	journaled := false
	if j := s.journalFor(); j != nil {
		// Logged first: once the record is durable the removal happens,
		// if not now then at replay, and nothing below dir logged after it
		// comes back.
		var done func()
		err := s.ensure(ctx, dir, false, nil, func() (err error) {
			done, journaled, err = s.commit(j, encodeRecord(opRemove, s.rel(dir), 0, nil))
			return err
		})
		if err != nil {
			return fmt.Errorf("removing %s: %w", dir, err)
		}
		if journaled {
			defer done()
		}
	}
	held, err := s.moveToTrash(ctx, dir)
	if err != nil && journaled {
		// Its record is durable, so it is removed — if not here then at
		// replay; left in place, a later launch's records below it would
		// be logged after the removal and skipped by replay. RemoveAll
		// needs no space.
		s.log.Warn("removing checkpoints in place", "path", dir, "err", err)
		if rerr := os.RemoveAll(dir); rerr != nil {
			return fmt.Errorf("removing %s: %w", dir, rerr)
		}
		return nil
	}
	if err != nil || held == "" {
		return err
	}
	if !journaled {
		if err := s.syncDir(filepath.Dir(dir)); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(held); err != nil {
		// The entity is already gone from the tree; what is left in the
		// trash is removed by the next Recover.
		s.log.Warn("emptying checkpoint trash", "path", held, "err", err)
	}
	return nil
}

// moveToTrash renames dir into meta/.trash and returns where it went, ""
// if dir was gone already.
func (s *Store) moveToTrash(ctx context.Context, dir string) (string, error) {
	trash := filepath.Join(s.dir, trashDir)
	var held string
	var err error
	for try := 0; ; try++ {
		held = filepath.Join(trash, "rm-"+randomName())
		err = os.Rename(dir, held)
		switch {
		case err == nil:
		case errors.Is(err, fs.ErrNotExist) && try == 0:
			// The trash itself may be missing (Open found no room for it).
			if _, serr := os.Lstat(dir); serr == nil {
				if merr := s.ensure(ctx, trash, false, nil, func() error { return s.mkdirs(trash) }); merr != nil {
					return "", fmt.Errorf("removing %s: %w", dir, merr)
				}
				continue
			}
			return "", nil
		case errors.Is(err, fs.ErrNotExist):
			return "", nil
		case (errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTEMPTY)) && try < 3:
			continue // the name was taken
		case isNoSpace(err):
			// A trash directory whose blocks are full of entries: room is
			// made as for any write that must not fail.
			err = s.ensure(ctx, dir, false, nil, func() error { return os.Rename(dir, held) })
		}
		if err != nil {
			return "", fmt.Errorf("removing %s: %w", dir, err)
		}
		return held, nil
	}
}

// randomName is a name no other removal takes.
func randomName() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// readValue reads a whole-file checkpoint and returns its payload, which
// aliases the returned buffer. The file must be exactly one whole record.
func readValue(path string, buf []byte) (payload, b []byte, err error) {
	b, err = readFile(path, buf)
	if err != nil {
		return nil, b, err
	}
	kind, payload, n, fe := parseFrame(b)
	switch {
	case fe != nil:
		return nil, b, &CorruptError{Path: path, Torn: fe.torn, Reason: fe.reason}
	case kind != kindValue:
		return nil, b, &CorruptError{Path: path, Reason: fmt.Sprintf("record kind %d in a whole-file checkpoint", kind)}
	case n != len(b):
		return nil, b, &CorruptError{Path: path, Offset: int64(n), Reason: fmt.Sprintf("%d bytes after the record", len(b)-n)}
	}
	return payload, b, nil
}

// readMessage reads a whole-file checkpoint into m; it returns the buffer
// for reuse.
func readMessage(path string, buf []byte, m proto.Message) ([]byte, error) {
	payload, b, err := readValue(path, buf)
	if err != nil {
		return b, err
	}
	// Unmarshal copies what it keeps, so the buffer can be reused.
	if err := proto.Unmarshal(payload, m); err != nil {
		return b, &CorruptError{Path: path, Reason: "unmarshalling: " + err.Error()}
	}
	return b, nil
}
