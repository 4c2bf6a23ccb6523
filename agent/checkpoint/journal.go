package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// The journal is how the tree below frameworks/ becomes durable with one
// fdatasync for many records instead of three or four syncs for each
// (temp file, rename, directory, every new directory level). Every change
// to that part of the tree is first made in the page cache without a sync,
// then framed as a journal record (which file, what it now holds) and
// appended to meta/journal/<seq>; writers that arrive while one flush is
// in progress share the next one (group commit). A write returns once its
// record is durable, so the agent's rule stands: checkpoint, then act.
//
// The tree itself is made durable in the background: when a segment has
// grown past compactAt, new records go to a new segment and, once every
// change logged in the old one has reached the page cache, one syncfs
// writes the tree out and the old segment is deleted. Open replays what
// segments are left (a crash, kill -9 or power cut before compaction) onto
// the tree before anything reads it. Every record states an end result —
// a whole file's content, bytes at an offset, a removal — so replaying one
// that the tree already reflects changes nothing, and replay may itself be
// cut short and redone.
//
// Order is what keeps replay equal to the live tree. A file or directory
// whose parent is gone is not created at replay, just as the live store
// could not create it (a removal racing a write below it), so every new
// directory is logged, ahead of anything that can depend on it (mkdir).
// What a full disk refuses — a temp file, an append — fails before its
// record is logged; a whole file is renamed in only after its record is
// durable, and a compaction waits for those renames (segment.unapplied).
// When the disk is full and the reserve spent, the journal itself may have
// no room: the store then retires it (syncfs, segments gone) and syncs each
// write on its own, so no record can be replayed over a change made after
// it.
//
// The agent-level files (boot id, slave.info, latest) are written with
// their own syncs as before: they change once per start and the full-disk
// paths of space.go depend on how they are written.
const (
	journalDir = "journal"
	// compactAt is the size of a segment (allocated ahead) and the point
	// where a compaction starts: some 250 command tasks' records (about
	// 4 KiB each from launch to removal), so one syncfs is shared by all
	// of them, and what a restart replays stays small.
	compactAt = 1 << 20
	// kindJournal frames a journal record; it never appears in the tree.
	kindJournal = 4
)

// Journal operations.
const (
	opWrite  byte = 1 // the file's whole content
	opAppend byte = 2 // bytes at an offset; the file ends after them
	opCreate byte = 3 // an empty file (a sentinel)
	opRemove byte = 4 // a directory and everything below it
	opMkdir  byte = 5 // a directory, in a directory that exists
)

var (
	errJournalClosed = errors.New("checkpoint journal closed")
	// errJournalStart wraps a failure to create the journal's directory or
	// segment (rather than to replay it): on a full disk the store goes on
	// without one.
	errJournalStart = errors.New("starting the checkpoint journal")
)

// journal is the store's write-ahead log.
type journal struct {
	dir   string // meta/journal
	meta  string // meta/: what syncfs is called on
	log   *slog.Logger
	syncs *atomic.Uint64
	// syncDir fsyncs a directory: the store's, which counts it.
	syncDir func(string) error
	// compactAt is the constant of that name; tests lower it.
	compactAt int64

	mu   sync.Mutex
	cond sync.Cond // signalled when a flush ends
	seg  *segment
	// next is the batch new records join; its bytes are waiting to be
	// written by the next flush.
	next     *batch
	flushing bool
	closed   bool
	// carry holds the directory records of batches whose flush failed:
	// their directories exist, and records that depend on them may follow
	// in later batches, so they go again ahead of the next one.
	carry []byte
	// old holds segments rotated out and not yet deleted.
	old        []*segment
	compacting bool
	compacted  sync.WaitGroup
	closeOnce  sync.Once
	closeErr   error
	// dirMu is held shared from a directory's record to its mkdir: a
	// compaction takes it exclusively before its syncfs, so a directory
	// logged in a segment it retires exists by then.
	dirMu sync.RWMutex
}

type segment struct {
	seq uint64
	f   *os.File
	// size is where the records end; alloc how much of the file is
	// allocated, zeros beyond size.
	size, alloc int64
	// unapplied counts the records written to this segment whose change is
	// not yet in the page cache (a rename after the commit): a compaction
	// waits for it before syncfs.
	unapplied sync.WaitGroup
}

