package checkpoint

import (
	"bytes"
	"context"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/corral/corral/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

// crash abandons ts's store as a kill -9 would: its segments stay as they
// are, nothing more is synced, and its Close does nothing.
func crash(tb testing.TB, ts *testStore) {
	tb.Helper()
	j := ts.journal.Load()
	if j == nil {
		tb.Fatal("the store has no journal")
	}
	j.closeOnce.Do(func() {
		j.stop()
		for _, seg := range append(j.old, j.seg) {
			seg.f.Close()
		}
	})
}

// reopen opens ts's work_dir again, as the next agent start does.
func reopen(tb testing.TB, ts *testStore) *testStore {
	tb.Helper()
	s, err := Open(ts.work, Options{BootIDPath: ts.boot, Log: ts.log})
	if err != nil {
		tb.Fatalf("reopening: %v", err)
	}
	closeAtEnd(tb, s)
	return &testStore{Store: s, work: ts.work, boot: ts.boot}
}

// tree is every file (its content) and directory ("/") below frameworks/.
func tree(tb testing.TB, ts *testStore) map[string]string {
	tb.Helper()
	root := filepath.Join(ts.dir, slavesDir, baseKey.Agent, frameworksDir)
	m := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			m[rel+"/"] = ""
			return nil
		}
		b, err := os.ReadFile(path)
		m[rel] = string(b)
		return err
	})
	if err != nil && !os.IsNotExist(err) {
		tb.Fatal(err)
	}
	return m
}

