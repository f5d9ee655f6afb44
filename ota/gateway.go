package ota

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/iotgw/gateway"
)

// ConfigFile is the gateway configuration's path inside a bundle unless
// GatewayApplier.File says otherwise.
const ConfigFile = "gateway.yaml"

// GatewayApplier applies generations to a running gateway through its
// reload path (Gateway.ApplyConfig): unchanged connectors keep running
// with their device sessions, sinks keep their queues, and a
// configuration that does not validate (Gateway.CheckConfig) never leaves
// Verifying.
type GatewayApplier struct {
	Gateway *gateway.Gateway
	// Base is the configuration the gateway runs without a generation
	// (a rollback to "no generation" restores it).
	Base *gateway.Config
	// File is the configuration's path inside the bundle. Default:
	// gateway.yaml.
	File string
}

var _ Applier = (*GatewayApplier)(nil)

func (a *GatewayApplier) file() string {
	if a.File == "" {
		return ConfigFile
	}
	return a.File
}

// Config loads the configuration of g (nil: Base).
func (a *GatewayApplier) Config(g *Generation) (*gateway.Config, error) {
	if g == nil {
		if a.Base == nil {
			return nil, errors.New("ota: no base configuration to return to")
		}
		return a.Base, nil
	}
	return gateway.LoadConfig(g.Path(a.file()))
}

// Validate implements Applier.
func (a *GatewayApplier) Validate(ctx context.Context, g *Generation) error {
	c, err := a.Config(g)
	if err != nil {
		return err
	}
	return a.Gateway.CheckConfig(ctx, c)
}

// Apply implements Applier.
func (a *GatewayApplier) Apply(ctx context.Context, g *Generation) error {
	c, err := a.Config(g)
	if err != nil {
		return err
	}
	return a.Gateway.ApplyConfig(ctx, c)
}

// Counters is the default probation health check over a gateway's own
// counters (the /statz Stats) and readiness (/readyz). It degrades when,
// since the update:
//   - the error ratio (decode errors, publish errors, frames and sink
//     drops, dead letters that could not be kept, over frames in) is
//     above MaxErrorRatio and at least Factor times the ratio before the
//     update, over at least MinFrames frames; or
//   - the gateway was ready before the update and has not been ready for
//     ReadyGrace (a broker that refuses the new credentials).
type Counters struct {
	Stats func() gateway.Stats
	// Ready is the readiness check (Gateway.Ready); nil skips it.
	Ready func(context.Context) error
	// MaxErrorRatio: default 0.05. Lower catches smaller jumps and
	// risks rolling back on noise.
	MaxErrorRatio float64
	// Factor over the baseline ratio: default 2.
	Factor float64
	// MinFrames before the ratio counts: default 20.
	MinFrames uint64
	// ReadyGrace: default 3 s; covers the reconnects an apply causes.
	// With the 500 ms check interval a broker that refuses the new
	// configuration rolls back about 3.5 s after the apply.
	ReadyGrace time.Duration
	// Window of history kept for the baseline ratio: default 30 s.
	Window time.Duration

	mu        sync.Mutex
	hist      []sample
	base      sample
	baseRatio float64
	wasReady  bool
	notReady  time.Time
}

type sample struct {
	at           time.Time
	frames, errs uint64
}

// NewCounters returns the default health check of g.
func NewCounters(g *gateway.Gateway) *Counters {
	return &Counters{Stats: g.Stats, Ready: g.Ready}
}

var _ HealthCheck = (*Counters)(nil)

func (c *Counters) defaults() {
	if c.MaxErrorRatio == 0 {
		c.MaxErrorRatio = 0.05
	}
	if c.Factor == 0 {
		c.Factor = 2
	}
	if c.MinFrames == 0 {
		c.MinFrames = 20
	}
	if c.ReadyGrace == 0 {
		c.ReadyGrace = 3 * time.Second
	}
	if c.Window == 0 {
		c.Window = 30 * time.Second
	}
}

func (c *Counters) take() sample {
	st := c.Stats()
	return sample{at: time.Now(), frames: st.FramesIn,
		errs: st.DecodeErrors + st.PublishErrors + st.FramesDropped + st.SinkDropped + st.DeadLetterErrors + st.Lost}
}

