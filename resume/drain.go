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
	"github.com/iotgw/gateway/internal/lograte"
	"github.com/iotgw/gateway/internal/retrylater"
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
	// Store holds the backlog. Required.
	Store gateway.Store
	// Sink takes every per-sink record when the drainer runs on its own
	// (Run); required there. Inside a gateway (gateway.WithDrainer, which
	// calls Drain) records go to the sink they were stored for, and Sink
	// is not used.
	Sink gateway.Sink
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
	// entering Recovering or Draining starts a round at once. Inside a
	// gateway it also sees the outcome of every live publish, and while it
	// is Offline live publishes are refused at once (ErrOffline), so the
	// gateway spills them to the store instead of waiting on a dead
	// connection. Something must move it out of Offline: a Monitor with
	// probes (a publish that is never attempted cannot).
	Machine *Machine
	// LiveWeight and BacklogWeight share each sink between live traffic
	// and the drain inside a gateway (see UplinkShare): when both wait,
	// live gets LiveWeight turns for BacklogWeight turns of the drain, and
	// at most InFlight publishes run on a sink at once. Defaults 3 and 1.
	LiveWeight, BacklogWeight int
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
	offCtx context.Context // ends at the next entry into Offline: cuts live publishes
	offCut context.CancelFunc

	target gateway.DrainTarget // set by Drain: records go to their own sinks

	shareMu sync.Mutex
	shares  map[string]*UplinkShare // per sink name, made by WrapLive

	// releases keeps records a failed Release left held (a full disk
	// cannot persist their new attempt count) and retries until the store
	// takes them back, so they drain without a restart.
	releases retrylater.Queue[gateway.Record]
	lograte  *lograte.Limiter

	inflight                      atomic.Int64
	sent, failed, acked, orphaned atomic.Uint64
	refused                       atomic.Uint64
}

var (
	_ gateway.Drainer     = (*Drainer)(nil)
	_ gateway.LiveWrapper = (*Drainer)(nil)
)

// ErrOffline is returned for a live publish refused because the state
// machine says the uplink is down; the gateway spills the batch to the
// store.
var ErrOffline = errors.New("resume: uplink offline")

// upstreams returns the sinks the drainer publishes to: Sink, or the
// sinks the gateway's live traffic goes to.
func (d *Drainer) upstreams() []gateway.Sink {
	if d.cfg.Sink != nil {
		return []gateway.Sink{d.cfg.Sink}
	}
	d.shareMu.Lock()
	defer d.shareMu.Unlock()
	out := make([]gateway.Sink, 0, len(d.shares))
	for _, u := range d.shares {
		out = append(out, u.sink)
	}
	return out
}

// WrapLive implements gateway.LiveWrapper: the gateway publishes the live
// traffic of sink name through the returned sink. It takes its turns on
// the sink's UplinkShare, is refused while the machine is Offline, and
// tells the machine how each publish went.
func (d *Drainer) WrapLive(name string, s gateway.Sink) gateway.Sink {
	u := NewUplinkShare(s, d.cfg.LiveWeight, d.cfg.BacklogWeight, d.cfg.InFlight)
	d.shareMu.Lock()
	d.shares[name] = u
	d.shareMu.Unlock()
	return &liveSink{d: d, view: shareView{u, classLive, s}}
}

type liveSink struct {
	d    *Drainer
	view shareView
}

func (l *liveSink) Publish(ctx context.Context, msgs []*gateway.Message) error {
	d := l.d
	if d.paused() {
		d.refused.Add(uint64(len(msgs)))
		return ErrOffline
	}
	if d.cfg.Machine != nil {
		// A publish stuck on a connection the probes declared dead is cut
		// when the machine enters Offline, so the gateway spills the batch
		// now instead of after the sink's own timeout.
		lctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(d.offline(), cancel)
		defer stop()
		ctx = lctx
	}
	err := l.view.Publish(ctx, msgs)
	if err != nil && ctx.Err() != nil && d.paused() {
		d.refused.Add(uint64(len(msgs)))
		return fmt.Errorf("%w: %w", ErrOffline, err)
	}
	if m := d.cfg.Machine; m != nil && ctx.Err() == nil {
		if err != nil {
			m.Fire(PublishFailed)
		} else {
			m.Fire(PublishOK)
		}
	}
	return err
}