// writeTree puts a tree (as tree returns it) in place of what is below
// frameworks/: the state the disk held when the power went.
func writeTree(tb testing.TB, ts *testStore, m map[string]string) {
	tb.Helper()
	root := filepath.Join(ts.dir, slavesDir, baseKey.Agent, frameworksDir)
	if err := os.RemoveAll(root); err != nil {
		tb.Fatal(err)
	}
	for _, rel := range slices.Sorted(maps.Keys(m)) {
		path := filepath.Join(root, rel)
		var err error
		if strings.HasSuffix(rel, "/") {
			err = os.MkdirAll(path, 0o755)
		} else if err = os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
			err = os.WriteFile(path, []byte(m[rel]), 0o600)
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// journalWorkload is every kind of change: a tree of tasks (phase 1),
// then rewrites, appends, a completed run, removals and the reuse of a
// removed executor's ID (phase 2).
func journalWorkload(tb testing.TB, s *Store, phase int) {
	tb.Helper()
	ctx := context.Background()
	must := func(err error) {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
	}
	k := baseKey
	ex2 := Key{Agent: k.Agent, Framework: k.Framework, Executor: "ex-2", Container: "c-2", Task: "t-9"}
	task := func(id string) Key { t := k; t.Task = id; return t }
	if phase == 1 {
		putTree(tb, s, task("t-1"), 2, 1)
		putTree(tb, s, task("t-2"), 1, 0)
		putTree(tb, s, task("t-3"), 3, 3)
		putTree(tb, s, ex2, 2, 2)
		return
	}
	rec := taskRecord("t-1", k.Container)
	rec.Sandbox = proto.String("/sandbox/moved")
	must(s.PutTask(ctx, task("t-1"), rec))
	must(s.AppendUpdate(ctx, task("t-2"), update(k.Framework, "t-2", mesos.TaskState_TASK_RUNNING, 1)))
	must(s.AppendAck(ctx, task("t-2"), uuidOf("t-2", 0)))
	must(s.MarkRunCompleted(ctx, ex2))
	must(s.RemoveTask(ctx, task("t-3")))
	must(s.RemoveExecutor(ctx, ex2))
	ex2.Container, ex2.Task = "c-3", "t-8"
	putTree(tb, s, ex2, 1, 0)
	fw2 := Key{Agent: k.Agent, Framework: "fw-2", Executor: "ex-1", Container: "c-9", Task: "t-1"}
	putTree(tb, s, fw2, 1, 1)
	must(s.AppendAck(ctx, task("t-2"), uuidOf("t-2", 1)))
}

// TestJournalReplay: whatever part of the tree below frameworks/ reached
// the disk before a crash — none of it, an older consistent state, a mix
// of older and newer files, torn files — the next Open makes it exactly
// the tree the store had written, from the journal alone.
func TestJournalReplay(t *testing.T) {
	for _, tc := range []struct {
		name string
		disk func(old, final map[string]string) map[string]string
	}{
		{"nothing", func(_, _ map[string]string) map[string]string { return nil }},
		{"older", func(old, _ map[string]string) map[string]string { return old }},
		{"mixed", func(old, final map[string]string) map[string]string {
			m := maps.Clone(final)
			for i, rel := range slices.Sorted(maps.Keys(old)) {
				if i%2 == 0 {
					m[rel] = old[rel]
				}
			}
			return m
		}},
		{"torn", func(_, final map[string]string) map[string]string {
			m := maps.Clone(final)
			for rel, v := range m {
				switch {
				case strings.HasSuffix(rel, taskUpdatesFile):
					m[rel] = v[:len(v)/2]
				case strings.HasSuffix(rel, taskInfoFile):
					m[rel] = ""
				}
			}
			return m
		}},
		{"ahead", func(_, final map[string]string) map[string]string {
			// Everything reached the disk (a kill -9), and appends the
			// journal never got (cut short by the kill) end the streams.
			m := maps.Clone(final)
			for rel, v := range m {
				if strings.HasSuffix(rel, taskUpdatesFile) {
					ack, _ := marshalFrame(kindAck, &mesos.UUID{Value: uuidOf("never", 0)})
					m[rel] = v + string(ack[:len(ack)-3])
				}
			}
			return m
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newStore(t)
			journalWorkload(t, ts.Store, 1)
			old := tree(t, ts)
			journalWorkload(t, ts.Store, 2)
			final := tree(t, ts)
			crash(t, ts)
			writeTree(t, ts, tc.disk(old, final))

			ts2 := reopen(t, ts)
			got := tree(t, ts2)
			if tc.name == "ahead" {
				// Bytes past the last logged append are what an
				// unfinished update left; recovery judges them.
				for rel := range got {
					if strings.HasSuffix(rel, taskUpdatesFile) {
						got[rel] = final[rel]
					}
				}
			}
			if !maps.Equal(got, final) {
				t.Errorf("replayed tree differs from the one written:\n%s", treeDiff(got, final))
			}
			st := ts2.recover(t, true)
			// "ahead": the torn tails are cut by recovery, but for the
			// streams that replay rebuilt (their executor was removed and
			// recreated after them).
			if tc.name == "ahead" && st.Truncated == 3 {
				st.Truncated = 0
			}
			if len(st.Inconsistencies) != 0 || st.Truncated != 0 || st.Incomplete != 0 {
				t.Errorf("recovery after replay found damage: %v, %d truncated, %d incomplete", st.Inconsistencies, st.Truncated, st.Incomplete)
			}
			if segs, _ := readNames(filepath.Join(ts.dir, journalDir)); len(segs) != 1 {
				t.Errorf("journal holds %v after replay, want just the new segment", segs)
			}
		})
	}
}

func treeDiff(got, want map[string]string) string {
	var b strings.Builder
	keys := slices.Sorted(maps.Keys(maps.Collect(func(yield func(string, struct{}) bool) {
		for k := range got {
			yield(k, struct{}{})
		}
		for k := range want {
			yield(k, struct{}{})
		}
	})))
	for _, k := range keys {
		g, gok := got[k]
		w, wok := want[k]
		switch {
		case !gok:
			b.WriteString("  missing " + k + "\n")
		case !wok:
			b.WriteString("  extra   " + k + "\n")
		case g != w:
			b.WriteString("  differs " + k + "\n")
		}
	}
	return b.String()
}

// TestJournalTornTail: a flush cut short by the crash (its writers were
// never told it succeeded) is ignored; what came before it replays.
// Damage in the middle ends the replay there, and Open still succeeds.
func TestJournalTornTail(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(b []byte, last, end int)
		// lost: whether the last append is gone after replay.
		lost bool
	}{
		// The last flush reached the disk but for its last bytes.
		{"torn", func(b []byte, last, end int) { clear(b[end-3 : end]) }, true},
		{"garbage", func(b []byte, last, end int) { copy(b[end:], []byte{0xC7, 4, 0xff}) }, false},
		{"flipped", func(b []byte, last, end int) { b[last+headerSize+2] ^= 0x40 }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newStore(t)
			putTree(t, ts.Store, baseKey, 2, 0)
			j := ts.journal.Load()
			last := int(j.seg.size)
			if err := ts.AppendAck(context.Background(), baseKey, uuidOf(baseKey.Task, 0)); err != nil {
				t.Fatal(err)
			}
			seg, end := j.name(j.seg.seq), int(j.seg.size)
			crash(t, ts)
			b, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			tc.damage(b, last, end)
			if err := os.WriteFile(seg, b, 0o600); err != nil {
				t.Fatal(err)
			}
			writeTree(t, ts, nil)

			ts2 := reopen(t, ts)
			task := taskOf(ts2.recover(t, true), baseKey)
			if task == nil {
				t.Fatal("the task did not come back from the journal")
			}
			if len(task.Updates) != 2 {
				t.Errorf("%d updates replayed, want 2", len(task.Updates))
			}
			acked := 0
			for _, u := range task.Updates {
				if u.Acked {
					acked++
				}
			}
			if acked != map[bool]int{true: 0, false: 1}[tc.lost] {
				t.Errorf("%d acknowledgements replayed, want the last one lost=%v", acked, tc.lost)
			}
		})
	}
}

