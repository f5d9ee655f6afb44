package gateway

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingStore counts Append calls and can fail them.
type countingStore struct {
	*memStore
	appends atomic.Int64
	fail    atomic.Pointer[error]
	gate    func() // when set, called on each Append before it stores
}

func (s *countingStore) Append(ctx context.Context, recs []Record) error {
	s.appends.Add(1)
	if s.gate != nil {
		s.gate()
	}
	if e := s.fail.Load(); e != nil {
		return *e
	}
	return s.memStore.Append(ctx, recs)
}

func edgeGateway(t *testing.T, st Store, up Sink) *testConnector {
	t.Helper()
	conn := &testConnector{}
	g, err := New(WithLogger(quietLogger()), WithMode(ModeEdge), WithStore(st), WithConnector("c", conn),
		WithCodec("f64", f64Codec), WithConnectorCodec("c", "f64"), WithSink("up", up))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	waitFor(t, "connector up", 5*time.Second, func() bool { return conn.uplink() != nil })
	return conn
}

// TestDeliverBatchEdgeOneCommit: in edge mode the frames of one
// DeliverBatch go to the Store in one Append (one group commit), every one
// is accepted, and they reach the sink in order.
func TestDeliverBatchEdgeOneCommit(t *testing.T) {
	st := &countingStore{memStore: newMemStore()}
	up := newCollectSink()
	conn := edgeGateway(t, st, up)
	ds := make([]Delivery, 20)
	for i := range ds {
		ds[i] = Delivery{Frame: frame("d1", "t", float64(i)), Check: i%2 == 0}
	}
	DeliverBatch(context.Background(), conn.uplink(), ds)
	for i, d := range ds {
		if d.Err != nil || d.Frame != nil {
			t.Fatalf("delivery %d: err %v, frame left %v", i, d.Err, d.Frame != nil)
		}
	}
	if n := st.appends.Load(); n != 1 {
		t.Fatalf("%d Store appends for one batch of 20, want 1", n)
	}
	waitFor(t, "all published", 5*time.Second, func() bool { return up.count() == 20 })
	for i, v := range up.values() {
		if v != float64(i) {
			t.Fatalf("message %d has value %g: out of order %v", i, v, up.values())
		}
	}
	waitFor(t, "store empty", 5*time.Second, func() bool { return st.len() == 0 })
}

// TestDeliverBatchMalformedAndFailure: a malformed payload with Check is
// refused on its own and the others are accepted; a Store that fails
// refuses the whole batch and nothing reaches the sink.
func TestDeliverBatchMalformedAndFailure(t *testing.T) {
	st := &countingStore{memStore: newMemStore()}
	up := newCollectSink()
	conn := edgeGateway(t, st, up)
	ds := []Delivery{
		{Frame: frame("d1", "t", 1), Check: true},
		{Frame: blob("d1", "t"), Check: true},
		{Frame: frame("d1", "t", 2), Check: true},
	}
	DeliverBatch(context.Background(), conn.uplink(), ds)
	if ds[0].Err != nil || ds[2].Err != nil || !errors.Is(ds[1].Err, ErrMalformedPayload) {
		t.Fatalf("outcomes %v, %v, %v: want nil, malformed, nil", ds[0].Err, ds[1].Err, ds[2].Err)
	}
	waitFor(t, "two published", 5*time.Second, func() bool { return up.count() == 2 })

	full := errors.New("disk full")
	st.fail.Store(&full)
	ds = []Delivery{{Frame: frame("d1", "t", 3)}, {Frame: frame("d1", "t", 4)}}
	DeliverBatch(context.Background(), conn.uplink(), ds)
	for i, d := range ds {
		if !errors.Is(d.Err, full) {
			t.Fatalf("delivery %d with a failing store: %v, want the store's error", i, d.Err)
		}
	}
	if up.count() != 2 || st.len() != 0 {
		t.Fatalf("refused batch: %d published, %d records stored; want 2 and 0", up.count(), st.len())
	}
}

