package resume

import (
	"context"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgw/gateway"
)

// stack is the resume pipeline in one process: devices append to the
// store, the drainer forwards to mosquitto, probes feed the state machine.
type stack struct {
	store   *SQLiteStore
	machine *Machine
	drainer *Drainer
	monitor *Monitor
	walk    chan State
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	next  atomic.Uint64
	mu    sync.Mutex
	added []gateway.MessageID
}

func newStack(t *testing.T, broker, topic string, probes []Probe) *stack {
	t.Helper()
	st, _ := openTestStore(t, nil)
	s := &stack{store: st, walk: make(chan State, 4096)}
	s.machine = NewMachine(MachineConfig{Logger: quietLogger(), Backlog: func() bool { return st.Stats().Rows > 0 }})
	s.machine.Watch(s.walk)
	sink := &pahoSink{broker: broker, clientID: "stack-" + topic, topic: topic}
	t.Cleanup(func() { _ = sink.Close() })
	var err error
	s.drainer, err = NewDrainer(DrainerConfig{Store: st, Sink: sink, Batch: 256, InFlight: 4, Machine: s.machine, Logger: quietLogger(),
		Backoff: Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	s.monitor, err = NewMonitor(MonitorConfig{Probes: probes, Machine: s.machine, Interval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(2)
	go func() { defer s.wg.Done(); _ = s.drainer.Run(ctx) }()
	go func() { defer s.wg.Done(); s.monitor.Run(ctx) }()
	t.Cleanup(s.stop)
	return s
}

func (s *stack) stop() { s.cancel(); s.wg.Wait() }

// produce appends n records the way the gateway spills them.
func (s *stack) produce(t *testing.T, n int) {
	recs := make([]gateway.Record, n)
	for i := range recs {
		m := gateway.Message{ID: idOf(s.next.Add(1)), Device: "dev", Topic: "t", Priority: gateway.PriorityNormal}
		p, _ := m.AppendBinary(nil)
		recs[i] = gateway.Record{ID: m.ID, Priority: m.Priority, Sink: "up", Payload: p}
	}
	if err := s.store.Append(context.Background(), recs); err != nil {
		t.Error(err)
		return
	}
	if err := s.store.Release(context.Background(), recs); err != nil {
		t.Error(err)
	}
	s.mu.Lock()
	for _, r := range recs {
		s.added = append(s.added, r.ID)
	}
	s.mu.Unlock()
}

// runProducer appends a few records every 10ms until stop is closed.
func (s *stack) runProducer(t *testing.T, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				s.produce(t, 20)
			}
		}
	}()
	return &wg
}

func (s *stack) waitState(t *testing.T, want State, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if st, _ := s.machine.State(); st == want {
			return
		}
		if time.Now().After(deadline) {
			st, _ := s.machine.State()
			t.Fatalf("state %s after %v, want %s (transitions %v)", st, within, want, s.machine.Transitions())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// walkSince drains the watched states into a slice.
func (s *stack) walkSince() []State {
	var out []State
	for {
		select {
		case st := <-s.walk:
			out = append(out, st)
		default:
			return out
		}
	}
}

func containsWalk(walk []State, want ...State) bool {
	i := 0
	for _, s := range walk {
		if i < len(want) && s == want[i] {
			i++
		}
	}
	return i == len(want)
}

func (s *stack) checkAllDelivered(t *testing.T, cons *consumer) {
	t.Helper()
	s.mu.Lock()
	added := append([]gateway.MessageID(nil), s.added...)
	s.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	missing := added
	for len(missing) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		var still []gateway.MessageID
		for _, id := range missing {
			if !cons.has(id) {
				still = append(still, id)
			}
		}
		missing = still
	}
	if len(missing) > 0 {
		lo, hi := binary.BigEndian.Uint64(missing[0][8:]), binary.BigEndian.Uint64(missing[len(missing)-1][8:])
		t.Fatalf("%d of %d stored messages never reached the consumer (numbers %d..%d); store %+v, drainer %+v",
			len(missing), len(added), lo, hi, s.store.Stats(), s.drainer.Stats())
	}
	if len(added) == 0 {
		t.Fatal("nothing was produced")
	}
}

func cloudHTTP(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(srv.Close)
	return srv
}

// TestBrokerRestart stops mosquitto while messages keep coming and starts
// it again: publishes fail (Online -> Degraded -> Offline), probes keep
// trying the upstream (Recovering, back to Offline while it is down), and
// once it is back the backlog drains (Draining -> Online) with nothing lost.
func TestBrokerRestart(t *testing.T) {
	mq := startMosquitto(t)
	topic := "resume/restart"
	cons := newConsumer(t, mq.addr, topic)
	hb, err := ListenHeartbeat("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hb.Close() })
	srv := cloudHTTP(t)
	s := newStack(t, mq.addr, topic, []Probe{&HeartbeatProbe{Addr: hb.Addr().String()}, &HTTPHeadProbe{URL: srv.URL}, &ICMPProbe{Host: "127.0.0.1"}})
	stop := make(chan struct{})
	prod := s.runProducer(t, stop)
	time.Sleep(300 * time.Millisecond)
	mq.stop()
	s.waitState(t, Offline, 5*time.Second)
	time.Sleep(700 * time.Millisecond) // a backlog builds
	if rows := s.store.Stats().Rows; rows == 0 {
		t.Fatal("no backlog while the broker was down")
	}
	s.walkSince()
	t.Logf("produced before restart: %d, drained %+v", s.next.Load(), s.drainer.Stats())
	mq.start()
	// Devices keep sending through the restart, then stop so the drain
	// can finish even on a loaded machine.
	time.Sleep(200 * time.Millisecond)
	close(stop)
	prod.Wait()
	s.waitState(t, Online, 20*time.Second)
	walk := s.walkSince()
	// While the broker is down the probes still answer, so the machine
	// cycles Offline -> Recovering -> Offline; the restart may find it in
	// either.
	if !containsWalk(walk, Draining, Online) {
		t.Fatalf("walk after restart %v, want ... -> draining -> online", walk)
	}
	s.checkAllDelivered(t, cons)
	tr := s.machine.Transitions()
	for _, k := range []string{"online->degraded", "degraded->offline", "offline->recovering", "recovering->draining", "draining->online"} {
		if tr[k] == 0 {
			t.Fatalf("transition %s never happened: %v", k, tr)
		}
	}
}
