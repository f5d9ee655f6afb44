package gateway

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testDrainer is a minimal Drainer: it polls the store, hands frames back
// to the gateway and publishes per-sink records to their sinks. As a
// LiveWrapper it counts the live publishes it sees.
type testDrainer struct {
	store    Store
	mu       sync.Mutex
	wrapped  []string
	live     atomic.Int64
	orphaned atomic.Int64
	drained  atomic.Int64
}

func (d *testDrainer) WrapLive(name string, s Sink) Sink {
	d.mu.Lock()
	d.wrapped = append(d.wrapped, name)
	d.mu.Unlock()
	return sinkFunc(func(ctx context.Context, msgs []*Message) error {
		d.live.Add(int64(len(msgs)))
		return s.Publish(ctx, msgs)
	})
}

func (d *testDrainer) Drain(ctx context.Context, t DrainTarget) error {
	for ctx.Err() == nil {
		recs, err := d.store.Next(ctx, 16)
		if err != nil || len(recs) == 0 {
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		for _, r := range recs {
			if r.Sink == FrameRecord {
				t.Frames(ctx, []Record{r})
				continue
			}
			s := t.Sink(r.Sink)
			if s == nil {
				d.orphaned.Add(1)
				_ = d.store.Ack(ctx, r.Seq)
				continue
			}
			m := &Message{}
			if err := m.UnmarshalBinary(r.Payload); err != nil {
				return err
			}
			if err := s.Publish(ctx, []*Message{m}); err != nil {
				_ = d.store.Release(ctx, []Record{r})
				continue
			}
			d.drained.Add(1)
			_ = d.store.Ack(ctx, r.Seq)
		}
	}
	return nil
}

type sinkFunc func(ctx context.Context, msgs []*Message) error

func (f sinkFunc) Publish(ctx context.Context, msgs []*Message) error { return f(ctx, msgs) }

// drainingStore is a Store that is its own Drainer.
type drainingStore struct {
	*memStore
	*testDrainer
}

func TestWithDrainerNeedsEdgeMode(t *testing.T) {
	_, err := New(WithDrainer(&testDrainer{store: newMemStore()}), WithSink("up", newCollectSink()))
	if err == nil {
		t.Fatal("WithDrainer in direct mode: want an error")
	}
	if _, err := New(WithDrainer(nil)); err == nil {
		t.Fatal("WithDrainer(nil): want an error")
	}
}

// TestDrainerTakesOverReplay leaves in the store what a crash and an
// outage would: a frame written ahead, a record spilled for sink "up" and
// one for a sink no longer configured. A Store that implements Drainer is
// used as the drainer: frames go back through decode and routing, records
// to their sink, live traffic through its wrapper.
func TestDrainerTakesOverReplay(t *testing.T) {
	ms := newMemStore()
	ctx := context.Background()
	f := frame("dev", "t", 1.5)
	f.ID = MessageID{1}
	spilled := &Message{ID: MessageID{2}, Device: "dev", Topic: "t"}
	spilled.AddPoint("v", Float(2.5), "")
	p, err := spilled.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	recs := []Record{
		{ID: f.ID, Sink: FrameRecord, Payload: appendFrameBinary(nil, f)},
		{ID: spilled.ID, Sink: "up", Payload: p},
		{ID: MessageID{3}, Sink: "gone", Payload: p},
	}
	f.Release()
	if err := ms.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if err := ms.Release(ctx, recs); err != nil {
		t.Fatal(err)
	}
	d := &testDrainer{store: ms}
	sink := newCollectSink()
	g, err := New(WithMode(ModeEdge), WithStore(drainingStore{ms, d}), WithSink("up", sink),
		WithCodec("f64", f64Codec), WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, g)
	defer stop()
	waitFor(t, "stored frame and record delivered", 5*time.Second, func() bool { return sink.count() == 2 })
	if err := g.Inject(ctx, frame("dev", "t", 3.5)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "live message delivered", 5*time.Second, func() bool { return sink.count() == 3 })
	waitFor(t, "store empty", 5*time.Second, func() bool { return ms.len() == 0 })
	stop()
	if got := d.orphaned.Load(); got != 1 {
		t.Errorf("records of a removed sink: %d orphaned, want 1", got)
	}
	if got := d.drained.Load(); got != 1 {
		t.Errorf("per-sink records published by the drainer: %d, want 1", got)
	}
	// The replayed frame and the new one are live traffic: both went
	// through the wrapper, and the stored record did not.
	if got := d.live.Load(); got != 2 {
		t.Errorf("live messages through the wrapper: %d, want 2", got)
	}
	if len(d.wrapped) != 1 || d.wrapped[0] != "up" {
		t.Errorf("wrapped sinks %v, want [up]", d.wrapped)
	}
	vals := map[float64]bool{}
	for _, v := range sink.values() {
		vals[v] = true
	}
	for _, v := range []float64{1.5, 2.5, 3.5} {
		if !vals[v] {
			t.Errorf("value %v not delivered (got %v)", v, sink.values())
		}
	}
	if st := g.Stats(); st.Replayed < 2 {
		t.Errorf("Stats.Replayed = %d, want >= 2 (frame and record)", st.Replayed)
	}
}
