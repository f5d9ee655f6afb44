package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// f64Codec decodes an 8-byte big-endian float64 into one point "v" and
// back: a trivial codec that does not allocate.
var f64Codec = CodecFuncs{
	DecodeFunc: func(f *Frame, dst *Message) error {
		if len(f.Payload) != 8 {
			return errors.New("f64: want 8 bytes")
		}
		dst.AddPoint("v", Float(math.Float64frombits(binary.BigEndian.Uint64(f.Payload))), "")
		return nil
	},
	EncodeFunc: func(m *Message, dst []byte) ([]byte, error) {
		p, ok := m.Point("v")
		if !ok {
			return dst, errors.New("f64: no point v")
		}
		return binary.BigEndian.AppendUint64(dst, math.Float64bits(p.Value.Float())), nil
	},
}

func frame(device, topic string, v float64) *Frame {
	f := AcquireFrame()
	f.Device, f.Topic = device, topic
	f.Payload = binary.BigEndian.AppendUint64(f.Payload, math.Float64bits(v))
	return f
}

// collectSink records every message it is given; it can be made to block
// or fail.
type collectSink struct {
	mu      sync.Mutex
	got     []rec
	gate    chan struct{} // when non-nil, Publish waits for it to be closed
	fail    atomic.Bool
	calls   atomic.Int64
	arrived chan struct{}
}

type rec struct {
	device, topic string
	v             float64
	id            MessageID
}

func newCollectSink() *collectSink { return &collectSink{arrived: make(chan struct{}, 1<<16)} }

func (s *collectSink) Publish(ctx context.Context, msgs []*Message) error {
	s.calls.Add(1)
	if g := s.gate; g != nil {
		select {
		case <-g:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if s.fail.Load() {
		return errors.New("upstream down")
	}
	s.mu.Lock()
	for _, m := range msgs {
		p, _ := m.Point("v")
		s.got = append(s.got, rec{m.Device, m.Topic, p.Value.Float(), m.ID})
	}
	s.mu.Unlock()
	for range msgs {
		select {
		case s.arrived <- struct{}{}:
		default:
		}
	}
	return nil
}

func (s *collectSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

func (s *collectSink) values() []float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]float64, len(s.got))
	for i, r := range s.got {
		out[i] = r.v
	}
	return out
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// testConnector is a device-side stand-in whose sessions are observable:
// it counts Connect/Disconnect and exposes its Uplink.
type testConnector struct {
	connects, disconnects atomic.Int32
	failFirst             atomic.Int32 // fail this many Connect calls
	mu                    sync.Mutex
	up                    Uplink
	written               []string
}

func (c *testConnector) Connect(ctx context.Context, up Uplink) error {
	if c.failFirst.Load() > 0 {
		c.failFirst.Add(-1)
		return errors.New("device unreachable")
	}
	c.connects.Add(1)
	c.mu.Lock()
	c.up = up
	c.mu.Unlock()
	return nil
}

func (c *testConnector) Disconnect(ctx context.Context) error {
	c.disconnects.Add(1)
	c.mu.Lock()
	c.up = nil
	c.mu.Unlock()
	return nil
}

func (c *testConnector) Write(ctx context.Context, f *Frame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.written = append(c.written, f.Device+"/"+f.Topic)
	return nil
}

func (c *testConnector) uplink() Uplink {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.up
}

func (c *testConnector) send(t *testing.T, device, topic string, v float64) error {
	t.Helper()
	up := c.uplink()
	if up == nil {
		t.Fatalf("connector not connected")
	}
	return up.Deliver(context.Background(), frame(device, topic, v))
}

// memStore is an in-memory Store for tests of the gateway's use of the
// interface (the durable stores have their own tests).
type memStore struct {
	mu   sync.Mutex
	seq  uint64
	recs map[uint64]Record
	held map[uint64]bool
}

func newMemStore() *memStore { return &memStore{recs: map[uint64]Record{}, held: map[uint64]bool{}} }

func (s *memStore) Append(ctx context.Context, recs []Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range recs {
		s.seq++
		recs[i].Seq = s.seq
		r := recs[i]
		r.Payload = append([]byte(nil), r.Payload...)
		s.recs[s.seq] = r
		s.held[s.seq] = true
	}
	return nil
}

func (s *memStore) Next(ctx context.Context, max int) ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Record
	now := time.Now()
	for _, r := range s.recs {
		if !s.held[r.Seq] && !r.NextTry.After(now) {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	if len(out) > max {
		out = out[:max]
	}
	for _, r := range out {
		s.held[r.Seq] = true
	}
	return out, nil
}

func (s *memStore) Ack(ctx context.Context, seqs ...uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range seqs {
		delete(s.recs, q)
		delete(s.held, q)
	}
	return nil
}

func (s *memStore) Release(ctx context.Context, recs []Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		if old, ok := s.recs[r.Seq]; ok {
			old.Attempts, old.NextTry = r.Attempts, r.NextTry
			s.recs[r.Seq] = old
		}
		delete(s.held, r.Seq)
	}
	return nil
}

func (s *memStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.recs)
}

// run starts g in the background and returns a stop function that cancels
// it and waits for Run to return.
func run(t *testing.T, g *Gateway) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Run did not return within 10s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

var _ io.Closer = (*Gateway)(nil)
