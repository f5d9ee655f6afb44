package ota

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway"
)

// fakeGateway is a settable Stats and Ready.
type fakeGateway struct {
	mu    sync.Mutex
	st    gateway.Stats
	ready error
}

func (f *fakeGateway) stats() gateway.Stats { f.mu.Lock(); defer f.mu.Unlock(); return f.st }
func (f *fakeGateway) isReady(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready
}
func (f *fakeGateway) add(frames, decodeErrs uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st.FramesIn += frames
	f.st.DecodeErrors += decodeErrs
}

func TestCounters(t *testing.T) {
	ctx := context.Background()
	t.Run("error ratio jumps", func(t *testing.T) {
		f := &fakeGateway{}
		c := &Counters{Stats: f.stats, Ready: f.isReady}
		f.add(100, 0)
		c.Sample()
		f.add(100, 1)
		c.Baseline(ctx)
		f.add(10, 10) // under MinFrames: not yet
		if err := c.Check(ctx); err != nil {
			t.Fatalf("degraded on %d frames: %v", 10, err)
		}
		f.add(20, 10)
		if err := c.Check(ctx); err == nil || !strings.Contains(err.Error(), "error ratio") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("noisy gateway stays below factor", func(t *testing.T) {
		f := &fakeGateway{}
		c := &Counters{Stats: f.stats, Ready: f.isReady}
		c.Sample()
		f.add(100, 30) // 30% errors before the update
		c.Baseline(ctx)
		f.add(100, 40) // 40% after: not twice as bad
		if err := c.Check(ctx); err != nil {
			t.Fatalf("got %v", err)
		}
		f.add(100, 100)
		if err := c.Check(ctx); err == nil {
			t.Fatal("70% after 30% before not degraded")
		}
	})
	t.Run("readiness lost for the grace", func(t *testing.T) {
		f := &fakeGateway{}
		c := &Counters{Stats: f.stats, Ready: f.isReady, ReadyGrace: 50 * time.Millisecond}
		c.Baseline(ctx)
		f.ready = errors.New("sink up: not authorized")
		if err := c.Check(ctx); err != nil {
			t.Fatalf("degraded at once: %v", err)
		}
		waitFor(t, func() bool { return c.Check(ctx) != nil })
		if err := c.Check(ctx); err != nil && !strings.Contains(err.Error(), "not authorized") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("not ready before the update does not count", func(t *testing.T) {
		f := &fakeGateway{ready: errors.New("upstream down")}
		c := &Counters{Stats: f.stats, Ready: f.isReady, ReadyGrace: time.Nanosecond}
		c.Baseline(ctx)
		c.Check(ctx)
		time.Sleep(time.Millisecond)
		if err := c.Check(ctx); err != nil {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("a rolled-back generation is no baseline", func(t *testing.T) {
		f := &fakeGateway{}
		c := &Counters{Stats: f.stats, Ready: f.isReady}
		c.Sample()
		f.add(100, 0)
		c.Baseline(ctx)
		f.add(100, 100) // bad update
		if c.Check(ctx) == nil {
			t.Fatal("bad update not degraded")
		}
		f.add(300, 300) // more errors until the rollback completes
		c.Sample()
		f.add(100, 0) // rolled back, healthy again
		c.Sample()
		c.Baseline(ctx) // the next update: same breakage must be caught
		f.add(100, 100)
		if err := c.Check(ctx); err == nil {
			t.Fatal("the second bad update passed: the first one's errors were taken as the baseline")
		}
	})
}
