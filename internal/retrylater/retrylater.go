// Package retrylater keeps items whose operation failed (records a Store
// could not release, say, because the disk was full) and retries the
// operation on all of them in the background with a jittered backoff
// until it succeeds, so a transient failure does not strand them until
// the next restart.
package retrylater

import (
	"context"
	"sync"
	"time"

	"github.com/iotgw/gateway/internal/backoff"
)

// Queue retries Do on the items added to it. Its zero value is not usable:
// set Do. A Queue is safe for concurrent use; Run it once.
type Queue[T any] struct {
	// Do performs the operation on items; an error keeps them all for the
	// next try.
	Do func(ctx context.Context, items []T) error
	// Min and Max bound the backoff between tries. Defaults 100ms and 5s:
	// quick enough that records drain soon after space returns, rare
	// enough not to load a full disk.
	Min, Max time.Duration
	// OnFail, when set, is told of each failed try.
	OnFail func(err error, n int)

	mu    sync.Mutex
	items []T
	kick  chan struct{}
	once  sync.Once
}

func (q *Queue[T]) init() { q.once.Do(func() { q.kick = make(chan struct{}, 1) }) }

// Add queues items for the next try.
func (q *Queue[T]) Add(items ...T) {
	if len(items) == 0 {
		return
	}
	q.init()
	q.mu.Lock()
	q.items = append(q.items, items...)
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// Len returns how many items wait for a successful try.
func (q *Queue[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

func (q *Queue[T]) take() []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = nil
	return items
}

// Run retries until ctx ends, then makes one last try bounded by final
// (skipped when final is not positive). It returns the items still
// pending.
func (q *Queue[T]) Run(ctx context.Context, final time.Duration) []T {
	q.init()
	bo := backoff.Backoff{Min: q.Min, Max: q.Max, Stable: time.Second}
	if bo.Min <= 0 {
		bo.Min = 100 * time.Millisecond
	}
	if bo.Max <= 0 {
		bo.Max = 5 * time.Second
	}
	for {
		select {
		case <-ctx.Done():
			return q.last(final)
		case <-q.kick:
		}
		for q.Len() > 0 {
			if !backoff.Sleep(ctx, bo.Next()) {
				return q.last(final)
			}
			if q.try(ctx) {
				bo.Up()
			}
		}
	}
}

// try runs Do once on everything pending and reports success.
func (q *Queue[T]) try(ctx context.Context) bool {
	items := q.take()
	if len(items) == 0 {
		return true
	}
	if err := q.Do(ctx, items); err != nil {
		if q.OnFail != nil {
			q.OnFail(err, len(items))
		}
		q.mu.Lock()
		q.items = append(items, q.items...)
		q.mu.Unlock()
		return false
	}
	return true
}

func (q *Queue[T]) last(final time.Duration) []T {
	if final > 0 && q.Len() > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), final)
		q.try(ctx)
		cancel()
	}
	return q.take()
}