// backlogSink returns where records stored for name go, nil if nowhere.
func (d *Drainer) backlogSink(name string) gateway.Sink {
	if d.target == nil {
		return d.cfg.Sink
	}
	s := d.target.Sink(name)
	if s == nil {
		return nil
	}
	d.shareMu.Lock()
	u := d.shares[name]
	d.shareMu.Unlock()
	if u == nil {
		return s
	}
	return shareView{u, classBacklog, s}
}

// NewDrainer validates cfg. Nothing runs until Run.
func NewDrainer(cfg DrainerConfig) (*Drainer, error) {
	if cfg.Store == nil {
		return nil, errors.New("resume: drainer: a store is required")
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
	if cfg.LiveWeight <= 0 {
		cfg.LiveWeight = 3
	}
	if cfg.BacklogWeight <= 0 {
		cfg.BacklogWeight = 1
	}
	d := &Drainer{cfg: cfg, log: cfg.Logger, kick: make(chan struct{}, 1), shares: map[string]*UplinkShare{},
		lograte: lograte.New(time.Minute)}
	d.releases.Do = func(ctx context.Context, recs []gateway.Record) error {
		if err := cfg.Store.Release(ctx, recs); err != nil {
			return err
		}
		d.Kick()
		return nil
	}
	d.releases.OnFail = d.releaseFailed
	if m := cfg.Machine; m != nil {
		start := func(State, State, Event) { d.Kick() }
		m.OnEnter(Recovering, start)
		m.OnEnter(Draining, start)
		// Publishes stuck on a dead connection would hold the window (and
		// TCP's retransmission backoff would delay recovery): cut them.
		m.OnEnter(Offline, func(State, State, Event) {
			d.cutInflight()
			for _, s := range d.upstreams() {
				if r, ok := s.(Redialer); ok {
					r.Redial()
				}
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
	if d.offCut != nil {
		d.offCut()
	}
}

// offline returns a context that ends at the next entry into Offline.
func (d *Drainer) offline() context.Context {
	d.cutMu.Lock()
	defer d.cutMu.Unlock()
	if d.offCtx == nil || d.offCtx.Err() != nil {
		d.offCtx, d.offCut = context.WithCancel(context.Background())
	}
	return d.offCtx
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
	Sent   uint64 `json:"sent"`
	Failed uint64 `json:"failed"`
	Acked  uint64 `json:"acked"`
	// Orphaned counts records dropped because their sink is gone from the
	// gateway's configuration.
	Orphaned uint64 `json:"orphaned"`
	// Refused counts live messages refused while Offline (and spilled by
	// the gateway).
	Refused  uint64 `json:"refused"`
	InFlight int64  `json:"in_flight"`
}

// Stats returns the drainer's counters.
func (d *Drainer) Stats() DrainStats {
	return DrainStats{Sent: d.sent.Load(), Failed: d.failed.Load(), Acked: d.acked.Load(),
		Orphaned: d.orphaned.Load(), Refused: d.refused.Load(), InFlight: d.inflight.Load()}
}

func (d *Drainer) paused() bool {
	if d.cfg.Machine == nil {
		return false
	}
	s, _ := d.cfg.Machine.State()
	return s == Offline
}

// Drain implements gateway.Drainer: it drains until ctx ends, sending each
// record to the sink it was stored for and frame records back to the
// gateway. A Drainer runs once, either by Drain or by Run.
func (d *Drainer) Drain(ctx context.Context, t gateway.DrainTarget) error {
	if t == nil {
		return errors.New("resume: drainer: nil target")
	}
	d.target = t
	return d.run(ctx)
}

// Run drains into cfg.Sink until ctx ends, then waits for the batches in
// flight.
func (d *Drainer) Run(ctx context.Context) error {
	if d.cfg.Sink == nil {
		return errors.New("resume: drainer: Run needs a Sink (inside a gateway, use gateway.WithDrainer)")
	}
	return d.run(ctx)
}

func (d *Drainer) run(ctx context.Context) error {
	d.wheel = NewRetryWheel(d.cfg.Tick)
	defer d.wheel.Close()
	relCtx, stopRel := context.WithCancel(context.WithoutCancel(ctx))
	relDone := make(chan struct{})
	go func() {
		defer close(relDone)
		if left := d.releases.Run(relCtx, 2*time.Second); len(left) > 0 {
			d.log.Warn("drain: release failed at shutdown; records are replayed at the next start", "count", len(left))
		}
	}()
	// Runs after the batches in flight finished (deferred before wg.Wait).
	defer func() { stopRel(); <-relDone }()
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

// publish sends one batch, grouped by the sink each record was stored
// for, and acks each group, or schedules its retry.
func (d *Drainer) publish(ctx context.Context, recs []gateway.Record) {
	var frames []gateway.Record
	var bad []uint64
	type group struct {
		name string
		recs []gateway.Record
		msgs []*gateway.Message
	}
	var groups []*group
	for _, r := range recs {
		if r.Sink == gateway.FrameRecord {
			frames = append(frames, r) // the gateway decodes and routes these
			continue
		}
		name := r.Sink
		if d.target == nil {
			name = "" // one sink takes everything
		}
		var g *group
		for _, x := range groups {
			if x.name == name {
				g = x
				break
			}
		}
		if g == nil {
			g = &group{name: name}
			groups = append(groups, g)
		}
		m := &gateway.Message{}
		if err := m.UnmarshalBinary(r.Payload); err != nil {
			d.log.Error("drain: stored record unreadable; dropping", "seq", r.Seq, "err", err)
			bad = append(bad, r.Seq)
			continue
		}
		g.msgs = append(g.msgs, m)
		g.recs = append(g.recs, r)
	}
	if len(frames) > 0 {
		if d.target != nil {
			d.target.Frames(ctx, frames)
		} else {
			// Leave them queued for a gateway, a poll interval from now
			// so this drainer does not spin on them.
			due := time.Now().Add(d.cfg.Poll)
			for i := range frames {
				frames[i].NextTry = due
			}
			d.release(ctx, frames)
		}
	}
	for _, g := range groups {
		if len(g.msgs) == 0 {
			continue
		}
		sink := d.backlogSink(g.name)
		if sink == nil {
			d.log.Warn("drain: records for a sink no longer configured dropped", "sink", g.name, "count", len(g.recs))
			d.orphaned.Add(uint64(len(g.recs)))
			for _, r := range g.recs {
				bad = append(bad, r.Seq)
			}
			continue
		}
		d.publishGroup(ctx, sink, g.recs, g.msgs)
	}
	if len(bad) > 0 {
		_ = d.cfg.Store.Ack(context.WithoutCancel(ctx), bad...)
	}
}

// publishGroup sends the messages of one sink and acks their records, or
// schedules their retry.
func (d *Drainer) publishGroup(ctx context.Context, sink gateway.Sink, good []gateway.Record, msgs []*gateway.Message) {
	err := sink.Publish(ctx, msgs)
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
	d.release(ctx, good)
	d.wheel.At(due, d.Kick)
	if ctx.Err() == nil {
		d.log.Debug("drain: publish failed; retry scheduled", "records", len(good), "attempt", attempts,
			"in", delay.Round(time.Millisecond), "err", fmt.Sprint(err))
	}
}

// release returns records to the store's queue; on failure they wait in
// the release queue, retried with backoff.
func (d *Drainer) release(ctx context.Context, recs []gateway.Record) {
	if err := d.cfg.Store.Release(context.WithoutCancel(ctx), recs); err != nil {
		d.releaseFailed(err, len(recs))
		d.releases.Add(recs...)
	}
}

func (d *Drainer) releaseFailed(err error, n int) {
	d.lograte.Log(context.Background(), d.log, slog.LevelWarn, "release",
		"drain: release failed; retrying with backoff", "records", n, "err", err)
}
