package resume

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgw/gateway"
)

type slowSink struct{ n atomic.Int64 }

func (s *slowSink) Publish(ctx context.Context, msgs []*gateway.Message) error {
	time.Sleep(200 * time.Microsecond)
	s.n.Add(1)
	return nil
}

func TestUplinkShareRatio(t *testing.T) {
	for _, c := range []struct{ live, backlog int }{{3, 1}, {1, 1}, {1, 4}} {
		u := NewUplinkShare(&slowSink{}, c.live, c.backlog, 1)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, s := range []gateway.Sink{u.Live(), u.Live(), u.Backlog(), u.Backlog()} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					_ = s.Publish(ctx, nil)
				}
			}()
		}
		time.Sleep(300 * time.Millisecond)
		cancel()
		wg.Wait()
		l, b := u.Turns()
		got := float64(l) / float64(b)
		want := float64(c.live) / float64(c.backlog)
		if got < want*0.6 || got > want*1.6 {
			t.Errorf("weights %d:%d: turns %d:%d (ratio %.2f, want %.2f)", c.live, c.backlog, l, b, got, want)
		}
	}
}

func TestUplinkShareNoIdleWhenAlone(t *testing.T) {
	sink := &slowSink{}
	u := NewUplinkShare(sink, 3, 1, 1)
	for i := 0; i < 50; i++ {
		if err := u.Backlog().Publish(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
	}
	if l, b := u.Turns(); l != 0 || b != 50 || sink.n.Load() != 50 {
		t.Fatalf("turns %d:%d, sink %d", l, b, sink.n.Load())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := u.Live().Publish(ctx, nil); err == nil {
		// A free slot may be granted before the context is looked at; the
		// publish then happens, which is also correct. Either way the slot
		// must be free again.
		t.Log("granted before cancel was seen")
	}
	if err := u.Live().Publish(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
}
