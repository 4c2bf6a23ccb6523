// Package sdnotify tells systemd how a Type=notify service is doing
// (sd_notify(3)): ready once start-up (the agent: recovery) is complete,
// stopping when shutdown begins, and alive at the pace WatchdogSec= asks.
// Outside systemd (no NOTIFY_SOCKET) every call does nothing, so callers
// need not know how they were started.
package sdnotify

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Ready reports that start-up is complete. For Type=notify units systemd
// holds back units ordered after this one, and `systemctl start` waits,
// until it arrives.
func Ready() error { return notify(daemon.SdNotifyReady) }

// Stopping reports that shutdown has begun, so systemd waits for the exit
// (up to TimeoutStopSec=) instead of counting it as a failure.
func Stopping() error { return notify(daemon.SdNotifyStopping) }

func notify(state string) error {
	// The environment is kept (unsetEnvironment false): Watchdog reads
	// WATCHDOG_USEC after Ready, and the agent builds task environments from
	// scratch, so nothing inherits NOTIFY_SOCKET from it.
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("sd_notify %s: %w", state, err)
	}
	return nil
}

// Watchdog keeps systemd's watchdog fed until ctx ends: every half of
// WATCHDOG_USEC it sends WATCHDOG=1, as sd_watchdog_enabled(3) advises.
// When the watchdog is off for this process (no WATCHDOG_USEC, or a
// WATCHDOG_PID naming another process that passed its environment on) it
// returns nil at once.
//
// check, when not nil, runs before each ping and an error withholds it: a
// loop that pings from its own goroutine proves only that the Go runtime
// runs, so check should ask the parts that can wedge (the agent's state
// lock, its master link) whether they still make progress. A check that
// fails, or blocks, withholds pings and lets systemd restart the service
// after WatchdogSec=.
func Watchdog(ctx context.Context, check func() error) error {
	every, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return fmt.Errorf("systemd watchdog: %w", err)
	}
	if every == 0 {
		return nil
	}
	tick := time.NewTicker(every / 2)
	defer tick.Stop()
	for {
		switch err := healthy(check); {
		case err != nil:
			slog.Warn("withholding systemd watchdog ping", "err", err)
		default:
			if err := notify(daemon.SdNotifyWatchdog); err != nil {
				slog.Warn("systemd watchdog ping failed", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func healthy(check func() error) error {
	if check == nil {
		return nil
	}
	return check()
}
