package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPipelineDeliversEverything(t *testing.T) {
	sink := newCollectSink()
	conn := &testConnector{}
	g, err := New(WithLogger(quietLogger()), WithConnector("dev", conn), WithCodec("f64", f64Codec),
		WithSink("up", sink), WithWorkers(3), WithBatchSize(7))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, g)
	waitFor(t, "connector up", 2*time.Second, func() bool { return conn.uplink() != nil })
	const n = 1000
	for i := 0; i < n; i++ {
		if err := conn.send(t, fmt.Sprintf("d%d", i%10), "t", float64(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "all messages", 5*time.Second, func() bool { return sink.count() == n })
	stop()
	st := g.Stats()
	if st.FramesIn != n || st.Published != n || st.FramesDropped != 0 || st.Unrouted != 0 {
		t.Fatalf("stats = %+v, want %d in and out, no drops", st, n)
	}
	if conn.disconnects.Load() != 1 {
		t.Fatalf("disconnects = %d, want 1", conn.disconnects.Load())
	}
	ids := map[MessageID]bool{}
	for _, r := range sink.got {
		if r.id.IsZero() || ids[r.id] {
			t.Fatalf("message id %v zero or duplicate", r.id)
		}
		ids[r.id] = true
	}
}

func TestPerDeviceOrderKept(t *testing.T) {
	sink := newCollectSink()
	g, err := New(WithLogger(quietLogger()), WithCodec("f64", f64Codec), WithSink("up", sink), WithWorkers(4), WithBatchSize(3))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	const devices, per = 8, 300
	var wg sync.WaitGroup
	for d := 0; d < devices; d++ {
		wg.Add(1)
		go func(d int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				if err := g.Inject(context.Background(), frame(fmt.Sprintf("dev%d", d), "t", float64(i))); err != nil {
					t.Error(err)
					return
				}
			}
		}(d)
	}
	wg.Wait()
	waitFor(t, "all messages", 5*time.Second, func() bool { return sink.count() == devices*per })
	last := map[string]float64{}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for _, r := range sink.got {
		if prev, ok := last[r.device]; ok && r.v != prev+1 {
			t.Fatalf("device %s: got %v after %v", r.device, r.v, prev)
		}
		last[r.device] = r.v
	}
}

// blockedGateway builds a gateway whose only sink waits on a gate, with
// small queues so they fill quickly.
func blockedGateway(t *testing.T, o Overflow) (*Gateway, *collectSink) {
	t.Helper()
	sink := newCollectSink()
	sink.gate = make(chan struct{})
	g, err := New(WithLogger(quietLogger()), WithCodec("f64", f64Codec), WithSink("up", sink),
		WithWorkers(1), WithBatchSize(1), WithQueueSize(4), WithSinkQueueSize(4), WithOverflow(o))
	if err != nil {
		t.Fatal(err)
	}
	return g, sink
}

func TestOverflowBlockAppliesBackpressure(t *testing.T) {
	g, sink := blockedGateway(t, Block)
	run(t, g)
	accepted := 0
	for i := 0; i < 100; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		err := g.Inject(ctx, frame("d", "t", float64(i)))
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		accepted++
	}
	// Bound: ingress 4 + route batch channel 2 + the batch in the route
	// worker + sink queue 4 + the batch in Publish; never all 100.
	if accepted >= 100 || accepted < 4 {
		t.Fatalf("accepted %d frames before blocking; want a bounded number >= 4", accepted)
	}
	if st := g.Stats(); st.FramesDropped != 0 || st.SinkDropped != 0 {
		t.Fatalf("block policy dropped: %+v", st)
	}
	close(sink.gate)
	waitFor(t, "accepted frames delivered", 5*time.Second, func() bool { return sink.count() == accepted })
}

func TestOverflowDropNewest(t *testing.T) {
	g, sink := blockedGateway(t, DropNewest)
	run(t, g)
	const n = 200
	var accepted, dropped int
	for i := 0; i < n; i++ {
		switch err := g.Inject(context.Background(), frame("d", "t", float64(i))); {
		case err == nil:
			accepted++
		case errors.Is(err, ErrDropped):
			dropped++
		default:
			t.Fatal(err)
		}
	}
	if dropped == 0 || accepted == 0 {
		t.Fatalf("accepted=%d dropped=%d; want both > 0", accepted, dropped)
	}
	close(sink.gate)
	// Everything accepted at ingress either arrives or is counted as a
	// sink-queue drop; nothing vanishes.
	waitFor(t, "accounting", 5*time.Second, func() bool {
		st := g.Stats()
		return uint64(sink.count())+st.SinkDropped == uint64(accepted)
	})
	st := g.Stats()
	if st.FramesDropped != uint64(dropped) {
		t.Fatalf("FramesDropped=%d, want %d", st.FramesDropped, dropped)
	}
	// The survivors are the oldest: drop-newest keeps what came first.
	if v := sink.values(); v[0] != 0 {
		t.Fatalf("first delivered value %v, want 0", v[0])
	}
}