// refusingUplink accepts frames until a count, then refuses them; it
// records what it accepted.
type refusingUplink struct {
	mu     sync.Mutex
	accept int
	got    []float64
	gate   chan struct{}
}

func (u *refusingUplink) Deliver(ctx context.Context, f *Frame) error {
	defer f.Release()
	if u.gate != nil {
		<-u.gate
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.got) >= u.accept {
		return ErrDropped
	}
	v, _ := f64Value(f)
	u.got = append(u.got, v)
	return nil
}

func f64Value(f *Frame) (float64, error) {
	m := acquireMessage()
	defer releaseMsg(m)
	if err := f64Codec.Decode(f, m); err != nil {
		return 0, err
	}
	p, _ := m.Point("v")
	return p.Value.Float(), nil
}

// TestDeliverBatchStopsAtRefusal: on an Uplink without DeliverBatch, the
// frames after the first refused one are refused too, so what is accepted
// is a prefix.
func TestDeliverBatchStopsAtRefusal(t *testing.T) {
	u := &refusingUplink{accept: 2}
	ds := make([]Delivery, 5)
	for i := range ds {
		ds[i].Frame = frame("d", "t", float64(i))
	}
	DeliverBatch(context.Background(), u, ds)
	for i, d := range ds {
		if (i < 2) != (d.Err == nil) {
			t.Fatalf("delivery %d: %v", i, d.Err)
		}
	}
	if len(u.got) != 2 {
		t.Fatalf("accepted %v", u.got)
	}
}

// TestPipelineOrderAndWindow: completions come in the order of Submit,
// each with its own outcome, and Submit waits while the window is full.
func TestPipelineOrderAndWindow(t *testing.T) {
	u := &refusingUplink{accept: 6, gate: make(chan struct{})}
	p := NewPipeline(u, 4, time.Second)
	var mu sync.Mutex
	var order []int
	var errs []error
	submit := func(i int) error {
		return p.Submit(context.Background(), frame("d", "t", float64(i)), false, func(err error) {
			mu.Lock()
			order = append(order, i)
			errs = append(errs, err)
			mu.Unlock()
		})
	}
	for i := range 4 {
		if err := submit(i); err != nil {
			t.Fatal(err)
		}
	}
	// The window is full while the uplink holds the first batch.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	err := p.Submit(ctx, frame("d", "t", 99), false, func(error) { t.Error("completion of a frame not submitted") })
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Submit into a full window: %v, want it to wait until its context ends", err)
	}
	close(u.gate)
	for i := 4; i < 8; i++ {
		if err := submit(i); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	if err := submit(8); !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit after Close: %v", err)
	}
	if len(order) != 8 {
		t.Fatalf("%d completions, want 8: %v", len(order), order)
	}
	for i, o := range order {
		if o != i {
			t.Fatalf("completions out of order: %v", order)
		}
		if (i < 6) != (errs[i] == nil) {
			t.Fatalf("completion %d: %v", i, errs[i])
		}
	}
}

// TestPipelineDeliverShares: concurrent Deliver calls on one pipeline
// share batches, and in edge mode commits.
func TestPipelineDeliverShares(t *testing.T) {
	st := &countingStore{memStore: newMemStore()}
	up := newCollectSink()
	conn := edgeGateway(t, st, up)
	p := NewPipeline(conn.uplink(), 16, 10*time.Second)
	defer p.Close()
	var first sync.Once
	st.gate = func() { // the first commit lasts until the window is full
		first.Do(func() {
			waitFor(t, "window full", 5*time.Second, func() bool { return len(p.sem) == p.window })
		})
	}
	var wg sync.WaitGroup
	const n = 200
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Deliver(context.Background(), frame("d", "t", float64(i)), true); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// The first commit holds until 16 frames are in the window, so the
	// frames queued behind it share the next commit: at most 1 + 1 +
	// (n-16) appends even when the rest arrive one at a time (a slow
	// emulated CPU); without batching there are n.
	if a := st.appends.Load(); a > n-14 {
		t.Fatalf("%d appends for %d concurrent frames: no batching", a, n)
	}
	waitFor(t, "all published", 5*time.Second, func() bool { return up.count() == n })
}
