package ota

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Option configures an Updater.
type Option func(*Updater) error

// WithLogger sets the logger. Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(u *Updater) error { u.log = l; return nil }
}

// WithTarget names this gateway and its labels for the manifests' target
// selectors. Default: no name and no labels, so only bundles without a
// selector (or with "target name *") apply.
func WithTarget(name string, labels map[string]string) Option {
	return func(u *Updater) error { u.name, u.labels = name, labels; return nil }
}

// WithHealth sets the probation health check. Default: none, so only
// Prober hooks and Degrade can roll an update back; gatewayd uses
// Counters. Several checks: give several options.
func WithHealth(h HealthCheck) Option {
	return func(u *Updater) error { u.health = append(u.health, h); return nil }
}

// WithHooks adds hook values (see Verifier, PreApplier, PostApplier,
// Prober, Committer, RollbackHook). Default: none.
func WithHooks(hooks ...any) Option {
	return func(u *Updater) error { u.hooks = append(u.hooks, hooks...); return nil }
}

// WithProbation sets how long a new generation runs under watch before it
// is committed, and how often it is checked. Defaults: 30 s and 500 ms. A
// longer window catches slower degradations and keeps the update
// revocable longer; the check interval bounds how late a rollback starts
// after its cause is visible.
func WithProbation(window, every time.Duration) Option {
	return func(u *Updater) error {
		if window <= 0 || every <= 0 {
			return fmt.Errorf("ota: probation window and interval must be positive")
		}
		u.window, u.every = window, every
		return nil
	}
}

// WithMaxBundleSize bounds a bundle (its archive and the sum of its
// files). Default: 64 MiB. Larger bundles are rejected with ErrTooLarge
// before they fill the disk.
func WithMaxBundleSize(n int64) Option {
	return func(u *Updater) error {
		if n <= 0 {
			return fmt.Errorf("ota: max bundle size must be positive")
		}
		u.limit = n
		return nil
	}
}

// WithClock sets the time source and the allowed clock skew for a
// manifest's created time. Defaults: time.Now and 5 minutes.
func WithClock(now func() time.Time, skew time.Duration) Option {
	return func(u *Updater) error { u.now, u.skew = now, skew; return nil }
}

// WithReport calls f after every transition with the new status (the
// reported document). It must not block for long. Default: none.
func WithReport(f func(Status)) Option {
	return func(u *Updater) error { u.report = append(u.report, f); return nil }
}

// OnReport adds f as WithReport does, for reporters built after New.
func (u *Updater) OnReport(f func(Status)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.report = append(u.report, f)
}

// Stats counts what an Updater did.
type Stats struct {
	Offered    uint64            `json:"offered"`
	Rejected   map[string]uint64 `json:"rejected"` // by Reason
	Applied    uint64            `json:"applied"`
	Committed  uint64            `json:"committed"`
	RolledBack uint64            `json:"rolled_back"`
}

// Updater installs signed bundles into generations under its state
// directory, applies them, watches them on probation and commits them or
// rolls them back. It is safe for concurrent use; one update runs at a
// time.
type Updater struct {
	d       disk
	applier Applier
	log     *slog.Logger
	name    string
	labels  map[string]string
	health  []HealthCheck
	hooks   []any
	window  time.Duration
	every   time.Duration
	limit   int64
	now     func() time.Time
	skew    time.Duration
	report  []func(Status)
	trust   Trust // configured

	run     sync.Mutex // one update at a time
	mu      sync.Mutex
	st      Status
	stats   Stats
	degrade chan string
}

