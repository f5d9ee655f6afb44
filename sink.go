package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgw/gateway/internal/backoff"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// sinkRun owns one sink's bounded queue and the goroutine that publishes
// from it. The queue belongs to the sink's name: a reload that changes the
// sink's configuration swaps the implementation under the same queue, so
// nothing queued is lost and a retry loop stuck on a broken sink picks up
// the replacement at once.
type sinkRun struct {
	g    *Gateway
	name string
	impl atomic.Pointer[namedSink]
	q    chan *Message

	started   atomic.Pointer[namedSink] // the implementation Start succeeded on
	swapped   chan struct{}             // a new implementation is in place
	retired   chan struct{}             // the sink was removed: pushes drop, retries end
	retireOne sync.Once

	out, errs, dropped, lost atomic.Uint64
	healthy                  atomic.Bool
	lastErr                  atomic.Pointer[string]

	attrs  attribute.Set         // sink=NAME, the label of its metrics
	recOpt []metric.RecordOption // records with attrs, built once
}

func (g *Gateway) newSinkRun(ns namedSink) *sinkRun {
	sr := &sinkRun{
		g: g, name: ns.name,
		q:       make(chan *Message, g.s.sinkQueueSize),
		swapped: make(chan struct{}, 1),
		retired: make(chan struct{}),
		attrs:   attribute.NewSet(attrSink.String(ns.name)),
	}
	sr.recOpt = []metric.RecordOption{metric.WithAttributeSet(sr.attrs)}
	g.liveSink(&ns)
	sr.impl.Store(&ns)
	sr.healthy.Store(true)
	return sr
}

func (sr *sinkRun) current() *namedSink { return sr.impl.Load() }

// closeImpl closes the current implementation if the gateway built or
// started it.
func (sr *sinkRun) closeImpl() {
	cur := sr.current()
	if cur.hash != "" || sr.started.Load() == cur {
		closeIfCloser(sr.g.log, "sink "+sr.name, cur.sink)
	}
}

// ensureStarted starts the current implementation once if it is a Starter.
func (sr *sinkRun) ensureStarted() error {
	cur := sr.current()
	st, ok := cur.sink.(Starter)
	if !ok || sr.started.Load() == cur {
		return nil
	}
	ctx, cancel := context.WithTimeout(sr.g.pubCtx, 30*time.Second)
	defer cancel()
	if err := st.Start(ctx); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	sr.started.Store(cur)
	return nil
}

func (sr *sinkRun) swap(ns namedSink) {
	sr.g.liveSink(&ns)
	sr.impl.Store(&ns)
	sr.g.registerComponent("sink/"+sr.name, sr, ns.sink, attrSink.String(sr.name))
	select {
	case sr.swapped <- struct{}{}:
	default:
	}
}

func (sr *sinkRun) retire() { sr.retireOne.Do(func() { close(sr.retired) }) }

// push queues m (one reference of it) under the overflow policy. In edge
// mode a message the queue cannot take is spilled to the Store, not dropped.
func (sr *sinkRun) push(m *Message) {
	if tryEnqueue(sr.q, m, sr.g.s.overflow, func(old *Message) {
		if !sr.g.spillOne(sr, old) {
			sr.dropped.Add(1)
			sr.g.finishMsg(old, sr.name, 0, nowNS(), 0, outcomeDrop, errSinkQueueFull)
			old.release()
		}
	}) {
		return
	}
	if sr.g.s.overflow == DropNewest {
		if sr.g.spillOne(sr, m) {
			return
		}
		sr.dropped.Add(1)
		sr.g.finishMsg(m, sr.name, 0, nowNS(), 0, outcomeDrop, errSinkQueueFull)
		m.release()
		return
	}
	select {
	case sr.q <- m:
	case <-sr.retired:
		sr.dropped.Add(1)
		sr.g.finishMsg(m, sr.name, 0, nowNS(), 0, outcomeDrop, errSinkRemoved)
		m.release()
	case <-sr.g.hardStop:
		sr.lost.Add(1)
		sr.g.stats.lostAtShutdown.Add(1)
		sr.g.finishMsg(m, sr.name, 0, nowNS(), 0, outcomeDrop, errShutdownDeadline)
		m.release()
	}
}

