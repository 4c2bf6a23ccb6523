package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A full work_dir must not take the node down (a task filling its sandbox
// fills the file system the checkpoints live on). The store sorts its
// writes in two kinds:
//
//   - Admissions: the first record of a framework, executor, run or task,
//     written before a launch. They fail at once, without waiting, when
//     the file system is full — and also when the reserve below is not
//     whole and cannot be restored: new work is admitted only while there
//     is room beyond the reserve. The caller fails the launch.
//   - Everything else: status updates and acknowledgements, the end of a
//     run, rewrites of existing records (a kill, a resize, the agent's info
//     at registration, the boot id). They are what keeps what already runs
//     correct, so on ENOSPC (or EDQUOT) the store frees what it can and
//     retries: first the removal trash, then its reserve, chunk by chunk;
//     with nothing left to free it waits for space (the sandbox GC prunes
//     a full disk) up to Options.SpaceWait, then fails.
//
// The reserve is <work_dir>/meta/reserve, Options.Reserve bytes allocated
// with fallocate at Open. It is shrunk one chunk at a time, so that a task
// that is still writing gets at most a chunk of it per release, and grown
// back (refill) as soon as the file system has room again: before any
// admission, and at most every refillInterval after other writes.
//
// The start-up path needs no new space at all: recovery only reads,
// truncates and removes (removal is a rename into meta/.trash, which needs
// no new block); the boot id and the agent's info are not rewritten when
// they are unchanged (a restart within the same boot), the boot id is
// rewritten in place — its blocks are already there — when even the
// reserve is gone, and a run's completed sentinel is an empty file (an
// inode, no data block).

const (
	reserveFile = "reserve"
	// DefaultReserve is the reserve's size when Options.Reserve is 0: room
	// for over a hundred new 4 KiB blocks of status update streams and
	// records while the file system is full.
	DefaultReserve = 512 << 10
	// reserveChunk is what one release frees.
	reserveChunk = 64 << 10
	// DefaultSpaceWait is how long a write that must not fail for want of
	// space waits for it, once the reserve is spent.
	DefaultSpaceWait = time.Minute
	refillInterval   = 5 * time.Second
)

// ErrNoSpace is wrapped by the error of every write that failed or was
// refused for want of space on the work_dir's file system. The underlying
// ENOSPC or EDQUOT, when there is one, is wrapped too.
var ErrNoSpace = errors.New("no space left on the work_dir for checkpoints")

// isNoSpace reports whether err is the file system (or a quota) being full.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, ErrNoSpace)
}

func noSpace(err error) error {
	if errors.Is(err, ErrNoSpace) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrNoSpace, err)
}

// reserve is the store's preallocated room for writes that must not fail.
type reserve struct {
	path   string
	target int64
	mu     sync.Mutex // guards held, lastTry and the file
	held   int64
	// lastTry is when a refill was last attempted.
	lastTry time.Time
	// short is set while held < target: a refill is due.
	short atomic.Bool
}

// fill grows the reserve file to target, a chunk at a time, and reports
// whether it is whole. Called with mu held.
func (r *reserve) fillLocked() bool {
	r.lastTry = time.Now()
	if r.target <= 0 {
		return true
	}
	f, err := os.OpenFile(r.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		r.short.Store(true)
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		r.short.Store(true)
		return false
	}
	r.held = min(fi.Size(), r.target)
	if fi.Size() > r.target {
		// Configured smaller than it was.
		_ = f.Truncate(r.target)
	}
	for r.held < r.target {
		n := min(reserveChunk, r.target-r.held)
		if err := allocate(f, r.held, n); err != nil {
			r.short.Store(true)
			return false
		}
		r.held += n
	}
	r.short.Store(false)
	return true
}

// release frees one chunk of the reserve; it reports false when nothing was
// left to free.
func (r *reserve) release() (freed int64, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.held <= 0 {
		return 0, false
	}
	n := min(reserveChunk, r.held)
	if err := os.Truncate(r.path, r.held-n); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			r.held = 0
		}
		r.short.Store(true)
		return 0, false
	}
	r.held -= n
	r.short.Store(true)
	return n, true
}

// refill restores the reserve if it is short; with force it tries even if
// it tried a moment ago. It reports whether the reserve is whole.
func (r *reserve) refill(force bool) bool {
	if !r.short.Load() {
		return true
	}
	if !force {
		if !r.mu.TryLock() {
			return false
		}
	} else {
		r.mu.Lock()
	}
	defer r.mu.Unlock()
	if !r.short.Load() {
		return true
	}
	if !force && time.Since(r.lastTry) < refillInterval {
		return false
	}
	return r.fillLocked()
}