// New opens the state directory dir (created if missing), recovers from
// whatever an interrupted update left there, and returns an Updater whose
// Current generation the host should run. trust is the configured trust;
// a bundle that rotated the keys replaces it (persisted in dir).
func New(dir string, trust Trust, a Applier, opts ...Option) (*Updater, error) {
	if err := trust.Check(); err != nil {
		return nil, err
	}
	if a == nil {
		return nil, errors.New("ota: no Applier")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	u := &Updater{d: disk{dir: dir}, applier: a, log: slog.New(slog.DiscardHandler), window: 30 * time.Second,
		every: 500 * time.Millisecond, limit: 64 << 20, now: time.Now, skew: 5 * time.Minute, trust: trust,
		degrade: make(chan string, 1)}
	u.stats.Rejected = map[string]uint64{}
	for _, o := range opts {
		if err := o(u); err != nil {
			return nil, err
		}
	}
	if err := u.recover(); err != nil {
		return nil, err
	}
	return u, nil
}

// recover makes the state directory consistent: it finishes or undoes what
// a crash interrupted (see Next with EvRestart) and removes half-written
// and unreferenced generations.
func (u *Updater) recover() error {
	st, _, err := u.d.readStatus()
	if err != nil {
		return err
	}
	cur, err := u.d.readPointer(currentFile)
	if err != nil {
		return err
	}
	good, err := u.d.readPointer(goodFile)
	if err != nil {
		return err
	}
	next, err := Next(st.State, EvRestart)
	if err != nil {
		return err
	}
	if (next == Staged || next == Probation) && !u.d.whole(st.Target) {
		// The generation to resume is gone (removed by hand, a broken
		// disk): nothing to resume, run the last known-good.
		st.Reason = fmt.Sprintf("generation %q to resume is missing", st.Target)
		if next == Staged {
			next = Idle
		} else {
			next = RollingBack
		}
	}
	switch next {
	case Probation: // an apply was interrupted: finish it
		hit("recover:apply")
		if cur != st.Target {
			if err := u.d.writePointer(currentFile, st.Target, "recover:current"); err != nil {
				return err
			}
			cur = st.Target
		}
		st.Reason = "restarted while applying"
	case RollingBack: // a probation or rollback was interrupted: roll back
		hit("recover:rollback")
		if st.State == Probation {
			st.Reason = "restarted during probation"
		}
		if cur != good {
			if err := u.d.writePointer(currentFile, good, "recover:current"); err != nil {
				return err
			}
			cur = good
		}
		next = RolledBack
		u.stats.RolledBack++
	case Committed:
		if good != cur {
			if err := u.d.writePointer(goodFile, cur, "recover:good"); err != nil {
				return err
			}
			good = cur
		}
	case Idle:
		st.Target, st.TargetVersion = "", 0
	}
	if next != Staged && next != Probation {
		st.Target, st.TargetVersion = "", 0
	}
	// Remove what no state refers to.
	gens, junk, err := u.d.scan()
	if err != nil {
		return err
	}
	for _, j := range junk {
		if err := os.RemoveAll(filepath.Join(u.d.dir, j)); err != nil {
			return err
		}
	}
	removed := false
	for _, g := range gens {
		if g != cur && g != good && g != st.Target {
			if err := os.RemoveAll(filepath.Join(u.d.dir, g)); err != nil {
				return err
			}
			removed = true
		}
	}
	if removed || len(junk) > 0 {
		if err := syncDir(u.d.dir); err != nil {
			return err
		}
	}
	cg, err := u.d.load(cur)
	if err != nil {
		return err
	}
	gg, err := u.d.load(good)
	if err != nil {
		return err
	}
	st.Current, st.Version = cur, cg.version()
	st.Good, st.GoodVersion = good, gg.version()
	changed := next != st.State
	st.State = next
	if changed {
		st.Since = u.now()
		if err := u.d.writeStatus(st); err != nil {
			return err
		}
	}
	u.st = st
	if changed {
		u.log.Warn("ota: recovered an interrupted update", "state", st.State, "current", cur, "reason", st.Reason)
	}
	return nil
}

// Current returns the generation the host runs (nil: its base
// configuration).
func (u *Updater) Current() (*Generation, error) {
	u.mu.Lock()
	cur := u.st.Current
	u.mu.Unlock()
	return u.d.load(cur)
}

// Status returns the machine's status.
func (u *Updater) Status() Status {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.st
}

// Stats returns the counters.
func (u *Updater) Stats() Stats {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.stats
	s.Rejected = make(map[string]uint64, len(u.stats.Rejected))
	for k, v := range u.stats.Rejected {
		s.Rejected[k] = v
	}
	return s
}

// Trust returns the trust in force (the configured one, or the one the
// last key rotation installed).
func (u *Updater) Trust() Trust {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.st.Trust != nil {
		return *u.st.Trust
	}
	return u.trust
}

// Degrade reports a degradation seen outside the health checks (an SLO
// alert). During probation it rolls the update back; otherwise it is
// ignored.
func (u *Updater) Degrade(reason string) {
	select {
	case u.degrade <- reason:
	default:
	}
}

// set moves the machine by e; persist writes the new status first.
func (u *Updater) set(e Event, persist bool, edit func(*Status)) error {
	u.mu.Lock()
	next, err := Next(u.st.State, e)
	if err != nil {
		u.mu.Unlock()
		return err
	}
	st := u.st
	st.State, st.Since = next, u.now()
	if edit != nil {
		edit(&st)
	}
	if persist {
		if err := u.d.writeStatus(st); err != nil {
			u.mu.Unlock()
			return fmt.Errorf("ota: persisting state %s: %w", next, err)
		}
	}
	u.st = st
	reps := u.report
	u.mu.Unlock()
	u.log.Info("ota: state", "state", st.State, "current", st.Current, "version", st.Version, "target", st.Target, "reason", st.Reason)
	for _, f := range reps {
		f(st)
	}
	return nil
}

// Update installs the bundle read from r: verify and stage it, apply it,
// watch it on probation, then commit it or roll it back. It returns nil
// once the bundle is committed, an error wrapping a rejection sentinel
// when it was refused (nothing changed on disk), or an error saying why
// it was rolled back.
func (u *Updater) Update(ctx context.Context, r io.Reader) error {
	if !u.run.TryLock() {
		return ErrBusy
	}
	defer u.run.Unlock()
	if !u.Status().State.Resting() {
		return ErrBusy
	}
	g, err := u.stage(ctx, r)
	if err != nil {
		return err
	}
	return u.apply(ctx, g)
}

// Resume continues what a restart left: it applies a staged generation
// and runs the probation of one whose apply was interrupted. Call it once
// the host runs Current. It returns at once when nothing is pending.
func (u *Updater) Resume(ctx context.Context) error {
	u.run.Lock()
	defer u.run.Unlock()
	st := u.Status()
	switch st.State {
	case Staged:
		g, err := u.d.load(st.Target)
		if err != nil {
			return err
		}
		return u.apply(ctx, g)
	case Probation:
		g, err := u.d.load(st.Current)
		if err != nil {
			return err
		}
		for _, h := range u.health {
			h.Baseline(ctx)
		}
		return u.probation(ctx, g)
	}
	return nil
}

func (u *Updater) reject(err error, offered uint64) error {
	reason := Reason(err)
	u.mu.Lock()
	u.stats.Rejected[reason]++
	u.mu.Unlock()
	u.log.Error("ota: bundle rejected", "reason", reason, "err", err)
	// In memory only: a rejection changes nothing on disk.
	_ = u.set(EvReject, false, func(s *Status) {
		s.Reason = err.Error()
		s.Target, s.TargetVersion = "", 0
		if offered != 0 {
			s.Offered = offered
		}
	})
	return err
}

func (u *Updater) stage(ctx context.Context, r io.Reader) (*Generation, error) {
	u.mu.Lock()
	u.stats.Offered++
	u.mu.Unlock()
	if err := u.set(EvOffer, false, func(s *Status) { s.Reason = "" }); err != nil {
		return nil, err
	}
	if err := u.set(EvDownloaded, false, nil); err != nil {
		return nil, err
	}
	trust := u.Trust()
	cur := u.Status()
	var offered uint64
	check := func(msg []byte) (*Manifest, error) {
		m, _, err := OpenManifest(msg, trust)
		if err != nil {
			return nil, err
		}
		offered = m.Version
		now := u.now()
		if !now.Before(m.Expires) {
			return nil, fmt.Errorf("%w: %s expired at %s", ErrExpired, m.Name, m.Expires.Format(time.RFC3339))
		}
		if m.Created.After(now.Add(u.skew)) {
			return nil, fmt.Errorf("%w: %s created in the future (%s)", ErrExpired, m.Name, m.Created.Format(time.RFC3339))
		}
		if !m.Target.Matches(u.name, u.labels) {
			return nil, fmt.Errorf("%w: %s does not select gateway %q", ErrNotForMe, m.Name, u.name)
		}
		if m.Version <= cur.Version && !m.Rollback {
			return nil, fmt.Errorf("%w: version %d, running %d (only a signed rollback bundle may go back)", ErrDowngrade, m.Version, cur.Version)
		}
		return m, nil
	}
	validate := func(g *Generation) error {
		if err := u.applier.Validate(ctx, g); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		for _, h := range u.hooks {
			if v, ok := h.(Verifier); ok {
				if err := v.Verify(ctx, g); err != nil {
					return fmt.Errorf("%w: %w", ErrHook, err)
				}
			}
		}
		return nil
	}
	g, err := u.d.stage(r, u.limit, check, validate)
	if err != nil {
		return nil, u.reject(err, offered)
	}
	if err := u.set(EvVerified, true, func(s *Status) {
		s.Target, s.TargetVersion, s.Offered = g.Name, g.Manifest.Version, g.Manifest.Version
		if g.Manifest.Threshold > 0 {
			s.Trust = &Trust{Keys: g.Manifest.Trust, Threshold: g.Manifest.Threshold}
		}
	}); err != nil {
		_ = os.RemoveAll(g.Dir)
		return nil, u.reject(err, offered)
	}
	u.log.Info("ota: staged", "generation", g.Name, "name", g.Manifest.Name, "version", g.Manifest.Version)
	return g, nil
}

func (u *Updater) apply(ctx context.Context, g *Generation) error {
	st := u.Status()
	from, err := u.d.load(st.Current)
	if err != nil {
		return err
	}
	if err := u.set(EvApply, true, nil); err != nil {
		return err
	}
	for _, h := range u.health {
		h.Baseline(ctx)
	}
	fail := func(err error) error { return u.rollback(ctx, g, EvApplyFailed, err.Error()) }
	for _, h := range u.hooks {
		if p, ok := h.(PreApplier); ok {
			if err := p.PreApply(ctx, from, g); err != nil {
				return fail(fmt.Errorf("pre-apply hook: %w", err))
			}
		}
	}
	if err := u.d.writePointer(currentFile, g.Name, "apply:current"); err != nil {
		return fail(fmt.Errorf("switching the current pointer: %w", err))
	}
	hit("apply:before-host")
	if err := u.applier.Apply(ctx, g); err != nil {
		return fail(fmt.Errorf("apply: %w", err))
	}
	hit("apply:after-host")
	u.mu.Lock()
	u.stats.Applied++
	u.mu.Unlock()
	select { // a stale alert from before the apply does not count
	case <-u.degrade:
	default:
	}
	if err := u.set(EvApplied, true, func(s *Status) { s.Current, s.Version = g.Name, g.Manifest.Version }); err != nil {
		return fail(err)
	}
	for _, h := range u.hooks {
		if p, ok := h.(PostApplier); ok {
			if err := p.PostApply(ctx, g); err != nil {
				return u.rollback(ctx, g, EvDegraded, "post-apply hook: "+err.Error())
			}
		}
	}
	return u.probation(ctx, g)
}

// probation watches g for the window; it commits or rolls back.
func (u *Updater) probation(ctx context.Context, g *Generation) error {
	end := time.NewTimer(u.window)
	defer end.Stop()
	tick := time.NewTicker(u.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			// Left in Probation: the next start rolls back (see Next).
			return ctx.Err()
		case reason := <-u.degrade:
			return u.rollback(ctx, g, EvDegraded, reason)
		case <-tick.C:
			hit("probation:check")
			if why := u.check(ctx, g); why != "" {
				return u.rollback(ctx, g, EvDegraded, why)
			}
		case <-end.C:
			if why := u.check(ctx, g); why != "" {
				return u.rollback(ctx, g, EvDegraded, why)
			}
			return u.commit(ctx, g)
		}
	}
}

