package gateway

import (
	"context"
	"errors"
	"fmt"
)

// Drainer takes over the replay of the Store in edge mode (see
// WithDrainer). The gateway still writes every frame ahead and spills what
// a sink cannot take into the Store; the Drainer decides when and how fast
// that backlog goes out: the offline-resume package's Drainer gates it on
// a link state machine fed by probes and retries on a timing wheel.
// Without a Drainer the gateway replays the Store itself with a jittered
// backoff.
type Drainer interface {
	// Drain replays the Store through t until ctx ends, then returns once
	// its publishes in flight have finished. A record is acknowledged in
	// the Store only after its sink accepted it.
	Drain(ctx context.Context, t DrainTarget) error
}

// DrainTarget is what the gateway offers a Drainer.
type DrainTarget interface {
	// Sink returns the publisher for records stored for the named sink,
	// or nil when the configuration no longer has that sink. It starts
	// the sink first if it is a Starter, and counts what it publishes in
	// the gateway's statistics.
	Sink(name string) Sink
	// Frames hands frame records (frames written ahead and left in the
	// Store by a crash, or pushed out of a full ingress queue) back to the
	// gateway, which decodes, routes and acknowledges them like new
	// frames. It blocks while the decode plane is full; records not taken
	// when ctx ends are released to the Store.
	Frames(ctx context.Context, recs []Record)
}

// LiveWrapper is implemented by a Drainer that also takes part in the live
// path: the gateway publishes a sink's live traffic through
// WrapLive(name, sink) instead of sink (called again when a reload swaps
// the sink), so the Drainer can share the uplink between live traffic and
// backlog, learn of every live publish outcome, and refuse live publishes
// at once while the link is known to be down (the gateway then spills the
// batch to the Store instead of waiting on a dead connection).
type LiveWrapper interface {
	WrapLive(name string, s Sink) Sink
}

// DrainReporter is implemented by a Drainer that reports its state; the
// report appears in Stats.Drain and on /statz. It must be safe for
// concurrent use and marshal to JSON.
type DrainReporter interface {
	DrainStatus() any
}

// WithDrainer replaces the gateway's built-in replay of the Store with d.
// It needs ModeEdge and a Store. Default: a Store that implements Drainer
// itself is used as the Drainer (the resume package's EdgeStore, which the
// "sqlite" store kind builds when its section has a drain block, does);
// otherwise the built-in replay.
func WithDrainer(d Drainer) Option {
	return func(s *settings) error {
		if d == nil {
			return errors.New("drainer is nil")
		}
		s.drainer = d
		return nil
	}
}

// pickDrainer settles the drainer once the store is known.
func (s *settings) pickDrainer() error {
	if s.drainer != nil && s.mode != ModeEdge {
		return errors.New("gateway: WithDrainer needs mode edge")
	}
	if s.drainer == nil && s.mode == ModeEdge {
		if d, ok := s.store.(Drainer); ok {
			s.drainer = d
		}
	}
	return nil
}

// liveSink is the sink the gateway publishes ns's live traffic to.
func (g *Gateway) liveSink(ns *namedSink) {
	ns.live = ns.sink
	if w, ok := g.s.drainer.(LiveWrapper); ok && ns.sink != nil {
		ns.live = w.WrapLive(ns.name, ns.sink)
	}
}

// drainLoop runs the configured Drainer.
func (g *Gateway) drainLoop(ctx context.Context) {
	defer g.ctrlWG.Done()
	if err := g.s.drainer.Drain(ctx, drainTarget{g}); err != nil && ctx.Err() == nil {
		g.log.Error("drainer stopped", "err", err)
	}
}

type drainTarget struct{ g *Gateway }

func (t drainTarget) Sink(name string) Sink {
	t.g.mu.Lock()
	sr := t.g.sinks[name]
	t.g.mu.Unlock()
	if sr == nil {
		return nil
	}
	return backlogSink{sr}
}

func (t drainTarget) Frames(ctx context.Context, recs []Record) {
	for i, r := range recs {
		if ctx.Err() != nil {
			t.g.requeueStored(recs[i:])
			return
		}
		t.g.replayFrame(ctx, r)
	}
}

// backlogSink publishes stored records to a sink run's current
// implementation, starting it first, and counts what went out: the
// built-in replay and a Drainer's target both publish through it.
type backlogSink struct{ sr *sinkRun }

func (b backlogSink) Publish(ctx context.Context, msgs []*Message) error {
	sr := b.sr
	select {
	case <-sr.retired:
		return fmt.Errorf("sink %s: %w", sr.name, ErrClosed)
	default:
	}
	err := sr.ensureStarted()
	if err == nil {
		err = sr.current().sink.Publish(ctx, msgs)
	}
	if err != nil {
		if sr.healthy.Swap(false) {
			sr.g.log.Warn("sink publish failed during replay", "sink", sr.name, "err", err)
		}
		return err
	}
	if !sr.healthy.Swap(true) {
		sr.g.log.Info("sink recovered", "sink", sr.name)
	}
	sr.g.stats.replayed.Add(uint64(len(msgs)))
	sr.out.Add(uint64(len(msgs)))
	return nil
}