// TestJournalReplaySkipsWhatWasRemoved: records as a removal racing a
// write below it leaves them — the write logged after the removal, its
// directory gone — do not bring the directory back; a directory created
// again after the removal does come back.
func TestJournalReplaySkipsWhatWasRemoved(t *testing.T) {
	ts := newStore(t)
	crash(t, ts)
	base := filepath.Join(slavesDir, "A-S1", frameworksDir)
	var recs []byte
	for _, r := range []struct {
		op   byte
		rel  string
		data string
	}{
		{opMkdir, slavesDir, ""},
		{opMkdir, filepath.Dir(base), ""},
		{opMkdir, base, ""},
		{opMkdir, base + "/a", ""},
		{opWrite, base + "/a/" + frameworkInfoFile, "one"},
		{opRemove, base + "/a", ""},
		{opWrite, base + "/a/" + frameworkInfoFile, "late"},
		{opAppend, base + "/a/" + taskUpdatesFile, "late"},
		{opCreate, base + "/a/" + runCompletedFile, ""},
		{opMkdir, base + "/a/b", ""},
		{opMkdir, base + "/c", ""},
		{opWrite, base + "/c/" + frameworkInfoFile, "two"},
		{opRemove, base + "/c", ""},
		{opMkdir, base + "/c", ""},
		{opWrite, base + "/c/" + frameworkInfoFile, "three"},
	} {
		recs = append(recs, encodeRecord(r.op, r.rel, 0, []byte(r.data))...)
	}
	j := ts.journal.Load()
	if err := os.WriteFile(j.name(j.seg.seq+1), recs, 0o600); err != nil {
		t.Fatal(err)
	}
	ts2 := reopen(t, ts)
	want := map[string]string{"./": "", "c/": "", "c/" + frameworkInfoFile: "three"}
	if got := tree(t, ts2); !maps.Equal(got, want) {
		t.Errorf("replayed tree %v, want %v", got, want)
	}
}

