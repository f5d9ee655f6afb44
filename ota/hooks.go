package ota

import "context"

// The hooks are optional: give any value to WithHooks and the Updater
// calls each of these interfaces it implements, in the order given.

// Verifier checks a staged generation (its files complete and hashed)
// before it is accepted. An error rejects the bundle (ErrHook) and nothing
// stays on disk.
type Verifier interface {
	Verify(ctx context.Context, g *Generation) error
}

// PreApplier runs before the host applies a generation (from is the
// running one, nil for the base configuration). An error stops the apply
// and rolls back.
type PreApplier interface {
	PreApply(ctx context.Context, from, to *Generation) error
}

// PostApplier runs once the host runs the new generation. An error counts
// as a degradation and rolls back.
type PostApplier interface {
	PostApply(ctx context.Context, g *Generation) error
}

// Prober is an extra health check, called at every probation check. An
// error is a degradation.
type Prober interface {
	Probe(ctx context.Context, g *Generation) error
}

// Committer runs once a generation passed probation and is the last
// known-good. Its error is logged.
type Committer interface {
	Commit(ctx context.Context, g *Generation) error
}

// RollbackHook runs once the last known-good (to, nil for the base
// configuration) runs again in place of from. Its error is logged.
type RollbackHook interface {
	Rollback(ctx context.Context, from, to *Generation, reason string) error
}

// Applier makes a generation the running one. Validate checks a staged
// generation without changing anything (a configuration that does not
// validate never leaves Verifying); Apply switches to it (nil: the
// host's base configuration). GatewayApplier applies gateway
// configurations through the gateway's reload path.
type Applier interface {
	Validate(ctx context.Context, g *Generation) error
	Apply(ctx context.Context, g *Generation) error
}

// HealthCheck watches the gateway during probation. Baseline is called
// just before an update is applied (or, after a restart, before its
// probation resumes); Check is called every check interval and returns a
// non-nil error, saying why, once health degraded against the baseline.
// Counters implements it over the gateway's counters; an SLO engine can
// implement it as well, or push alerts with Updater.Degrade.
type HealthCheck interface {
	Baseline(ctx context.Context)
	Check(ctx context.Context) error
}