type batch struct {
	// mkdirs are the directory records, written ahead of buf.
	mkdirs  []byte
	buf     []byte
	writers int
	flushed bool
	err     error
	seg     *segment
}

// openJournal replays the segments a previous run left in meta/journal,
// makes the result durable and starts an empty segment.
func openJournal(meta string, log *slog.Logger, syncs *atomic.Uint64, syncDir func(string) error) (*journal, error) {
	j := &journal{dir: filepath.Join(meta, journalDir), meta: meta, log: log, syncs: syncs, syncDir: syncDir, compactAt: compactAt}
	j.cond.L = &j.mu
	if err := os.Mkdir(j.dir, 0o755); err == nil {
		if err := syncDir(meta); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("%w: %s: %w", errJournalStart, j.dir, err)
	}
	seqs, err := j.segments()
	if err != nil {
		return nil, err
	}
	n, dirty := 0, false
	for _, seq := range seqs {
		m, d, err := j.replay(seq)
		if err != nil {
			return nil, err
		}
		n, dirty = n+m, dirty || d
	}
	// The tree now holds what the segments say; once that is on disk they
	// are not needed. Always, even with nothing replayed: the page cache a
	// kill -9 left may hold changes that were never logged (an append or a
	// directory whose record was not flushed), which this run would
	// otherwise build on without logging them.
	if err := j.syncfs(); err != nil {
		return nil, fmt.Errorf("checkpoint journal: making the replayed tree durable: %w", err)
	}
	if dirty {
		log.Info("replayed the checkpoint journal", "segments", len(seqs), "records", n)
	}
	var seg *segment
	if len(seqs) > 0 {
		// The older segments go, durably, before the newest is zeroed: an
		// older one must never come back without the newer.
		last := seqs[len(seqs)-1]
		for _, seq := range seqs[:len(seqs)-1] {
			if err := os.Remove(j.name(seq)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("checkpoint journal: %w", err)
			}
		}
		if len(seqs) > 1 {
			if err := syncDir(j.dir); err != nil {
				return nil, err
			}
		}
		if seg, err = j.recycle(last, dirty); err != nil {
			return nil, err
		}
	} else if seg, err = j.create(1); err != nil {
		return nil, fmt.Errorf("%w: %w", errJournalStart, err)
	}
	j.seg = seg
	return j, nil
}

func (j *journal) name(seq uint64) string {
	return filepath.Join(j.dir, fmt.Sprintf("%016x", seq))
}

