package agent

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/corral/corral/agent/gc"
)

// Sandbox garbage collection, Mesos' rules. When an executor run ends its
// sandbox (the run directory) is scheduled for removal gc_delay later; so
// are the executor's directory once no run of it is live, and the
// framework's once none of its executors is. A new run of the executor
// takes its executor's and framework's directories back. Only the work
// tree is collected: the agent removes a run's checkpoints (the meta tree)
// itself once its tasks' terminal updates are acknowledged, and collecting
// them earlier would lose updates a scheduler has not seen yet.
//
// Each directory scheduled is touched first, as Mesos does: after a
// restart its mtime is when the run ended (gc.Ended), and recovery
// schedules it again from then.

// executorDir is the work tree's directory of an executor (all its runs).
func (a *Agent) executorDir(agentID, fwID, exID string) string {
	return filepath.Join(a.cfg.WorkDir, "slaves", agentID, "frameworks", fwID, "executors", exID)
}

// frameworkDir is the work tree's directory of a framework.
func (a *Agent) frameworkDir(agentID, fwID string) string {
	return filepath.Join(a.cfg.WorkDir, "slaves", agentID, "frameworks", fwID)
}

// scheduleRunLocked schedules the sandbox of a run that just ended, with
// the executor's and framework's directories when nothing live is left in
// them. It runs under a.mu, with the run already out of the live set: a
// launch that makes a new run of either (and unschedules it) is ordered
// before or after it by the lock, so a live run's directory is never
// scheduled.
func (a *Agent) scheduleRunLocked(ex *executor) {
	if a.gc == nil || !allTerminal(ex) {
		return
	}
	fw := ex.fw
	paths := []string{ex.directory}
	if cur := fw.executors[ex.id]; cur == nil || cur.agentID != ex.agentID {
		paths = append(paths, a.executorDir(ex.agentID, fw.id, ex.id))
		live := false
		for _, e := range fw.executors {
			live = live || e.agentID == ex.agentID
		}
		if !live {
			paths = append(paths, a.frameworkDir(ex.agentID, fw.id))
		}
	}
	now := time.Now()
	for _, p := range paths {
		if err := os.Chtimes(p, now, now); errors.Is(err, fs.ErrNotExist) {
			continue // never made (a launch that failed early)
		} else if err != nil {
			a.log.Warn("touching an ended run's directory", "path", p, "err", err)
		}
		if err := a.gc.Schedule(p, a.gc.Delay()); err != nil {
			a.log.Warn("scheduling a sandbox for removal", "path", p, "err", err)
		}
	}
}

// unscheduleParents takes back the executor's and framework's directories
// of a new run before its sandbox is made in them; a removal under way is
// waited for (gc.Unschedule), so the sandbox is not made in a directory
// being emptied.
func (a *Agent) unscheduleParents(ex *executor) {
	if a.gc == nil {
		return
	}
	a.gc.Unschedule(a.executorDir(ex.agentID, ex.fw.id, ex.id))
	a.gc.Unschedule(a.frameworkDir(ex.agentID, ex.fw.id))
}

// recoverGCLocked schedules, after a restart, every directory of the work
// tree that holds no live run: runs that ended before the restart (their
// schedule was in memory only), runs that ended while the agent was down
// or were destroyed as orphans, and their executors' and frameworks'
// directories. Each is due gc_delay after it ended, read from its mtime
// (the agent touches it at the end) or, if the agent never could, the last
// write to the run's stdout or stderr. Runs still live are left alone;
// those that end later are scheduled when they do.
func (a *Agent) recoverGCLocked() {
	if a.gc == nil {
		return
	}
	live := map[string]bool{}
	for _, fw := range a.frameworks {
		for _, ex := range fw.executors {
			// The recorded sandbox, and where the layout puts it (the
			// work_dir may be named differently since it was recorded).
			live[filepath.Clean(ex.directory)] = true
			live[a.sandboxDir(ex.agentID, fw.id, ex.id, ex.containerID)] = true
			live[a.executorDir(ex.agentID, fw.id, ex.id)] = true
			live[a.frameworkDir(ex.agentID, fw.id)] = true
		}
	}
	var entries []gc.Entry
	slaves := filepath.Join(a.cfg.WorkDir, "slaves")
	for _, agentDir := range subdirs(slaves) {
		for _, fwDir := range subdirs(filepath.Join(agentDir, "frameworks")) {
			var fwEnded time.Time
			for _, exDir := range subdirs(filepath.Join(fwDir, "executors")) {
				var exEnded time.Time
				for _, runDir := range subdirs(filepath.Join(exDir, "runs")) {
					if live[runDir] {
						continue
					}
					ended := runEnded(runDir)
					exEnded = later(exEnded, ended)
					entries = append(entries, gc.Entry{Path: runDir, Ended: ended})
				}
				if live[exDir] {
					continue
				}
				// Never before its newest run ended, so it cannot take a
				// sandbox with it before that sandbox is due.
				exEnded = later(exEnded, ended(exDir))
				fwEnded = later(fwEnded, exEnded)
				entries = append(entries, gc.Entry{Path: exDir, Ended: exEnded})
			}
			if live[fwDir] {
				continue
			}
			entries = append(entries, gc.Entry{Path: fwDir, Ended: later(fwEnded, ended(fwDir))})
		}
	}
	if err := a.gc.Recover(entries); err != nil {
		a.log.Warn("scheduling recovered sandboxes for removal", "err", err)
	}
	a.log.Info("sandboxes scheduled for removal after recovery", "paths", len(entries), "gc_delay", a.gc.Delay())
}

// subdirs lists the directories in dir (not symlinks such as runs/latest).
func subdirs(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// runEnded is when a run ended as far as the disk tells: the run
// directory's mtime, or the last write to its stdout or stderr if later (a
// run the agent could not touch: it was destroyed as an orphan).
func runEnded(dir string) time.Time {
	t := ended(dir)
	for _, f := range []string{"stdout", "stderr"} {
		if fi, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			t = later(t, fi.ModTime())
		}
	}
	return t
}

// ended is gc.Ended, zero (now, to gc.Recover) when it cannot be read.
func ended(path string) time.Time {
	t, err := gc.Ended(path)
	if err != nil {
		return time.Time{}
	}
	return t
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
