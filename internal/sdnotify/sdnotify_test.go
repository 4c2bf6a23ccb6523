package sdnotify

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// fakeSystemd is a NOTIFY_SOCKET: a unixgram socket like systemd's.
type fakeSystemd struct {
	conn *net.UnixConn
}

func listen(t *testing.T) *fakeSystemd {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "")
	t.Setenv("WATCHDOG_PID", "")
	return &fakeSystemd{conn: conn}
}

// next returns the next message, or "" if none came within d.
func (f *fakeSystemd) next(t *testing.T, d time.Duration) string {
	t.Helper()
	buf := make([]byte, 256)
	if err := f.conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	n, err := f.conn.Read(buf)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestReadyStopping(t *testing.T) {
	sd := listen(t)
	if err := Ready(); err != nil {
		t.Fatal(err)
	}
	if got := sd.next(t, time.Second); got != "READY=1" {
		t.Errorf("got %q, want READY=1", got)
	}
	if err := Stopping(); err != nil {
		t.Fatal(err)
	}
	if got := sd.next(t, time.Second); got != "STOPPING=1" {
		t.Errorf("got %q, want STOPPING=1", got)
	}
}

func TestOutsideSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	if err := Ready(); err != nil {
		t.Errorf("Ready without NOTIFY_SOCKET: %v", err)
	}
	if err := Stopping(); err != nil {
		t.Errorf("Stopping without NOTIFY_SOCKET: %v", err)
	}
	done := make(chan error)
	go func() { done <- Watchdog(context.Background(), nil) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Watchdog without WATCHDOG_USEC: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watchdog without WATCHDOG_USEC did not return")
	}
}

func TestWatchdog(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pid   string
		pings bool
	}{
		{"own pid", strconv.Itoa(os.Getpid()), true},
		{"no pid", "", true},
		// WATCHDOG_PID of another process: the variables were inherited
		// from a parent that owns the watchdog.
		{"other pid", strconv.Itoa(os.Getpid() + 1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sd := listen(t)
			t.Setenv("WATCHDOG_USEC", "40000") // ping every 20ms
			t.Setenv("WATCHDOG_PID", tc.pid)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- Watchdog(ctx, nil) }()
			if !tc.pings {
				if got := sd.next(t, 200*time.Millisecond); got != "" {
					t.Errorf("watchdog of another process pinged: %q", got)
				}
				cancel()
				if err := <-done; err != nil {
					t.Error(err)
				}
				return
			}
			start := time.Now()
			for i := range 5 {
				if got := sd.next(t, 2*time.Second); got != "WATCHDOG=1" {
					t.Fatalf("ping %d: got %q, want WATCHDOG=1", i, got)
				}
			}
			// 5 pings at 20ms: the first at once, then four intervals.
			if took := time.Since(start); took < 60*time.Millisecond {
				t.Errorf("5 pings in %v: faster than half of WATCHDOG_USEC", took)
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Error(err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("Watchdog did not return after its context ended")
			}
		})
	}
}

// TestWatchdogCheck: while check fails no ping goes out, so systemd would
// restart a wedged service; pings resume when it passes again.
func TestWatchdogCheck(t *testing.T) {
	sd := listen(t)
	t.Setenv("WATCHDOG_USEC", "40000")
	var sick atomic.Bool
	sick.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Watchdog(ctx, func() error {
		if sick.Load() {
			return errors.New("state lock held for too long")
		}
		return nil
	})
	if got := sd.next(t, 200*time.Millisecond); got != "" {
		t.Fatalf("pinged while check failed: %q", got)
	}
	sick.Store(false)
	if got := sd.next(t, 2*time.Second); got != "WATCHDOG=1" {
		t.Fatalf("got %q after check recovered, want WATCHDOG=1", got)
	}
}

func TestWatchdogBadEnvironment(t *testing.T) {
	listen(t)
	for _, usec := range []string{"soon", "-5", "0"} {
		t.Setenv("WATCHDOG_USEC", usec)
		if err := Watchdog(context.Background(), nil); err == nil {
			t.Errorf("WATCHDOG_USEC=%q accepted", usec)
		}
	}
}
