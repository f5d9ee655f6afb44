package observe

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgw/gateway"
)

// Signals the spool knows by name. A record's gateway.Record.Sink is its
// signal.
const (
	SignalTraces  = "otlp/traces"
	SignalMetrics = "otlp/metrics"
)

// Spool is the outage queue of telemetry: OTLP request bodies that could
// not be delivered wait in a gateway.Store (its own, so its size bounds is
// the telemetry's quota) at gateway.PriorityLow, and a goroutine sends
// them, oldest first, once the endpoint answers again and the yield
// function says no data is waiting. Each record's Sink names its signal;
// Handle registers how a signal is sent. The metrics side feeds its
// 1-minute rollups the same way: Handle(SignalMetrics, send) once, then
// Put(ctx, SignalMetrics, body) with an OTLP ExportMetricsServiceRequest
// protobuf body for every rollup its exporter could not deliver.
type Spool struct {
	store gateway.Store
	yield func() bool
	retry time.Duration

	mu      sync.Mutex
	senders map[string]func(context.Context, []byte) error

	backlog  atomic.Int64 // records put and not yet delivered; -1: unknown (after a restart)
	put      atomic.Uint64
	sent     atomic.Uint64
	dropped  atomic.Uint64
	failures atomic.Uint64

	stopOnce sync.Once
	stop     context.CancelFunc
	ctx      context.Context
	done     chan struct{}
	kick     chan struct{}
}

// SpoolStats are a Spool's counters.
type SpoolStats struct {
	// Put counts requests stored; Sent those delivered from the store;
	// Dropped those the store refused (quota reached: ErrStoreFull) or
	// that no handler knows; Failures failed replay attempts.
	Put, Sent, Dropped, Failures uint64
}

// NewSpool returns a spool over st (see WithSpool for yield and retry).
// Start begins the replays.
func NewSpool(st gateway.Store, yield func() bool, retry time.Duration) *Spool {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Spool{
		store: st, yield: yield, retry: retry,
		senders: map[string]func(context.Context, []byte) error{},
		stop:    cancel, ctx: ctx, done: make(chan struct{}), kick: make(chan struct{}, 1),
	}
	s.backlog.Store(-1)
	return s
}

// Handle sets how records of signal are sent: send gets the body given to
// Put and returns nil once the endpoint accepted it.
func (s *Spool) Handle(signal string, send func(ctx context.Context, body []byte) error) {
	s.mu.Lock()
	s.senders[signal] = send
	s.mu.Unlock()
}

// Pending reports whether the spool may hold records: new telemetry then
// goes to the spool too, behind them, so it is delivered in order.
func (s *Spool) Pending() bool { return s.backlog.Load() != 0 }

// Put stores body for signal durably. A store that is full (the quota)
// makes Put fail; the request is counted as dropped.
func (s *Spool) Put(ctx context.Context, signal string, body []byte) error {
	var id gateway.MessageID
	_, _ = rand.Read(id[:])
	now := time.Now()
	recs := []gateway.Record{{ID: id, Priority: gateway.PriorityLow, Sink: signal, Payload: body, Enqueued: now, NextTry: now}}
	if err := s.store.Append(ctx, recs); err != nil {
		s.dropped.Add(1)
		return fmt.Errorf("observe: spool %s: %w", signal, err)
	}
	if err := s.store.Release(ctx, recs); err != nil {
		// Durable but held: it is replayed after the next start.
		s.dropped.Add(1)
		return fmt.Errorf("observe: spool %s: release: %w", signal, err)
	}
	s.put.Add(1)
	for {
		b := s.backlog.Load()
		if b < 0 || s.backlog.CompareAndSwap(b, b+1) {
			break
		}
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return nil
}

// Start begins sending stored records.
func (s *Spool) Start() { go s.run() }

// Stop ends the replays and waits for the one in flight.
func (s *Spool) Stop() {
	s.stopOnce.Do(func() {
		s.stop()
	})
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
	}
}

// Stats returns the counters.
func (s *Spool) Stats() SpoolStats {
	return SpoolStats{Put: s.put.Load(), Sent: s.sent.Load(), Dropped: s.dropped.Load(), Failures: s.failures.Load()}
}

func (s *Spool) run() {
	defer close(s.done)
	for {
		wait := s.drain()
		t := time.NewTimer(wait)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-s.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// drain sends stored records until the store is empty or one fails, and
// says how long to wait before trying again.
func (s *Spool) drain() time.Duration {
	for s.ctx.Err() == nil {
		if s.yield != nil && s.yield() {
			return s.retry
		}
		recs, err := s.store.Next(s.ctx, 16)
		if err != nil {
			return s.retry
		}
		if len(recs) == 0 {
			s.backlog.Store(0)
			return s.retry
		}
		var acks []uint64
		var back []gateway.Record
		for i, r := range recs {
			s.mu.Lock()
			send := s.senders[r.Sink]
			s.mu.Unlock()
			if send == nil {
				s.dropped.Add(1)
				acks = append(acks, r.Seq)
				continue
			}
			ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
			err := send(ctx, r.Payload)
			cancel()
			if err != nil {
				s.failures.Add(1)
				back = recs[i:]
				break
			}
			s.sent.Add(1)
			acks = append(acks, r.Seq)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if len(acks) > 0 {
			_ = s.store.Ack(ctx, acks...)
			for n := int64(len(acks)); ; {
				b := s.backlog.Load()
				if b <= 0 || s.backlog.CompareAndSwap(b, max(b-n, 1)) {
					break
				}
			}
		}
		if len(back) > 0 {
			_ = s.store.Release(ctx, back)
		}
		cancel()
		if len(back) > 0 {
			return s.retry
		}
	}
	return s.retry
}
