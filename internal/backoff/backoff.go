// Package backoff computes retry delays: exponential growth with full
// jitter, reset only after the protected thing stayed up for a stable period,
// so a link that flaps does not retry at the minimum delay forever.
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

	attempt int
	upSince time.Time
	now     func() time.Time
}

func (b *Backoff) clock() time.Time {
	if b.now != nil {
		return b.now()
	}
	return time.Now()
}

// Up records that the operation succeeded and the link is up from now.
func (b *Backoff) Up() { b.upSince = b.clock() }

// Reset forgets all failures.
func (b *Backoff) Reset() { b.attempt, b.upSince = 0, time.Time{} }

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
		if b.clock().Sub(b.upSince) >= stable {
			b.attempt = 0
		}
		b.upSince = time.Time{}
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
