package resume

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgw/gateway"
)

func TestRetryWheelNeverEarly(t *testing.T) {
	w := NewRetryWheel(10 * time.Millisecond)
	defer w.Close()
	const n = 200
	var early atomic.Int32
	var wg sync.WaitGroup
	wg.Add(n)
	start := time.Now()
	for i := 0; i < n; i++ {
		due := start.Add(time.Duration(5+i%50) * time.Millisecond)
		w.At(due, func() {
			if time.Now().Before(due) {
				early.Add(1)
			}
			wg.Done()
		})
	}
	wg.Wait()
	if early.Load() != 0 {
		t.Fatalf("%d tasks ran before their due time", early.Load())
	}
}

func TestRetryWheelCloseCancels(t *testing.T) {
	w := NewRetryWheel(time.Millisecond)
	var ran atomic.Int32
	for i := 0; i < 50; i++ {
		w.At(time.Now().Add(time.Hour), func() { ran.Add(1) })
	}
	if w.Pending() != 50 {
		t.Fatalf("pending %d", w.Pending())
	}
	w.Close()
	if ran.Load() != 0 || w.At(time.Now(), func() {}) {
		t.Fatal("tasks ran or were accepted after Close")
	}
}

func TestBackoffFullJitter(t *testing.T) {
	b := Backoff{Min: 10 * time.Millisecond, Max: 80 * time.Millisecond}
	for _, c := range []struct {
		n    uint32
		ceil time.Duration
	}{{1, 10 * time.Millisecond}, {2, 20 * time.Millisecond}, {4, 80 * time.Millisecond}, {30, 80 * time.Millisecond}} {
		var maxSeen time.Duration
		for i := 0; i < 2000; i++ {
			d := b.Delay(c.n)
			if d < 0 || d > c.ceil {
				t.Fatalf("attempt %d: delay %v outside [0, %v]", c.n, d, c.ceil)
			}
			maxSeen = max(maxSeen, d)
		}
		if maxSeen < c.ceil/2 {
			t.Fatalf("attempt %d: no jitter over the range, max %v", c.n, maxSeen)
		}
	}
}

// flakySink fails while down is set and records what it got.
type flakySink struct {
	down    atomic.Bool
	mu      sync.Mutex
	got     map[gateway.MessageID]int
	calls   atomic.Int32
	conc    atomic.Int32
	maxConc atomic.Int32
}

func (s *flakySink) Publish(ctx context.Context, msgs []*gateway.Message) error {
	s.calls.Add(1)
	c := s.conc.Add(1)
	defer s.conc.Add(-1)
	for {
		m := s.maxConc.Load()
		if c <= m || s.maxConc.CompareAndSwap(m, c) {
			break
		}
	}
	time.Sleep(time.Millisecond)
	if s.down.Load() {
		return errors.New("link down")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		s.got[m.ID]++
	}
	return nil
}

func fillStore(t testing.TB, s gateway.Store, n int, sink string) []gateway.MessageID {
	t.Helper()
	ids := make([]gateway.MessageID, 0, n)
	for done := 0; done < n; {
		k := min(4096, n-done)
		recs := make([]gateway.Record, k)
		for i := range recs {
			m := gateway.Message{ID: idOf(uint64(done + i + 1)), Device: "dev", Topic: "t", Priority: gateway.PriorityNormal}
			m.AddPoint("v", gateway.Float(float64(i)), "")
			p, err := m.AppendBinary(nil)
			if err != nil {
				t.Fatal(err)
			}
			recs[i] = gateway.Record{ID: m.ID, Priority: m.Priority, Sink: sink, Payload: p}
			ids = append(ids, m.ID)
		}
		if err := s.Append(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
		if err := s.Release(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
		done += k
	}
	return ids
}

func TestDrainerRetriesAndResumesOnRecovery(t *testing.T) {
	st, _ := openTestStore(t, nil)
	ids := fillStore(t, st, 3000, "up")
	sink := &flakySink{got: map[gateway.MessageID]int{}}
	sink.down.Store(true)
	m := NewMachine(MachineConfig{Initial: Online, Logger: quietLogger(), Backlog: func() bool { return st.Stats().Rows > 0 }})
	d, err := NewDrainer(DrainerConfig{Store: st, Sink: sink, Batch: 100, InFlight: 3, Machine: m, Logger: quietLogger(),
		Backoff: Backoff{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	// Two failed publishes in a row: Online -> Degraded -> Offline.
	waitUntil(t, "offline", func() bool { s, _ := m.State(); return s == Offline })
	if tr := m.Transitions(); tr["online->degraded"] != 1 || tr["degraded->offline"] != 1 {
		t.Fatalf("transitions %v", tr)
	}
	calls := sink.calls.Load()
	time.Sleep(100 * time.Millisecond)
	if extra := sink.calls.Load() - calls; extra > 3 {
		t.Fatalf("%d publishes while offline", extra)
	}
	sink.down.Store(false)
	m.Fire(LinkUp) // -> Recovering: the drain resumes at once
	waitUntil(t, "drained", func() bool { return st.Stats().Rows == 0 })
	for _, id := range ids {
		if sink.got[id] == 0 {
			t.Fatalf("message %s never delivered", id)
		}
	}
	if mc := sink.maxConc.Load(); mc > 3 {
		t.Fatalf("%d batches in flight, window is 3", mc)
	}
	waitUntil(t, "online", func() bool { s, _ := m.State(); return s == Online })
	tr := m.Transitions()
	for _, k := range []string{"offline->recovering", "recovering->draining", "draining->online"} {
		if tr[k] == 0 {
			t.Fatalf("transition %s missing: %v", k, tr)
		}
	}
}

func waitUntil(t testing.TB, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