// Sample records the counters for the baseline; call it periodically
// (Watch does) so the baseline covers the Window before an update.
func (c *Counters) Sample() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.defaults()
	s := c.take()
	c.hist = append(c.hist, s)
	for len(c.hist) > 1 && s.at.Sub(c.hist[0].at) > c.Window {
		c.hist = c.hist[1:]
	}
}

// Watch samples every interval until ctx ends.
func (c *Counters) Watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		c.Sample()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Baseline implements HealthCheck.
func (c *Counters) Baseline(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.defaults()
	now := c.take()
	c.base, c.baseRatio = now, 0
	if len(c.hist) > 0 {
		if old := c.hist[0]; now.frames > old.frames {
			c.baseRatio = float64(now.errs-old.errs) / float64(now.frames-old.frames)
		}
	}
	c.wasReady = c.Ready == nil || c.Ready(ctx) == nil
	c.notReady = time.Time{}
}

// Check implements HealthCheck. Once it reports a degradation the
// history is dropped: the counters of a generation being rolled back are
// no baseline for the next update.
func (c *Counters) Check(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.defaults()
	err := c.check(ctx)
	if err != nil {
		c.hist = nil
	}
	return err
}

func (c *Counters) check(ctx context.Context) error {
	now := c.take()
	if frames := now.frames - c.base.frames; frames >= c.MinFrames && now.errs >= c.base.errs {
		r := float64(now.errs-c.base.errs) / float64(frames)
		if r > c.MaxErrorRatio && r >= c.Factor*c.baseRatio {
			return fmt.Errorf("error ratio %.3f over %d frames since the update (before: %.3f)", r, frames, c.baseRatio)
		}
	}
	if c.Ready != nil && c.wasReady {
		if err := c.Ready(ctx); err != nil {
			if c.notReady.IsZero() {
				c.notReady = now.at
			} else if now.at.Sub(c.notReady) >= c.ReadyGrace {
				return fmt.Errorf("not ready for %s: %v", now.at.Sub(c.notReady).Round(time.Millisecond), err)
			}
		} else {
			c.notReady = time.Time{}
		}
	}
	return nil
}

// ReplayDeadLetters is a hook that, when an update is rolled back,
// replays through the restored generation the dead letters kept while the
// update ran (frames its codecs could not decode). In edge mode those
// frames were acknowledged and kept in the Store; replaying them means a
// bad codec or mapping update loses nothing. Give it to WithHooks.
type ReplayDeadLetters struct {
	Gateway *gateway.Gateway
	mu      sync.Mutex
	after   uint64
}

var (
	_ PreApplier   = (*ReplayDeadLetters)(nil)
	_ RollbackHook = (*ReplayDeadLetters)(nil)
)

// PreApply implements PreApplier: it notes the last dead letter so far.
func (r *ReplayDeadLetters) PreApply(ctx context.Context, _, _ *Generation) error {
	last, err := r.last(ctx, 0)
	if errors.Is(err, gateway.ErrNotSupported) {
		return nil
	}
	r.mu.Lock()
	r.after = last
	r.mu.Unlock()
	return nil
}

func (r *ReplayDeadLetters) last(ctx context.Context, after uint64) (uint64, error) {
	for {
		dls, err := r.Gateway.DeadLetters(ctx, after, 1000)
		if err != nil {
			return after, err
		}
		if len(dls) == 0 {
			return after, nil
		}
		after = dls[len(dls)-1].Seq
	}
}

// Rollback implements RollbackHook: it replays the dead letters kept
// since PreApply.
func (r *ReplayDeadLetters) Rollback(ctx context.Context, _, _ *Generation, _ string) error {
	r.mu.Lock()
	after := r.after
	r.mu.Unlock()
	for {
		dls, err := r.Gateway.DeadLetters(ctx, after, 1000)
		if errors.Is(err, gateway.ErrNotSupported) {
			return nil
		}
		if err != nil || len(dls) == 0 {
			return err
		}
		seqs := make([]uint64, len(dls))
		for i, d := range dls {
			seqs[i] = d.Seq
		}
		if _, err := r.Gateway.ReplayDeadLetters(ctx, seqs...); err != nil {
			return err
		}
		after = seqs[len(seqs)-1]
	}
}
