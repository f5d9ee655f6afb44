package backoff

import (
	"context"
	"testing"
	"time"
)

func TestNextGrowsAndCaps(t *testing.T) {
	b := &Backoff{Min: 10 * time.Millisecond, Max: 80 * time.Millisecond}
	ceilings := []time.Duration{10, 20, 40, 80, 80, 80}
	for i, c := range ceilings {
		c *= time.Millisecond
		for j := 0; j < 50; j++ { // full jitter: every draw within [0, ceiling]
			bb := *b
			if d := bb.Next(); d < 0 || d > c {
				t.Fatalf("attempt %d: delay %v outside [0,%v]", i, d, c)
			}
		}
		b.Next()
	}
}

func TestResetOnlyAfterStablePeriod(t *testing.T) {
	now := time.Unix(0, 0)
	b := &Backoff{Min: time.Millisecond, Max: time.Second, Stable: 10 * time.Second, now: func() time.Time { return now }}
	for i := 0; i < 5; i++ {
		b.Next()
	}
	b.Up()
	now = now.Add(time.Second) // flapped after 1s: keep growing
	b.Next()
	if b.Attempt() != 6 {
		t.Fatalf("attempt after short uptime = %d, want 6", b.Attempt())
	}
	b.Up()
	now = now.Add(11 * time.Second) // stable: start over
	b.Next()
	if b.Attempt() != 1 {
		t.Fatalf("attempt after stable uptime = %d, want 1", b.Attempt())
	}
}

func TestSleep(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep with a live context reported it was cut")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep with an ended context reported the whole delay")
	}
	if time.Since(start) > time.Minute {
		t.Fatal("Sleep waited past its context")
	}
}

// TestResetAfterSuccesses: a link that served ResetAfter operations before
// it failed starts again from Min, however short it was up; one that
// served fewer keeps growing; the zero value keeps the Stable-only rule.
func TestResetAfterSuccesses(t *testing.T) {
	now := time.Unix(0, 0)
	clock := func() time.Time { return now }
	b := &Backoff{Min: time.Millisecond, Max: time.Second, Stable: 10 * time.Second, ResetAfter: 3, now: clock}
	for i := 0; i < 5; i++ {
		b.Next()
	}
	b.Success() // before Up: not counted
	b.Up()
	b.Success()
	b.Success()
	now = now.Add(time.Second)
	b.Next()
	if b.Attempt() != 6 {
		t.Fatalf("attempt after 2 of 3 successes = %d, want 6", b.Attempt())
	}
	b.Up()
	for i := 0; i < 3; i++ {
		b.Success()
	}
	now = now.Add(time.Second) // far below Stable
	b.Next()
	if b.Attempt() != 1 {
		t.Fatalf("attempt after 3 successes = %d, want 1", b.Attempt())
	}
	// Successes do not carry over to the next Up.
	b.Next()
	b.Up()
	b.Next()
	if b.Attempt() != 3 {
		t.Fatalf("attempt after an Up with no success = %d, want 3", b.Attempt())
	}

	plain := &Backoff{Min: time.Millisecond, Max: time.Second, Stable: 10 * time.Second, now: clock}
	plain.Next()
	plain.Next()
	plain.Up()
	for i := 0; i < 100; i++ {
		plain.Success()
	}
	plain.Next()
	if plain.Attempt() != 3 {
		t.Fatalf("ResetAfter 0: attempt after successes = %d, want 3 (Stable only)", plain.Attempt())
	}
}