func (g *Gateway) startSink(sr *sinkRun) {
	key := "sink/" + sr.name
	g.registerComponent(key, sr, sr.current().sink, attrSink.String(sr.name))
	g.sinksWG.Add(1)
	go func() {
		defer g.sinksWG.Done()
		sr.run()
		g.unregisterComponent(key, sr)
		select {
		case <-sr.retired:
			sr.closeImpl()
		default:
		}
	}()
}

// run publishes batches until the queue is closed and empty.
func (sr *sinkRun) run() {
	if err := sr.ensureStarted(); err != nil {
		sr.g.log.Warn("sink failed to start; retrying on first publish", "sink", sr.name, "err", err)
	}
	max := sr.g.s.batchSize
	batch := make([]*Message, 0, max)
	for m := range sr.q {
		batch = append(batch[:0], m)
	fill:
		for len(batch) < max {
			select {
			case m, ok := <-sr.q:
				if !ok {
					break fill
				}
				batch = append(batch, m)
			default:
				break fill
			}
		}
		sr.publish(batch)
		for i, m := range batch {
			m.release()
			batch[i] = nil
		}
	}
}

// publish retries until the batch is acknowledged, spilled to the store
// (edge mode), or the gateway gives up at the shutdown deadline or because
// the sink was removed.
func (sr *sinkRun) publish(batch []*Message) {
	g := sr.g
	bo := backoff.Backoff{Min: 50 * time.Millisecond, Max: 5 * time.Second}
	var start int64
	if g.traceOn() {
		start = nowNS()
	}
	attempts := 0
	for {
		attempts++
		err := sr.ensureStarted()
		if err == nil {
			err = sr.current().live.Publish(g.pubCtx, batch)
		}
		if err == nil {
			if start != 0 {
				sr.finishBatch(batch, start, attempts, 0, nil)
			}
			if g.edge() {
				g.sinkDone(batch)
			}
			sr.out.Add(uint64(len(batch)))
			sr.recordPublished(batch)
			if !sr.healthy.Swap(true) {
				g.log.Info("sink recovered", "sink", sr.name)
			}
			return
		}
		sr.errs.Add(1)
		msg := err.Error()
		sr.lastErr.Store(&msg)
		if sr.healthy.Swap(false) {
			g.log.Warn("sink publish failed", append(batch[0].logAttrs(), "sink", sr.name, "batch", len(batch), "err", err)...)
		}
		if g.s.mode == ModeEdge && g.s.store != nil {
			if serr := g.spill(sr.name, batch); serr == nil {
				if start != 0 {
					sr.finishBatch(batch, start, attempts, outcomeRetry, err)
				}
				g.sinkDone(batch)
				return
			} else {
				g.log.Error("store append failed; holding batch in memory", append(batch[0].logAttrs(), "sink", sr.name, "err", serr)...)
			}
		}
		select {
		case <-time.After(bo.Next()):
		case <-sr.swapped:
			bo.Reset()
		case <-sr.retired:
			sr.giveUp(batch, "sink removed", start, attempts, err)
			return
		case <-g.hardStop:
			sr.giveUp(batch, "shutdown deadline", start, attempts, err)
			return
		}
	}
}

func (sr *sinkRun) giveUp(batch []*Message, why string, start int64, attempts int, err error) {
	n := uint64(len(batch))
	sr.lost.Add(n)
	sr.g.stats.lostAtShutdown.Add(n)
	sr.g.log.Error("messages not delivered", append(batch[0].logAttrs(), "sink", sr.name, "count", n, "reason", why)...)
	if start != 0 {
		sr.finishBatch(batch, start, attempts, outcomeError, fmt.Errorf("%s: %w", why, err))
	}
}

// finishBatch ends the publish of batch for tracing (see finishMsg): a
// batch that took more than one attempt counts as retried.
func (sr *sinkRun) finishBatch(batch []*Message, start int64, attempts int, o uint32, err error) {
	if attempts > 1 {
		o |= outcomeRetry
	}
	end := nowNS()
	for _, m := range batch {
		sr.g.finishMsg(m, sr.name, start, end, attempts, o, err)
	}
}

var (
	errSinkQueueFull    = errors.New("sink queue full")
	errSinkRemoved      = errors.New("sink removed")
	errShutdownDeadline = errors.New("shutdown deadline")
)