// TestJournalGroupCommit: writers that arrive together share a flush, so
// the store syncs fewer times than it writes records — and every record
// is still in the journal when nothing of the tree reached the disk.
func TestJournalGroupCommit(t *testing.T) {
	const writers, each = 16, 20
	ts := newStore(t)
	keys := make([]Key, writers)
	for i := range keys {
		keys[i] = baseKey
		keys[i].Task = "t-" + string(rune('a'+i))
		putTree(t, ts.Store, keys[i], 0, 0)
	}
	before := ts.Syncs()
	var wg sync.WaitGroup
	for _, k := range keys {
		wg.Go(func() {
			for n := range each {
				if err := ts.AppendUpdate(context.Background(), k, update(k.Framework, k.Task, mesos.TaskState_TASK_RUNNING, n)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	syncs := ts.Syncs() - before
	t.Logf("%d records, %d syncs", writers*each, syncs)
	if syncs >= writers*each {
		t.Errorf("%d syncs for %d records: no flush was shared", syncs, writers*each)
	}
	crash(t, ts)
	writeTree(t, ts, nil)
	st := reopen(t, ts).recover(t, true)
	for _, k := range keys {
		if task := taskOf(st, k); task == nil || len(task.Updates) != each {
			t.Errorf("task %s: %v after replay, want %d updates", k.Task, task, each)
		}
	}
}

// TestJournalCompaction: a segment that outgrows compactAt is retired in
// the background (one syncfs) while writes go to the next; what is left
// replays, and a closed store leaves nothing to replay.
func TestJournalCompaction(t *testing.T) {
	ts := newStore(t)
	j := ts.journal.Load()
	j.compactAt = 4 << 10
	putTree(t, ts.Store, baseKey, 0, 0)
	for n := range 200 {
		if err := ts.AppendUpdate(context.Background(), baseKey, update(baseKey.Framework, baseKey.Task, mesos.TaskState_TASK_RUNNING, n)); err != nil {
			t.Fatal(err)
		}
	}
	j.compacted.Wait()
	j.mu.Lock()
	seq, old := j.seg.seq, len(j.old)
	j.mu.Unlock()
	segs, _ := readNames(j.dir)
	sort.Strings(segs)
	if seq < 3 || old != 0 || len(segs) > 2 {
		t.Errorf("segment %d, %d awaiting compaction, journal holds %v: want rotated and compacted", seq, old, segs)
	}
	final := tree(t, ts)
	crash(t, ts)
	ts2 := reopen(t, ts)
	if got := tree(t, ts2); !maps.Equal(got, final) {
		t.Errorf("tree after replay differs:\n%s", treeDiff(got, final))
	}
	if err := ts2.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ = readNames(j.dir)
	if len(segs) != 1 {
		t.Fatalf("a closed store left %v in the journal, want one zeroed segment", segs)
	}
	if b, err := os.ReadFile(filepath.Join(j.dir, segs[0])); err != nil || !allZero(b) || len(b) < int(j.compactAt) {
		t.Errorf("the segment a closed store left: %d bytes, zero %v, %v; want %d zeros", len(b), allZero(b), err, j.compactAt)
	}
	// Written after Close: synced on its own, and there on the next Open.
	before := ts2.Syncs()
	if err := ts2.AppendAck(context.Background(), baseKey, uuidOf(baseKey.Task, 0)); err != nil {
		t.Fatalf("a write after Close: %v", err)
	}
	if ts2.Syncs() == before {
		t.Error("a write after Close was not synced")
	}
}

// TestJournalRecordBounds: a record naming a path outside meta/ (or the
// journal itself) is damage, never followed.
func TestJournalRecordBounds(t *testing.T) {
	for _, rel := range []string{"../escape", "/etc/passwd", "journal/0000000000000001", ""} {
		rec := encodeRecord(opWrite, rel, 0, []byte("x"))
		_, payload, _, fe := parseFrame(rec)
		if fe != nil {
			t.Fatal(fe.reason)
		}
		if _, _, _, _, err := decodeRecord(payload); err == nil {
			t.Errorf("record for %q decoded", rel)
		}
	}
	rec := encodeRecord(opAppend, "slaves/a", 42, []byte("data"))
	_, payload, _, _ := parseFrame(rec)
	op, rel, off, data, err := decodeRecord(payload)
	if err != nil || op != opAppend || rel != "slaves/a" || off != 42 || !bytes.Equal(data, []byte("data")) {
		t.Errorf("round trip: %d %q %d %q %v", op, rel, off, data, err)
	}
}