func TestOverflowDropOldest(t *testing.T) {
	g, sink := blockedGateway(t, DropOldest)
	run(t, g)
	const n = 200
	for i := 0; i < n; i++ {
		if err := g.Inject(context.Background(), frame("d", "t", float64(i))); err != nil {
			t.Fatalf("drop-oldest must accept every frame: %v", err)
		}
	}
	// Let the pipeline settle into the blocked sink before opening it.
	time.Sleep(50 * time.Millisecond)
	close(sink.gate)
	waitFor(t, "accounting", 5*time.Second, func() bool {
		st := g.Stats()
		return uint64(sink.count())+st.FramesDropped+st.SinkDropped == n
	})
	st := g.Stats()
	if st.FramesDropped+st.SinkDropped == 0 {
		t.Fatalf("no drops counted: %+v", st)
	}
	v := sink.values()
	if v[len(v)-1] != n-1 {
		t.Fatalf("newest frame %v lost; drop-oldest must keep it (got %v)", float64(n-1), v)
	}
}

func TestRunLeavesNoGoroutinesAndCloseIsIdempotent(t *testing.T) {
	defer goleak.VerifyNone(t)
	conn := &testConnector{}
	g, err := New(WithLogger(quietLogger()), WithConnector("c", conn), WithSink("up", newCollectSink()), WithHealthAddress("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- g.Run(context.Background()) }()
	waitFor(t, "connector up", 2*time.Second, func() bool { return conn.uplink() != nil })
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if err := g.Run(context.Background()); err == nil {
		t.Fatal("Run after Close must fail")
	}
}

func TestDeliverAfterShutdownIsRefused(t *testing.T) {
	conn := &testConnector{}
	g, err := New(WithLogger(quietLogger()), WithConnector("c", conn))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, g)
	waitFor(t, "connector up", 2*time.Second, func() bool { return conn.uplink() != nil })
	up := conn.uplink()
	stop()
	if err := up.Deliver(context.Background(), frame("d", "t", 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Deliver after shutdown = %v, want ErrClosed", err)
	}
}

func TestConnectorRetriedUntilUp(t *testing.T) {
	conn := &testConnector{}
	conn.failFirst.Store(2)
	g, err := New(WithLogger(quietLogger()), WithConnector("c", conn))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	waitFor(t, "connector up after failures", 5*time.Second, func() bool { return conn.uplink() != nil })
	if err := g.Ready(context.Background()); err != nil {
		t.Fatalf("ready after connect: %v", err)
	}
}

func TestShutdownDrainsQueues(t *testing.T) {
	sink := newCollectSink()
	sink.gate = make(chan struct{})
	g, err := New(WithLogger(quietLogger()), WithCodec("f64", f64Codec), WithSink("up", sink), WithWorkers(2), WithQueueSize(1000))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, g)
	for i := 0; i < 500; i++ {
		if err := g.Inject(context.Background(), frame(fmt.Sprint(i%5), "t", float64(i))); err != nil {
			t.Fatal(err)
		}
	}
	go func() { time.Sleep(50 * time.Millisecond); close(sink.gate) }()
	stop()
	if sink.count() != 500 {
		t.Fatalf("after shutdown the sink has %d of 500", sink.count())
	}
}

func TestShutdownDeadlineCountsLoss(t *testing.T) {
	sink := newCollectSink()
	sink.fail.Store(true)
	g, err := New(WithLogger(quietLogger()), WithCodec("f64", f64Codec), WithSink("up", sink), WithShutdownTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, g)
	for i := 0; i < 10; i++ {
		if err := g.Inject(context.Background(), frame("d", "t", float64(i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "publish attempts", 2*time.Second, func() bool { return sink.calls.Load() > 0 })
	start := time.Now()
	stop()
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("shutdown took %v with a dead sink; the deadline is 200ms", took)
	}
	if st := g.Stats(); st.Lost != 10 {
		t.Fatalf("lost = %d, want 10 counted", st.Lost)
	}
}

func TestEdgeModeSpillsAndReplays(t *testing.T) {
	sink := newCollectSink()
	sink.fail.Store(true)
	store := newMemStore()
	g, err := New(WithLogger(quietLogger()), WithCodec("f64", f64Codec), WithSink("up", sink), WithMode(ModeEdge), WithStore(store))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	for i := 0; i < 50; i++ {
		if err := g.Inject(context.Background(), frame("d", "t", float64(i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "spilled to store", 3*time.Second, func() bool { return store.len() == 50 })
	sink.fail.Store(false)
	// A fresh message makes the sink healthy again; replay follows.
	if err := g.Inject(context.Background(), frame("d", "t", 50)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replayed", 5*time.Second, func() bool { return sink.count() == 51 && store.len() == 0 })
	seen := map[float64]bool{}
	for _, v := range sink.values() {
		seen[v] = true
	}
	for i := 0; i <= 50; i++ {
		if !seen[float64(i)] {
			t.Fatalf("value %d never delivered", i)
		}
	}
}

func TestNewRejectsInvalidCombinations(t *testing.T) {
	cases := map[string][]Option{
		"edge without store":   {WithMode(ModeEdge)},
		"router and routes":    {WithRouter(&TopicRouter{}), WithRoute(Route{Topic: "#", Sinks: []string{"x"}})},
		"route to unknown":     {WithRoute(Route{Topic: "a/#", Sinks: []string{"nope"}})},
		"bad filter":           {WithSink("s", newCollectSink()), WithRoute(Route{Topic: "a/#/b", Sinks: []string{"s"}})},
		"duplicate sink":       {WithSink("s", newCollectSink()), WithSink("s", newCollectSink())},
		"duplicate connector":  {WithConnector("c", &testConnector{}), WithConnector("c", &testConnector{})},
		"unknown codec":        {WithConnector("c", &testConnector{}), WithConnectorCodec("c", "nope")},
		"bad qos":              {WithQoS(3)},
		"zero queue":           {WithQueueSize(0)},
		"nil connector":        {WithConnector("c", nil)},
		"unnamed sink":         {WithSink("", newCollectSink())},
		"bad batch":            {WithBatchSize(0)},
		"default codec absent": {WithDefaultCodec("nope")},
	}
	for name, opts := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := New(opts...); err == nil {
				t.Fatal("New accepted an invalid combination")
			}
		})
	}
}

func TestEdgeModeWritesAheadAndAcksAfterPublish(t *testing.T) {
	sink := newCollectSink()
	store := newMemStore()
	g, err := New(WithLogger(quietLogger()), WithCodec("f64", f64Codec), WithSink("up", sink), WithMode(ModeEdge), WithStore(store),
		WithRoute(Route{Topic: "routed/#", Sinks: []string{"up"}}))
	if err != nil {
		t.Fatal(err)
	}
	// Before Run nothing drains the queue, so a delivered frame must be
	// in the store: accepted means durable.
	if err := g.Inject(context.Background(), frame("d", "routed/a", 1)); err != nil {
		t.Fatal(err)
	}
	if store.len() != 1 {
		t.Fatalf("store holds %d records after Deliver, want the frame", store.len())
	}
	run(t, g)
	waitFor(t, "published and acked", 3*time.Second, func() bool { return sink.count() == 1 && store.len() == 0 })
	// Unrouted frames leave the store too.
	if err := g.Inject(context.Background(), frame("d", "elsewhere", 2)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "unrouted acked", 3*time.Second, func() bool { return store.len() == 0 })
}

func TestEdgeModeReplaysFramesLeftByACrash(t *testing.T) {
	store := newMemStore()
	// A frame written ahead by a previous run that never got routed.
	f := frame("d", "t", 42)
	f.ID = NewIDGenerator().Next()
	f.Connector = "gone"
	recs := []Record{{ID: f.ID, Sink: FrameRecord, Payload: appendFrameBinary(nil, f)}}
	if err := store.Append(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	_ = store.Release(context.Background(), recs)
	sink := newCollectSink()
	g, err := New(WithLogger(quietLogger()), WithCodec("f64", f64Codec), WithSink("up", sink), WithMode(ModeEdge), WithStore(store))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	waitFor(t, "replayed", 3*time.Second, func() bool { return sink.count() == 1 && store.len() == 0 })
	sink.mu.Lock()
	got := sink.got[0].id
	sink.mu.Unlock()
	if got != f.ID {
		t.Fatalf("replayed with id %s, want the original %s", got, f.ID)
	}
}

type recordingShaper struct {
	applied, closed int
	policy          Policy
	fail            bool
}

func (s *recordingShaper) Apply(_ context.Context, p Policy) error {
	s.applied++
	s.policy = p
	if s.fail {
		return fmt.Errorf("no CAP_BPF: %w", ErrNotSupported)
	}
	return nil
}

func (s *recordingShaper) Close() error { s.closed++; return nil }

func TestShaperAppliedAndClosedAndOptional(t *testing.T) {
	for _, fail := range []bool{false, true} {
		sh := &recordingShaper{fail: fail}
		sink := newCollectSink()
		p := Policy{Interface: "eth0", Classes: []TrafficClass{{Name: "voice", DSCP: []uint8{46}, Handle: 1<<16 | 10}}}
		g, err := New(WithLogger(quietLogger()), WithShaper(sh, p), WithCodec("f64", f64Codec), WithSink("up", sink))
		if err != nil {
			t.Fatal(err)
		}
		stop := run(t, g)
		// The gateway runs whether or not shaping could be applied.
		if err := g.Inject(context.Background(), frame("d", "t", 1)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "delivery", 2*time.Second, func() bool { return sink.count() == 1 })
		stop()
		if sh.applied != 1 || sh.closed != 1 || sh.policy.Interface != "eth0" {
			t.Fatalf("fail=%v: applied=%d closed=%d policy=%+v", fail, sh.applied, sh.closed, sh.policy)
		}
	}
}