// Held is how many bytes the reserve holds now.
func (s *Store) ReserveHeld() int64 {
	s.reserve.mu.Lock()
	defer s.reserve.mu.Unlock()
	return s.reserve.held
}

// ensure runs op, a write that must not fail for want of space. On ENOSPC
// or EDQUOT it empties the trash, then releases the reserve chunk by chunk,
// retrying op after each; then it tries lastResort (when given: a write
// that needs no new blocks), then, if wait, waits for space until ctx ends
// or SpaceWait has passed, retrying with a backoff.
func (s *Store) ensure(ctx context.Context, what string, wait bool, lastResort func() error, op func() error) error {
	err := op()
	if err == nil {
		s.reserve.refill(false)
		return nil
	}
	if !isNoSpace(err) {
		return err
	}
	trashTried, resortTried := false, false
	var deadline time.Time
	backoff := 20 * time.Millisecond
	for {
		switch {
		case !trashTried:
			trashTried = true
			if !s.emptyTrash() {
				continue
			}
		default:
			if n, ok := s.reserve.release(); ok {
				s.log.Warn("the work_dir is full: released part of the checkpoint reserve", "for", what,
					"released_bytes", n, "reserve_left_bytes", s.ReserveHeld(), "err", err)
				break
			}
			if lastResort != nil && !resortTried {
				resortTried = true
				s.log.Warn("the work_dir is full and the checkpoint reserve spent: rewriting in place", "for", what, "err", err)
				if err = lastResort(); err == nil || !isNoSpace(err) {
					return err
				}
				continue
			}
			if !wait {
				return noSpace(err)
			}
			if deadline.IsZero() {
				deadline = time.Now().Add(s.spaceWait)
				s.log.Error("the work_dir is full and the checkpoint reserve spent: waiting for space", "for", what,
					"up_to", s.spaceWait, "err", err)
			}
			if time.Now().After(deadline) {
				return noSpace(err)
			}
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return errors.Join(noSpace(err), ctx.Err())
			case <-t.C:
			}
			backoff = min(2*backoff, time.Second)
		}
		if err = op(); err == nil {
			return nil
		}
		if !isNoSpace(err) {
			return err
		}
	}
}

// admit runs op, the first record of an entity (new work): it is refused
// while the reserve is short and cannot be restored, and fails on ENOSPC
// without touching the reserve. path is the file op writes: if it exists
// already, op is a rewrite and is handled as ensure does.
func (s *Store) admit(ctx context.Context, path string, op func() error) error {
	if !s.reserve.refill(true) {
		if _, err := os.Lstat(path); err == nil {
			return s.ensure(ctx, path, true, nil, op)
		}
		return fmt.Errorf("checkpointing %s: %w (the reserve kept for status updates is in use)", path, ErrNoSpace)
	}
	err := op()
	if err == nil || !isNoSpace(err) {
		return err
	}
	if _, serr := os.Lstat(path); serr == nil {
		return s.ensure(ctx, path, true, nil, op)
	}
	return noSpace(err)
}

// emptyTrash removes what earlier removals left in meta/.trash and reports
// whether there was anything.
func (s *Store) emptyTrash() bool {
	trash := filepath.Join(s.dir, trashDir)
	names, _ := readNames(trash)
	for _, n := range names {
		if err := os.RemoveAll(filepath.Join(trash, n)); err != nil {
			s.log.Warn("emptying checkpoint trash", "path", filepath.Join(trash, n), "err", err)
		}
	}
	return len(names) > 0
}

// rewriteInPlace overwrites the file at path with data without allocating:
// it neither truncates the file first nor writes beyond the blocks it has.
// Not atomic — a crash in the middle can leave a mix, which the framing
// detects — so it is only the last resort of a small file on a full disk.
func rewriteInPlace(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if int64(len(data)) > allocated(fi) {
		return fmt.Errorf("rewriting %s in place: %d bytes do not fit its %d allocated: %w", path, len(data), allocated(fi), syscall.ENOSPC)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		return err
	}
	if int64(len(data)) < fi.Size() {
		if err := f.Truncate(int64(len(data))); err != nil {
			return err
		}
	}
	return datasync(f)
}

// writeZeros allocates by writing: for file systems without fallocate.
func writeZeros(f *os.File, off, n int64) error {
	buf := make([]byte, min(n, 64<<10))
	for n > 0 {
		m := min(n, int64(len(buf)))
		if _, err := f.WriteAt(buf[:m], off); err != nil {
			return err
		}
		off += m
		n -= m
	}
	return f.Sync()
}
