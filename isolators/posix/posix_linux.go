// Package posix holds the posix/cpu and posix/mem isolators: they isolate
// nothing and report a container's usage from /proc, summed over the
// processes in the container's session (the session its init leads).
package posix

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/corral/corral/container"
)

func init() {
	container.RegisterIsolator("posix/cpu", func(container.Options) (container.Isolator, error) {
		return &isolator{name: "posix/cpu", cpu: true, sessions: map[string]int{}}, nil
	})
	container.RegisterIsolator("posix/mem", func(container.Options) (container.Isolator, error) {
		return &isolator{name: "posix/mem", sessions: map[string]int{}}, nil
	})
}

type isolator struct {
	name string
	cpu  bool

	mu       sync.Mutex
	sessions map[string]int // container ID → session ID (its init's PID)
}

func (i *isolator) Name() string { return i.name }

func (i *isolator) Recover(context.Context, []*container.Config) error { return nil }

func (i *isolator) Prepare(context.Context, *container.Config) (*container.LaunchInfo, error) {
	return nil, nil
}

func (i *isolator) Isolate(_ context.Context, id string, pid int) error {
	i.mu.Lock()
	i.sessions[id] = pid
	i.mu.Unlock()
	return nil
}

// Reattach implements container.Reattacher: a container recovered after
// an agent restart is found again by its init's session.
func (i *isolator) Reattach(id string, pid int) {
	i.mu.Lock()
	i.sessions[id] = pid
	i.mu.Unlock()
}

func (i *isolator) Cleanup(_ context.Context, id string) error {
	i.mu.Lock()
	delete(i.sessions, id)
	i.mu.Unlock()
	return nil
}

// Usage implements container.UsageReporter.
func (i *isolator) Usage(_ context.Context, id string, u *container.Usage) error {
	i.mu.Lock()
	sid, ok := i.sessions[id]
	i.mu.Unlock()
	if !ok {
		return nil
	}
	s := sessionUsage(sid)
	if i.cpu {
		u.CPUsUserTimeSecs, u.CPUsSystemTimeSecs = s.utime, s.stime
		u.Set["cpus_user_time_secs"], u.Set["cpus_system_time_secs"] = true, true
	} else {
		u.MemRSSBytes = s.rss
		u.Set["mem_rss_bytes"] = true
	}
	u.Processes, u.Threads = s.procs, s.threads
	u.Set["processes"], u.Set["threads"] = true, true
	return nil
}

type usage struct {
	utime, stime   float64
	rss            uint64
	procs, threads uint32
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// snapshotTTL is how long one walk of /proc serves: usage of every
// container (/state, /monitor/statistics) then costs one walk, not one per
// container and isolator — at 1000 containers that is the difference
// between 2 and 2000 walks per request.
const snapshotTTL = 500 * time.Millisecond

var snapshot struct {
	mu    sync.Mutex
	at    time.Time
	bySID map[int]usage
}

// sessionUsage is what the processes of session sid use, from a /proc walk
// at most snapshotTTL old.
func sessionUsage(sid int) usage {
	snapshot.mu.Lock()
	defer snapshot.mu.Unlock()
	if snapshot.bySID == nil || time.Since(snapshot.at) > snapshotTTL {
		snapshot.bySID, snapshot.at = sessionsUsage(), time.Now()
	}
	return snapshot.bySID[sid]
}

// sessionsUsage walks /proc once and sums usage by session.
func sessionsUsage() map[int]usage {
	out := map[int]usage{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	page := uint64(os.Getpagesize())
	for _, e := range entries {
		name := e.Name()
		if name[0] < '0' || name[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + name + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		k := strings.LastIndexByte(s, ')')
		if k < 0 {
			continue
		}
		// Fields from 3 (state) on: session is field 6, utime 14, stime 15,
		// num_threads 20, rss 24.
		f := strings.Fields(s[k+1:])
		if len(f) < 22 {
			continue
		}
		sid, err := strconv.Atoi(f[3])
		if err != nil || sid <= 0 {
			continue
		}
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		th, _ := strconv.ParseUint(f[17], 10, 32)
		rss, _ := strconv.ParseUint(f[21], 10, 64)
		u := out[sid]
		u.utime += ut / clockTicks
		u.stime += st / clockTicks
		u.threads += uint32(th)
		u.rss += rss * page
		u.procs++
		out[sid] = u
	}
	return out
}
