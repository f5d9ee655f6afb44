package retrylater

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestQueueRetriesUntilDone(t *testing.T) {
	var mu sync.Mutex
	var done []int
	fails := 3
	q := &Queue[int]{Min: time.Millisecond, Max: 5 * time.Millisecond}
	q.Do = func(_ context.Context, items []int) error {
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			return errors.New("disk full")
		}
		done = append(done, items...)
		return nil
	}
	var failed int
	q.OnFail = func(error, int) { failed++ }
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan []int)
	go func() { stopped <- q.Run(ctx, 0) }()
	q.Add(1, 2)
	q.Add(3)
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(done)
		mu.Unlock()
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("items not done after retries: %v", done)
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if left := <-stopped; len(left) != 0 {
		t.Fatalf("left %v", left)
	}
	if failed != 3 {
		t.Fatalf("OnFail called %d times, want 3", failed)
	}
}

func TestQueueRunReturnsPendingAtEnd(t *testing.T) {
	var tries int
	q := &Queue[int]{Do: func(context.Context, []int) error { tries++; return errors.New("still full") }}
	q.Add(7)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	left := q.Run(ctx, time.Second)
	if len(left) != 1 || left[0] != 7 || tries != 1 {
		t.Fatalf("left %v after %d tries; want [7] after the one final try", left, tries)
	}
}