func (u *Updater) check(ctx context.Context, g *Generation) string {
	for _, h := range u.health {
		if err := h.Check(ctx); err != nil {
			return err.Error()
		}
	}
	for _, h := range u.hooks {
		if p, ok := h.(Prober); ok {
			if err := p.Probe(ctx, g); err != nil {
				return "probe: " + err.Error()
			}
		}
	}
	return ""
}

func (u *Updater) commit(ctx context.Context, g *Generation) error {
	if err := u.set(EvHealthy, true, func(s *Status) {
		s.Good, s.GoodVersion, s.Target, s.TargetVersion, s.Reason = g.Name, g.Manifest.Version, "", 0, ""
	}); err != nil {
		return err
	}
	prev, _ := u.d.readPointer(goodFile)
	if err := u.d.writePointer(goodFile, g.Name, "commit:good"); err != nil {
		return err // the next start finishes it (Committed: good = current)
	}
	if prev != "" && prev != g.Name {
		hit("commit:before-remove-old")
		_ = os.RemoveAll(filepath.Join(u.d.dir, prev))
	}
	u.mu.Lock()
	u.stats.Committed++
	u.mu.Unlock()
	for _, h := range u.hooks {
		if c, ok := h.(Committer); ok {
			if err := c.Commit(ctx, g); err != nil {
				u.log.Error("ota: commit hook", "err", err)
			}
		}
	}
	u.log.Info("ota: committed", "generation", g.Name, "version", g.Manifest.Version)
	return nil
}

