// Package lograte keeps repeated log lines from flooding a gateway's log: the
// first line of each cause is written at once, repeats within the interval
// are only counted, and the next line of that cause after the interval says
// how many were suppressed:
//
//	var lim = lograte.New(time.Minute)
//	lim.Log(ctx, log, slog.LevelWarn, "acl:"+device, "publish refused", "device", device)
//	// ... msg="publish refused" device=sensor-1 suppressed=1234
//
// A cause is a short key chosen by the caller (a device and a reason, a
// register range and an exception code), never a whole packet.
package lograte

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// MaxCauses bounds the causes a Limiter remembers. When it is full, causes
// whose interval has passed are forgotten first; if none has, the new cause
// is logged without being remembered, so memory stays bounded even when
// every line has a cause of its own.
const MaxCauses = 4096

// Limiter rate-limits log lines per cause. The zero value is not usable; use
// New. A Limiter is safe for concurrent use.
type Limiter struct {
	every time.Duration
	now   func() time.Time

	mu     sync.Mutex
	causes map[string]*cause
}

type cause struct {
	last       time.Time
	suppressed uint64
}

// New returns a Limiter that writes at most one line per cause per interval
// every. every <= 0 means a minute.
func New(every time.Duration) *Limiter {
	if every <= 0 {
		every = time.Minute
	}
	return &Limiter{every: every, now: time.Now, causes: make(map[string]*cause)}
}

// Allow reports whether a line for key should be written now, and how many
// lines of that cause were suppressed since the last one written. Use it
// when the caller builds the line itself; Log does both.
func (l *Limiter) Allow(key string) (ok bool, suppressed uint64) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.causes[key]
	if c == nil {
		if len(l.causes) >= MaxCauses {
			l.evict(now)
		}
		if len(l.causes) < MaxCauses {
			l.causes[key] = &cause{last: now}
		}
		return true, 0
	}
	if now.Sub(c.last) < l.every {
		c.suppressed++
		return false, 0
	}
	n := c.suppressed
	c.last, c.suppressed = now, 0
	return true, n
}

// evict forgets the causes whose interval has passed with nothing
// suppressed since; their next line is written at once anyway.
func (l *Limiter) evict(now time.Time) {
	for k, c := range l.causes {
		if now.Sub(c.last) >= l.every && c.suppressed == 0 {
			delete(l.causes, k)
		}
	}
}

// Log writes msg with args to log at level unless a line of the same cause
// was written within the interval. A line written after suppressed repeats
// carries suppressed=N. A nil log discards.
func (l *Limiter) Log(ctx context.Context, log *slog.Logger, level slog.Level, key, msg string, args ...any) {
	if log == nil || !log.Enabled(ctx, level) {
		return
	}
	ok, n := l.Allow(key)
	if !ok {
		return
	}
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	log.Log(ctx, level, msg, args...)
}
