package resume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgw/gateway"
)

// Redialer is implemented by sinks that can drop their upstream connection
// so the next Publish dials afresh. The Drainer calls it on entering
// Offline: a TCP connection that lived through an outage sits in
// retransmission backoff and would delay the drain after the link returns.
type Redialer interface {
	Redial()
}

// DrainerConfig configures a Drainer.
type DrainerConfig struct {
	// Store holds the backlog; Sink takes it. Required.
	Store gateway.Store
	Sink  gateway.Sink
	// Batch is the records per Publish. Default 256.
	Batch int
	// InFlight bounds the batches being published at once. Default 4.
	InFlight int
	// Backoff spaces the retries of a batch that failed (persisted in the
	// store as Attempts and NextTry). Default Backoff{}.
	Backoff Backoff
	// Tick is the timing wheel's resolution. Default 10ms.
	Tick time.Duration
	// Poll is how often an idle drainer looks for records others appended
	// (the gateway's spills). Default 100ms.
	Poll time.Duration
	// Machine, when set, is told PublishOK, PublishFailed and BacklogEmpty,
	// and gates the drain: nothing is sent while it is Offline, and
	// entering Recovering or Draining starts a round at once.
	Machine *Machine
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Drainer replays a Store into a Sink: records in store order (priority,
// then arrival), a bounded window of batches in flight, failed batches
// retried with full-jitter backoff on a timing wheel, each record acked
// only after the sink acknowledged it. It handles per-sink records
// (gateway.Message binary form); frame records are left for the gateway.
type Drainer struct {
	cfg   DrainerConfig
	log   *slog.Logger
	wheel *RetryWheel
	kick  chan struct{}

	cutMu  sync.Mutex
	cutCtx context.Context
	cut    context.CancelFunc

	inflight            atomic.Int64
	sent, failed, acked atomic.Uint64
}

// NewDrainer validates cfg. Nothing runs until Run.
func NewDrainer(cfg DrainerConfig) (*Drainer, error) {
	if cfg.Store == nil || cfg.Sink == nil {
		return nil, errors.New("resume: drainer: store and sink are required")
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 256
	}
	if cfg.InFlight <= 0 {
		cfg.InFlight = 4
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := &Drainer{cfg: cfg, log: cfg.Logger, kick: make(chan struct{}, 1)}
	if m := cfg.Machine; m != nil {
		start := func(State, State, Event) { d.Kick() }
		m.OnEnter(Recovering, start)
		m.OnEnter(Draining, start)
		// Publishes stuck on a dead connection would hold the window (and
		// TCP's retransmission backoff would delay recovery): cut them.
		m.OnEnter(Offline, func(State, State, Event) {
			d.cutInflight()
			if r, ok := cfg.Sink.(Redialer); ok {
				r.Redial()
			}
		})
	}
	return d, nil
}

// batchCtx is the context of the batches started now: ended by Run's
// context or by the next entry into Offline.
func (d *Drainer) batchCtx(parent context.Context) context.Context {
	d.cutMu.Lock()
	defer d.cutMu.Unlock()
	if d.cutCtx == nil || d.cutCtx.Err() != nil {
		d.cutCtx, d.cut = context.WithCancel(parent)
	}
	return d.cutCtx
}

func (d *Drainer) cutInflight() {
	d.cutMu.Lock()
	defer d.cutMu.Unlock()
	if d.cut != nil {
		d.cut()
	}
}

// Kick makes the drainer look at the store now.
func (d *Drainer) Kick() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// DrainStats counts a Drainer's work.
type DrainStats struct {
	Sent, Failed, Acked uint64
	InFlight            int64
}

// Stats returns the drainer's counters.
func (d *Drainer) Stats() DrainStats {
	return DrainStats{Sent: d.sent.Load(), Failed: d.failed.Load(), Acked: d.acked.Load(), InFlight: d.inflight.Load()}
}

func (d *Drainer) paused() bool {
	if d.cfg.Machine == nil {
		return false
	}
	s, _ := d.cfg.Machine.State()
	return s == Offline
}

// Run drains until ctx ends, then waits for the batches in flight.
func (d *Drainer) Run(ctx context.Context) error {
	d.wheel = NewRetryWheel(d.cfg.Tick)
	defer d.wheel.Close()
	slots := make(chan struct{}, d.cfg.InFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	idle := func() {
		d.wheel.At(time.Now().Add(d.cfg.Poll), d.Kick)
		select {
		case <-ctx.Done():
		case <-d.kick:
		}
	}
	for ctx.Err() == nil {
		if d.paused() {
			idle()
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		recs, err := d.cfg.Store.Next(ctx, d.cfg.Batch)
		if err != nil || len(recs) == 0 {
			<-slots
			if err != nil && ctx.Err() == nil {
				d.log.Warn("drain: store read failed", "err", err)
			}
			if err == nil && d.inflight.Load() == 0 && d.cfg.Machine != nil {
				d.cfg.Machine.Fire(BacklogEmpty)
			}
			idle()
			continue
		}
		d.inflight.Add(1)
		wg.Add(1)
		bctx := d.batchCtx(ctx)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			defer d.inflight.Add(-1)
			d.publish(bctx, recs)
		}()
	}
	d.cutInflight()
	return nil
}

// publish sends one batch and acks it, or schedules its retry.
func (d *Drainer) publish(ctx context.Context, recs []gateway.Record) {
	msgs := make([]*gateway.Message, 0, len(recs))
	var bad []uint64
	var good, frames []gateway.Record
	for _, r := range recs {
		if r.Sink == gateway.FrameRecord {
			frames = append(frames, r) // the gateway decodes and routes these
			continue
		}
		m := &gateway.Message{}
		if err := m.UnmarshalBinary(r.Payload); err != nil {
			d.log.Error("drain: stored record unreadable; dropping", "seq", r.Seq, "err", err)
			bad = append(bad, r.Seq)
			continue
		}
		msgs = append(msgs, m)
		good = append(good, r)
	}
	if len(bad) > 0 {
		_ = d.cfg.Store.Ack(ctx, bad...)
	}
	if len(frames) > 0 {
		// Leave them queued for the gateway, a poll interval from now so
		// this drainer does not spin on them.
		due := time.Now().Add(d.cfg.Poll)
		for i := range frames {
			frames[i].NextTry = due
		}
		_ = d.cfg.Store.Release(context.WithoutCancel(ctx), frames)
	}
	if len(msgs) == 0 {
		return
	}
	err := d.cfg.Sink.Publish(ctx, msgs)
	if err == nil {
		seqs := make([]uint64, len(good))
		for i, r := range good {
			seqs[i] = r.Seq
		}
		if aerr := d.cfg.Store.Ack(context.WithoutCancel(ctx), seqs...); aerr != nil {
			d.log.Warn("drain: ack failed; records will be sent again", "err", aerr)
		}
		d.sent.Add(uint64(len(msgs)))
		d.acked.Add(uint64(len(seqs)))
		if d.cfg.Machine != nil {
			d.cfg.Machine.Fire(PublishOK)
		}
		return
	}
	d.failed.Add(uint64(len(msgs)))
	if d.cfg.Machine != nil && ctx.Err() == nil { // a cut batch says nothing new
		d.cfg.Machine.Fire(PublishFailed)
	}
	// One delay for the batch keeps it in order relative to itself.
	attempts := good[0].Attempts + 1
	delay := d.cfg.Backoff.Delay(attempts)
	due := time.Now().Add(delay)
	for i := range good {
		good[i].Attempts++
		good[i].NextTry = due
	}
	if rerr := d.cfg.Store.Release(context.WithoutCancel(ctx), good); rerr != nil {
		d.log.Warn("drain: release failed; records wait for a restart", "err", rerr)
	}
	d.wheel.At(due, d.Kick)
	if ctx.Err() == nil {
		d.log.Debug("drain: publish failed; retry scheduled", "records", len(good), "attempt", attempts,
			"in", delay.Round(time.Millisecond), "err", fmt.Sprint(err))
	}
}