// spill makes a batch durable in the store for later replay, as records of
// the sink that could not take it (one failed attempt each).
func (g *Gateway) spill(sink string, batch []*Message) error {
	recs := make([]Record, len(batch))
	now := time.Now()
	for i, m := range batch {
		p, err := m.AppendBinary(nil)
		if err != nil {
			return err
		}
		recs[i] = Record{ID: m.ID, Priority: m.Priority, Sink: sink, Payload: p, Attempts: 1, NextTry: now, Enqueued: now}
	}
	ctx, cancel := context.WithTimeout(g.pubCtx, 10*time.Second)
	defer cancel()
	if err := g.s.store.Append(ctx, recs); err != nil {
		return err
	}
	if err := g.s.store.Release(ctx, recs); err != nil {
		// Durable but still held: the release queue hands them to the
		// replay once the Store takes them back.
		g.releaseFailed(err, len(recs))
		g.releaseQ.Add(recs...)
	}
	g.stats.spilled.Add(uint64(len(batch)))
	return nil
}

// replayLoop drains the store while the gateway runs: stored frames go back
// through decode and routing, per-sink records to their sink. A sink that
// fails is retried after a jittered backoff (capped at replayMaxBackoff, so
// the drain starts soon after the link is back, without waiting for new
// traffic); the failed records keep their attempt count and next try in
// the store.
func (g *Gateway) replayLoop(ctx context.Context) {
	defer g.ctrlWG.Done()
	bo := backoff.Backoff{Min: 50 * time.Millisecond, Max: replayMaxBackoff, Stable: time.Second}
	wait := time.Duration(0)
	for {
		if wait <= 0 {
			wait = replayIdle
		}
		if !backoff.Sleep(ctx, wait) {
			return
		}
		wait = 0
		for {
			more, retryIn := g.replayOnce(ctx, &bo)
			if retryIn > 0 {
				wait = retryIn
				break
			}
			if !more {
				break
			}
		}
	}
}

const (
	replayIdle       = 100 * time.Millisecond
	replayMaxBackoff = time.Second
)

// replayOnce handles one batch from the store. more reports a full batch
// (keep going); a non-zero retryIn that a sink refused its records, which
// are due again after that delay.
func (g *Gateway) replayOnce(ctx context.Context, bo *backoff.Backoff) (more bool, retryIn time.Duration) {
	recs, err := g.s.store.Next(ctx, g.s.batchSize)
	if err != nil || len(recs) == 0 {
		if err != nil && ctx.Err() == nil {
			g.log.Warn("store read failed", "err", err)
			return false, bo.Next()
		}
		return false, 0
	}
	g.mu.Lock()
	sinks := g.sinks
	g.mu.Unlock()
	bySink := map[string][]*Message{}
	held := map[string][]Record{}
	var orphans []uint64
	for _, r := range recs {
		if r.Sink == FrameRecord {
			g.replayFrame(ctx, r)
			continue
		}
		sr := sinks[r.Sink]
		if sr == nil {
			orphans = append(orphans, r.Seq)
			continue
		}
		m := &Message{}
		if err := m.UnmarshalBinary(r.Payload); err != nil {
			g.log.Error("stored record unreadable; dropping", "seq", r.Seq, "err", err)
			orphans = append(orphans, r.Seq)
			continue
		}
		bySink[r.Sink] = append(bySink[r.Sink], m)
		held[r.Sink] = append(held[r.Sink], r)
	}
	if len(orphans) > 0 {
		g.log.Warn("stored records for removed sinks dropped", "count", len(orphans))
		g.ackStored(orphans...)
	}
	more = len(recs) == g.s.batchSize
	for name, msgs := range bySink {
		rs := held[name]
		var start int64
		if g.traceOn() {
			start = nowNS()
		}
		err := (backlogSink{sinks[name]}).Publish(ctx, msgs)
		if start != 0 {
			g.finishReplayed(msgs, name, start, err)
		}
		if err != nil {
			if retryIn == 0 {
				retryIn = bo.Next()
			}
			next := time.Now().Add(retryIn)
			for i := range rs {
				rs[i].Attempts++
				rs[i].NextTry = next
			}
			g.requeueStored(rs)
			more = false
			continue
		}
		bo.Up()
		seqs := make([]uint64, len(rs))
		for i, r := range rs {
			seqs[i] = r.Seq
		}
		g.ackStored(seqs...)
	}
	return more, retryIn
}
