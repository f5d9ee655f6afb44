package resume

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/RussellLuo/timingwheel"
)

// RetryWheel schedules wake-ups on a hierarchical timing wheel: O(1) per
// timer however many records wait, which a heap of a million retry times
// is not.
//
// The wheel fires up to one tick early and runs each task in a goroutine
// of its own. RetryWheel guards against both: a task that fires before its
// due time re-arms itself for the rest, and every task is counted so Close
// waits for the ones already running. Tasks must be short (they run on the
// wheel's goroutines): send on a channel, do not publish.
type RetryWheel struct {
	tw   *timingwheel.TimingWheel
	wg   sync.WaitGroup
	mu   sync.Mutex
	live map[*timingwheel.Timer]struct{}
	shut bool
}

// NewRetryWheel starts a wheel with the given tick (default 10ms; 1ms at
// least) and 512 slots per level.
func NewRetryWheel(tick time.Duration) *RetryWheel {
	if tick <= 0 {
		tick = 10 * time.Millisecond
	}
	tick = max(tick, time.Millisecond)
	w := &RetryWheel{tw: timingwheel.NewTimingWheel(tick, 512), live: map[*timingwheel.Timer]struct{}{}}
	w.tw.Start()
	return w
}

// At runs fn once, not before due. It reports false after Close.
func (w *RetryWheel) At(due time.Time, fn func()) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.shut {
		return false
	}
	w.armLocked(due, fn)
	return true
}

func (w *RetryWheel) armLocked(due time.Time, fn func()) {
	w.wg.Add(1)
	var t *timingwheel.Timer
	t = w.tw.AfterFunc(time.Until(due), func() {
		defer w.wg.Done()
		w.mu.Lock()
		delete(w.live, t)
		if time.Now().Before(due) && !w.shut {
			w.armLocked(due, fn) // fired a tick early
			w.mu.Unlock()
			return
		}
		shut := w.shut
		w.mu.Unlock()
		if !shut {
			fn()
		}
	})
	w.live[t] = struct{}{}
}

// Pending returns how many wake-ups are scheduled.
func (w *RetryWheel) Pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.live)
}

// Close cancels pending wake-ups, stops the wheel and waits for tasks that
// already started.
func (w *RetryWheel) Close() {
	w.mu.Lock()
	if w.shut {
		w.mu.Unlock()
		return
	}
	w.shut = true
	for t := range w.live {
		if t.Stop() {
			w.wg.Done()
		}
	}
	clear(w.live)
	w.mu.Unlock()
	w.tw.Stop()
	w.wg.Wait()
}

// Backoff is exponential backoff with full jitter: the delay before retry
// n (n >= 1) is uniform in [0, min(Max, Min * 2^(n-1))]. Full jitter
// spreads a fleet of gateways that lost the same link, so they do not
// reconnect in lockstep.
type Backoff struct {
	// Min is the ceiling of the first delay. Default 100ms.
	Min time.Duration
	// Max caps the ceiling. Default 5s: short, because records back off
	// only while a publish is attempted, and a drain should resume soon
	// after the link returns.
	Max time.Duration
}

// Delay returns the delay before retry attempt n.
func (b Backoff) Delay(n uint32) time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = 100 * time.Millisecond
	}
	if hi <= 0 {
		hi = 5 * time.Second
	}
	ceil := lo
	for i := uint32(1); i < n && ceil < hi; i++ {
		ceil *= 2
	}
	ceil = min(ceil, hi)
	return time.Duration(rand.Int64N(int64(ceil) + 1))
}
