// Package rollout is the fleet side of package ota: the policy a
// device-management service embeds to push a bundle to many gateways.
// A canary group goes first; then waves grow from a base size by a
// factor; the rollout aborts as soon as the failure percentage over at
// least MinReporters reporting gateways passes a threshold.
//
//	r, _ := rollout.New(rollout.Policy{Canary: 5, BaseRate: 10, Factor: 2, AbortPercent: 20}, gateways)
//	for !r.Finished() {
//		for _, gw := range r.Next() { publish the desired document of gw }
//		on each reported document: r.Report(gw, state == Committed)
//	}
//
// A wave starts once every gateway of the previous one reported, the way
// hawkBit and AWS IoT Jobs roll out; a gateway that never reports holds
// the rollout (the service decides when to count it as failed with
// Report). The policy does not publish anything itself.
package rollout

import (
	"errors"
	"fmt"
	"math"
	"sync"
)

// Policy shapes a rollout. Zero fields take the defaults.
type Policy struct {
	// Canary is the size of the first group. Default 5. A larger canary
	// sees more failures before the abort, and catches rarer ones.
	Canary int
	// BaseRate is the size of the first wave after the canary. Default 10.
	BaseRate int
	// Factor multiplies each following wave. Default 2 (exponential).
	Factor float64
	// AbortPercent aborts when failed/reported*100 is above it. Default 20.
	AbortPercent float64
	// MinReporters is how many gateways must have reported before the
	// failure percentage counts. Default: Canary.
	MinReporters int
}

func (p *Policy) defaults() error {
	if p.Canary == 0 {
		p.Canary = 5
	}
	if p.BaseRate == 0 {
		p.BaseRate = 10
	}
	if p.Factor == 0 {
		p.Factor = 2
	}
	if p.AbortPercent == 0 {
		p.AbortPercent = 20
	}
	if p.MinReporters == 0 {
		p.MinReporters = p.Canary
	}
	if p.Canary < 0 || p.BaseRate < 0 || p.Factor < 1 || p.AbortPercent < 0 || p.AbortPercent > 100 || p.MinReporters < 0 {
		return fmt.Errorf("rollout: invalid policy %+v", *p)
	}
	return nil
}

// Outcome of one gateway.
type Outcome int

// The outcomes.
const (
	Untargeted Outcome = iota
	Pending
	Succeeded
	Failed
)

// Rollout tracks one bundle's rollout over a list of gateways. Safe for
// concurrent use.
type Rollout struct {
	p        Policy
	gateways []string
	mu       sync.Mutex
	out      map[string]Outcome
	next     int // index of the next gateway to target
	wave     int
	inWave   int // targeted and not yet reported in the current wave
	ok, bad  int
	aborted  string
}

// New plans a rollout over gateways, in the given order (put the canary
// candidates first).
func New(p Policy, gateways []string) (*Rollout, error) {
	if err := p.defaults(); err != nil {
		return nil, err
	}
	if len(gateways) == 0 {
		return nil, errors.New("rollout: no gateways")
	}
	r := &Rollout{p: p, gateways: gateways, out: make(map[string]Outcome, len(gateways))}
	for _, g := range gateways {
		if _, dup := r.out[g]; dup {
			return nil, fmt.Errorf("rollout: gateway %q listed twice", g)
		}
		r.out[g] = Untargeted
	}
	return r, nil
}

// WaveSize is the size of wave w (0 is the canary).
func (p Policy) WaveSize(w int) int {
	_ = p.defaults()
	if w == 0 {
		return p.Canary
	}
	return int(math.Ceil(float64(p.BaseRate) * math.Pow(p.Factor, float64(w-1))))
}

// Next returns the gateways to target now: the next wave once every
// gateway of the previous one reported, nothing otherwise or once the
// rollout finished or aborted.
func (r *Rollout) Next() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.aborted != "" || r.inWave > 0 || r.next >= len(r.gateways) {
		return nil
	}
	n := min(r.p.WaveSize(r.wave), len(r.gateways)-r.next)
	wave := r.gateways[r.next : r.next+n]
	for _, g := range wave {
		r.out[g] = Pending
	}
	r.next += n
	r.wave++
	r.inWave = n
	return append([]string(nil), wave...)
}

// Report records a targeted gateway's outcome (its reported document
// says Committed: ok; RolledBack or Failed: not ok). Reports of
// untargeted or already reported gateways are ignored.
func (r *Rollout) Report(gateway string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.out[gateway] != Pending {
		return
	}
	r.inWave--
	if ok {
		r.out[gateway] = Succeeded
		r.ok++
	} else {
		r.out[gateway] = Failed
		r.bad++
	}
	if n := r.ok + r.bad; r.aborted == "" && n >= r.p.MinReporters && n > 0 {
		if pct := float64(r.bad) * 100 / float64(n); pct > r.p.AbortPercent {
			r.aborted = fmt.Sprintf("%.0f%% of %d reporting gateways failed (threshold %.0f%%)", pct, n, r.p.AbortPercent)
		}
	}
}

// Aborted returns why the rollout aborted ("" while it did not).
func (r *Rollout) Aborted() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.aborted
}

// Finished reports whether nothing more will happen: aborted, or every
// gateway targeted and reported.
func (r *Rollout) Finished() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.aborted != "" || r.next >= len(r.gateways) && r.inWave == 0
}

// Counts returns how many gateways were targeted, succeeded and failed.
func (r *Rollout) Counts() (targeted, succeeded, failed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.next, r.ok, r.bad
}

// Outcome returns a gateway's outcome.
func (r *Rollout) Outcome(gateway string) Outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out[gateway]
}