// segments lists the segments in meta/journal in order. Anything else
// there (a temp file of a future version) is ignored.
func (j *journal) segments() ([]uint64, error) {
	names, err := readNames(j.dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint journal %s: %w", j.dir, err)
	}
	var seqs []uint64
	for _, n := range names {
		if len(n) != 16 {
			continue
		}
		if seq, err := strconv.ParseUint(n, 16, 64); err == nil {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	return seqs, nil
}

// create starts segment seq with its blocks allocated and written (zeros),
// so that records go on being written when the disk fills up, and so that
// a flush is the data alone: an fdatasync of blocks that were written
// before has no extent or size to commit with them, where one into
// fallocated (unwritten) blocks does. Where allocating fails the segment
// grows as it is written. Its directory entry is durable before any
// record in it counts.
func (j *journal) create(seq uint64) (*segment, error) {
	f, err := os.OpenFile(j.name(seq), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("checkpoint journal: %w", err)
	}
	seg := &segment{seq: seq, f: f, alloc: j.compactAt}
	if err := writeZeros(f, 0, seg.alloc); err != nil {
		j.log.Warn("checkpoint journal: no room to allocate a segment; it grows as it is written", "err", err)
		seg.alloc = 0
		if err := f.Truncate(0); err != nil {
			f.Close()
			return nil, fmt.Errorf("checkpoint journal: %w", err)
		}
	}
	if err := j.syncDir(j.dir); err != nil {
		f.Close()
		return nil, err
	}
	return seg, nil
}

// recycle makes the replayed segment seq the current one, its blocks kept:
// a journal restarted on a full disk has room for records. A dirty segment
// is zeroed first, durably, so none of its records can come back behind
// the new ones.
func (j *journal) recycle(seq uint64, dirty bool) (*segment, error) {
	f, err := os.OpenFile(j.name(seq), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("checkpoint journal: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && dirty {
		err = writeZeros(f, 0, fi.Size())
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("checkpoint journal: recycling %s: %w", f.Name(), err)
	}
	return &segment{seq: seq, f: f, alloc: fi.Size()}, nil
}

// encodeRecord frames one journal record: op, the path under meta/, the
// offset of an append, the data.
func encodeRecord(op byte, rel string, off int64, data []byte) []byte {
	b := make([]byte, headerSize, headerSize+1+2*binary.MaxVarintLen64+len(rel)+len(data))
	b = append(b, op)
	b = binary.AppendUvarint(b, uint64(len(rel)))
	b = append(b, rel...)
	b = binary.AppendUvarint(b, uint64(off))
	b = append(b, data...)
	seal(b, kindJournal)
	return b
}

func decodeRecord(p []byte) (op byte, rel string, off int64, data []byte, err error) {
	if len(p) < 1 {
		return 0, "", 0, nil, errors.New("empty journal record")
	}
	op, p = p[0], p[1:]
	n, k := binary.Uvarint(p)
	if k <= 0 || n > uint64(len(p)-k) {
		return 0, "", 0, nil, errors.New("bad path length")
	}
	rel, p = string(p[k:k+int(n)]), p[k+int(n):]
	o, k := binary.Uvarint(p)
	if k <= 0 || o > 1<<62 {
		return 0, "", 0, nil, errors.New("bad offset")
	}
	if op < opWrite || op > opMkdir {
		return 0, "", 0, nil, fmt.Errorf("unknown journal operation %d", op)
	}
	// The path was made by the store from validated IDs; one that would
	// leave meta/ is damage, never followed.
	if !filepath.IsLocal(rel) || strings.HasPrefix(rel, journalDir+"/") {
		return 0, "", 0, nil, fmt.Errorf("journal path %q is outside the tree", rel)
	}
	return op, rel, int64(o), p[k:], nil
}

// replay applies one segment's records to the tree, in order, and returns
// how many it applied and whether the segment held anything. It stops at
// the first record it cannot trust: zeros are the allocated rest of the
// segment; a torn record is a flush that never finished (no writer was
// told it succeeded); anything else is damage, reported and survived like
// damage in the tree.
func (j *journal) replay(seq uint64) (n int, dirty bool, err error) {
	path := j.name(seq)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false, fmt.Errorf("checkpoint journal: %w", err)
	}
	dirty = !allZero(b)
	for off := 0; off < len(b); {
		kind, payload, size, fe := parseFrame(b[off:])
		if fe == nil && kind != kindJournal {
			fe = &frameError{reason: fmt.Sprintf("record kind %d in the journal", kind)}
		}
		var op byte
		var rel string
		var at int64
		var data []byte
		if fe == nil {
			var derr error
			if op, rel, at, data, derr = decodeRecord(payload); derr != nil {
				fe = &frameError{reason: derr.Error()}
			}
		}
		if fe != nil {
			if !fe.torn && !allZero(b[off:]) {
				// Also what a flush cut short leaves in an allocated
				// segment (the rest of its last record reads as zeros).
				j.log.Warn("checkpoint journal ends in a record that does not check out: a flush cut short, or damage; nothing after it is replayed",
					"err", &CorruptError{Path: path, Offset: int64(off), Reason: fe.reason})
			}
			break
		}
		if err := j.apply(op, filepath.Join(j.meta, rel), at, data); err != nil {
			return n, dirty, fmt.Errorf("checkpoint journal %s: replaying record at offset %d: %w", path, off, err)
		}
		n++
		off += size
	}
	return n, dirty, nil
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// apply makes one record's change in the tree, without syncs. Nothing is
// created where the live store would not have created it: a file or
// directory whose parent is gone was removed after this record (a removal
// racing a write below it) and stays removed, as it did in the live tree.
// A change the tree already holds is not made again, so replaying after a
// kill -9 (the page cache kept everything) needs no new blocks on a full
// disk.
func (j *journal) apply(op byte, path string, off int64, data []byte) error {
	switch op {
	case opMkdir:
		err := os.Mkdir(path, 0o755)
		if err == nil || errors.Is(err, fs.ErrExist) || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	case opWrite:
		if cur, err := readFile(path, nil); err == nil && bytes.Equal(cur, data) {
			return nil
		}
		tmp := path + tmpSuffix
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		return os.Rename(tmp, path)
	case opAppend:
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if fi.Size() < off {
			// What came before this record is neither in the durable tree
			// nor in the journal: damage, which recovery reports from the
			// stream as it is.
			j.log.Error("checkpoint journal: an append lands past the end of its stream; not replayed",
				"path", path, "offset", off, "size", fi.Size())
			return nil
		}
		if fi.Size() >= off+int64(len(data)) {
			cur := make([]byte, len(data))
			if _, err := f.ReadAt(cur, off); err == nil && bytes.Equal(cur, data) {
				return nil
			}
		}
		if err := f.Truncate(off); err != nil {
			return err
		}
		_, err = f.WriteAt(data, off)
		return err
	case opCreate:
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		return f.Close()
	case opRemove:
		return os.RemoveAll(path)
	}
	return fmt.Errorf("unknown journal operation %d", op)
}

// commit appends rec (one or more encoded records, made durable together)
// to the journal and returns once it is durable. The caller has already made the record's change in the page cache, or makes
// it before calling done (which it must call when err is nil): a
// compaction does not syncfs a segment before all its records are done.
func (j *journal) commit(rec []byte) (done func(), err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil, errJournalClosed
	}
	if j.next == nil {
		j.next = &batch{}
	}
	b := j.next
	b.buf = append(b.buf, rec...)
	b.writers++
	for !b.flushed && j.flushing {
		j.cond.Wait()
	}
	if !b.flushed && j.closed {
		return nil, errJournalClosed
	}
	if !b.flushed {
		// No flush in progress and ours not yet written: this writer
		// flushes its batch, with every record that joined it meanwhile.
		j.flushLocked(b)
	}
	if b.err != nil {
		return nil, b.err
	}
	return b.seg.unapplied.Done, nil
}

// mkdir creates the directory path (rel under meta/), logging it in the
// batch that is filling before it appears: a writer that finds the
// directory there logs its own records after the directory's, so replay
// never meets a record whose directory it has not created. (The mkdir
// itself runs outside j.mu: it can take longer than a flush. If it then
// fails — someone else made it, or its parent went — the record costs at
// most an empty directory at replay, which recovery drops.)
func (j *journal) mkdir(path, rel string) error {
	// The common case, without the lock: a directory that is there was
	// logged before it appeared.
	if _, err := os.Lstat(path); err == nil {
		return fs.ErrExist
	}
	rec := encodeRecord(opMkdir, rel, 0, nil)
	j.dirMu.RLock()
	defer j.dirMu.RUnlock()
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return errJournalClosed
	}
	if j.next == nil {
		j.next = &batch{}
	}
	j.next.mkdirs = append(j.next.mkdirs, rec...)
	j.mu.Unlock()
	return os.Mkdir(path, 0o755)
}

// flushLocked writes batch b and syncs it, with j.mu released meanwhile.
func (j *journal) flushLocked(b *batch) {
	j.flushing = true
	j.next = nil
	seg := j.seg
	buf := b.buf
	if len(j.carry) > 0 || len(b.mkdirs) > 0 {
		buf = slices.Concat(j.carry, b.mkdirs, b.buf)
	}
	j.mu.Unlock()
	err := seg.write(buf, j.syncs)
	var rotated *segment
	if err == nil && seg.size >= j.compactAt {
		rotated = j.rotate(seg)
	}
	j.mu.Lock()
	b.flushed, b.err, b.seg = true, err, seg
	if err == nil {
		seg.unapplied.Add(b.writers)
		j.carry = nil
	} else {
		j.carry = append(j.carry, b.mkdirs...)
	}
	if rotated != nil {
		j.seg = rotated
		j.old = append(j.old, seg)
		if !j.compacting && !j.closed {
			j.compacting = true
			j.compacted.Add(1)
			go j.compact()
		}
	}
	j.flushing = false
	j.cond.Broadcast()
}

// write appends buf and syncs it; on failure what was written is wiped,
// so the segment stays a sequence of whole records that were each durable
// when their writers were told so.
func (seg *segment) write(buf []byte, syncs *atomic.Uint64) error {
	if _, err := seg.f.WriteAt(buf, seg.size); err != nil {
		return seg.cut(err, len(buf))
	}
	syncs.Add(1)
	if err := datasync(seg.f); err != nil {
		return seg.cut(err, len(buf))
	}
	seg.size += int64(len(buf))
	return nil
}

// cut wipes the n bytes a failed write may have left at the end: zeros
// where the segment is allocated (no new blocks needed), a truncation
// beyond.
func (seg *segment) cut(err error, n int) error {
	end := seg.size + int64(n)
	var werr error
	if end > seg.alloc {
		werr = seg.f.Truncate(max(seg.size, seg.alloc))
	}
	if z := min(end, seg.alloc) - seg.size; z > 0 && werr == nil {
		_, werr = seg.f.WriteAt(make([]byte, z), seg.size)
	}
	if werr != nil {
		return fmt.Errorf("checkpoint journal: %v; and wiping the failed write: %w", err, werr)
	}
	return fmt.Errorf("checkpoint journal: %w", err)
}

// rotate starts the segment after seg; on failure seg goes on growing and
// the next flush tries again.
func (j *journal) rotate(seg *segment) *segment {
	next, err := j.create(seg.seq + 1)
	if err != nil {
		j.log.Warn("checkpoint journal: starting a new segment", "err", err)
		return nil
	}
	return next
}

func (j *journal) syncfs() error {
	j.syncs.Add(1)
	return syncfs(j.meta)
}

// awaitMkdirs returns once every mkdir logged so far has been made.
func (j *journal) awaitMkdirs() {
	j.dirMu.Lock()
	defer j.dirMu.Unlock()
}

// compact makes the tree durable and deletes the segments rotated out,
// until none is left. It runs beside new commits.
func (j *journal) compact() {
	defer j.compacted.Done()
	for {
		j.mu.Lock()
		old := j.old
		if len(old) == 0 {
			j.compacting = false
			j.mu.Unlock()
			return
		}
		j.mu.Unlock()
		for _, seg := range old {
			seg.unapplied.Wait()
		}
		j.awaitMkdirs()
		if err := j.syncfs(); err != nil {
			// The segments stay and are replayed by the next Open; the next
			// rotation tries again.
			j.log.Error("checkpoint journal: making the tree durable", "err", err)
			j.mu.Lock()
			j.compacting = false
			j.mu.Unlock()
			return
		}
		// Oldest first, each deletion durable before the next: a segment
		// coming back without the ones after it would replay stale records
		// over newer state.
		for _, seg := range old {
			seg.f.Close()
			if err := os.Remove(j.name(seg.seq)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				j.log.Warn("checkpoint journal: deleting a compacted segment", "err", err)
			}
			if err := j.syncDir(j.dir); err != nil {
				j.log.Error("checkpoint journal", "err", err)
			}
		}
		j.mu.Lock()
		j.old = j.old[len(old):]
		j.mu.Unlock()
	}
}

// close waits for a compaction under way, then makes the whole tree
// durable, deletes the older segments and zeroes the current one: a store
// closed cleanly leaves nothing to replay. Every caller returns once that
// is done.
func (j *journal) close() error {
	j.closeOnce.Do(func() { j.closeErr = j.retire() })
	return j.closeErr
}

// stop lets the flush and the compaction under way end and takes no new
// records.
func (j *journal) stop() {
	j.mu.Lock()
	for j.flushing {
		j.cond.Wait()
	}
	j.closed = true
	j.mu.Unlock()
	j.compacted.Wait()
}

func (j *journal) retire() error {
	j.stop()
	j.mu.Lock()
	segs := append(j.old, j.seg)
	j.old, j.seg = nil, nil
	j.mu.Unlock()
	for _, seg := range segs {
		seg.unapplied.Wait()
	}
	j.awaitMkdirs()
	err := j.syncfs()
	// The older segments go, durably, before the current one is zeroed
	// (kept with its blocks for the next Open's recycle).
	cur := segs[len(segs)-1]
	for _, seg := range segs[:len(segs)-1] {
		seg.f.Close()
		if err == nil {
			if rerr := os.Remove(j.name(seg.seq)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				err = rerr
			}
		}
	}
	if err == nil && len(segs) > 1 {
		err = j.syncDir(j.dir)
	}
	if err == nil && cur.size > 0 {
		err = writeZeros(cur.f, 0, max(cur.alloc, cur.size))
	}
	cur.f.Close()
	if err != nil && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("closing the checkpoint journal: %w", err)
	}
	return nil
}