// RollbackError is returned by Update when an applied bundle was rolled
// back.
type RollbackError struct {
	Generation string
	Version    uint64
	Reason     string
}

func (e *RollbackError) Error() string {
	return fmt.Sprintf("ota: %s (version %d) rolled back: %s", e.Generation, e.Version, e.Reason)
}

func (u *Updater) rollback(ctx context.Context, g *Generation, e Event, reason string) error {
	u.log.Warn("ota: rolling back", "generation", g.Name, "reason", reason)
	if err := u.set(e, true, func(s *Status) { s.Reason = reason }); err != nil {
		return err
	}
	st := u.Status()
	good, err := u.d.load(st.Good)
	if err == nil {
		err = u.d.writePointer(currentFile, st.Good, "rollback:current")
	}
	if err == nil {
		hit("rollback:before-host")
		// The rollback must happen even when the caller gave up.
		err = u.applier.Apply(context.WithoutCancel(ctx), good)
		hit("rollback:after-host")
	}
	if err != nil {
		_ = u.set(EvRollbackFailed, true, func(s *Status) { s.Reason = reason + "; rollback failed: " + err.Error() })
		return fmt.Errorf("ota: rollback of %s failed: %w (it was rolled back because: %s)", g.Name, err, reason)
	}
	if err := u.set(EvRolledBack, true, func(s *Status) {
		s.Current, s.Version, s.Target, s.TargetVersion = st.Good, st.GoodVersion, "", 0
	}); err != nil {
		return err
	}
	hit("rollback:before-remove")
	_ = os.RemoveAll(g.Dir)
	u.mu.Lock()
	u.stats.RolledBack++
	u.mu.Unlock()
	for _, h := range u.hooks {
		if r, ok := h.(RollbackHook); ok {
			if err := r.Rollback(ctx, g, good, reason); err != nil {
				u.log.Error("ota: rollback hook", "err", err)
			}
		}
	}
	return &RollbackError{Generation: g.Name, Version: g.Manifest.Version, Reason: reason}
}
