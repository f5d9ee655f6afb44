// Package backoff computes retry delays: exponential growth with full
// jitter, reset only after the protected thing stayed up for a stable period
// (or, with ResetAfter, served enough successful operations), so a link that
// flaps without doing useful work does not retry at the minimum delay
// forever, while a link that works between failures does not slide towards
// the maximum delay.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is not safe for concurrent use; give each retry loop its own.
type Backoff struct {
	// Min is the ceiling of the first delay. Default 100ms.
	Min time.Duration
	// Max caps the ceiling. Default 30s.
	Max time.Duration
	// Stable is how long Up must hold before the next failure starts again
	// from Min. Default 10s.
	Stable time.Duration
	// ResetAfter, when positive, also starts the next failure from Min once
	// Success was called that many times since the last Up: a link that
	// did useful work before it failed was healthy, however short it
	// lived. 0 (the default) resets on Stable alone. A small value keeps
	// a peer that drops the connection every few requests (but serves
	// the others) at short delays; a large one, or 0, treats such a peer
	// as flapping and backs off towards Max.
	ResetAfter int

	attempt   int
	upSince   time.Time
	successes int
	now       func() time.Time
}

func (b *Backoff) clock() time.Time {
	if b.now != nil {
		return b.now()
	}
	return time.Now()
}

// Up records that the operation succeeded and the link is up from now.
func (b *Backoff) Up() { b.upSince, b.successes = b.clock(), 0 }

// Success records one successful operation over the link that is up (see
// ResetAfter). It does nothing before Up.
func (b *Backoff) Success() {
	if !b.upSince.IsZero() {
		b.successes++
	}
}

// Reset forgets all failures.
func (b *Backoff) Reset() { b.attempt, b.upSince, b.successes = 0, time.Time{}, 0 }

// Attempt returns how many delays were handed out since the last reset.
func (b *Backoff) Attempt() int { return b.attempt }

// Next returns the delay before the next try: uniform in [0, ceiling], the
// ceiling doubling per failure from Min up to Max.
func (b *Backoff) Next() time.Duration {
	lo, hi, stable := b.Min, b.Max, b.Stable
	if lo <= 0 {
		lo = 100 * time.Millisecond
	}
	if hi <= 0 {
		hi = 30 * time.Second
	}
	if stable <= 0 {
		stable = 10 * time.Second
	}
	if !b.upSince.IsZero() {
		if b.clock().Sub(b.upSince) >= stable || b.ResetAfter > 0 && b.successes >= b.ResetAfter {
			b.attempt = 0
		}
		b.upSince, b.successes = time.Time{}, 0
	}
	ceil := lo
	for i := 0; i < b.attempt && ceil < hi; i++ {
		ceil *= 2
	}
	if ceil > hi {
		ceil = hi
	}
	b.attempt++
	return time.Duration(rand.Int64N(int64(ceil) + 1))
}

// Sleep waits d or until ctx ends, whichever comes first, and reports
// whether the whole delay passed (false: ctx ended).
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
