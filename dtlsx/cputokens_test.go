package dtlsx

import (
	"runtime"
	"testing"
	"time"
)

func fixedBounds(tokens, slots int) *cpuTokens {
	return &cpuTokens{tokens: func() int { return tokens }, slots: func() int { return slots }}
}

func newWaiter() *association { return &association{grant: make(chan struct{}, 1)} }

// TestCPUTokensServeHandshakesUnderWayFirst: a released token goes to the
// steps of handshakes under way (and resumptions) before full handshakes'
// ClientHellos, in arrival order within each, skipping withdrawn waits.
func TestCPUTokensServeHandshakesUnderWayFirst(t *testing.T) {
	ts := fixedBounds(1, 4)
	ts.inUse = 1 // the one token is held
	wait := func(hello bool) *association {
		a := newWaiter()
		a.waiting = true
		if hello {
			ts.hellos = append(ts.hellos, a)
		} else {
			ts.underway = append(ts.underway, a)
		}
		return a
	}
	hello1, step1, withdrawn, step2, hello2 := wait(true), wait(false), wait(false), wait(false), wait(true)
	withdrawn.waiting = false
	for i, want := range []*association{step1, step2, hello1, hello2} {
		ts.release()
		if len(want.grant) != 1 || !want.holdsCPU.Load() || want.waiting || ts.inUse != 1 {
			t.Fatalf("release %d: the expected waiter has grant %d, holds %v, waiting %v; tokens in use %d", i, len(want.grant), want.holdsCPU.Load(), want.waiting, ts.inUse)
		}
		<-want.grant
	}
	if len(withdrawn.grant) != 0 {
		t.Fatal("a withdrawn waiter was granted")
	}
	ts.release()
	if cpu, _ := ts.held(); cpu != 0 {
		t.Fatalf("with nobody waiting the token returns to the pool: %d in use", cpu)
	}
}

// TestCPUTokensAdmission: full handshakes past the bound wait in arrival
// order and are admitted as slots come free.
func TestCPUTokensAdmission(t *testing.T) {
	ts := fixedBounds(1, 2)
	ts.admitted = 2
	var queued []*association
	for range 3 {
		a := newWaiter()
		a.admitWaiting = true
		queued = append(queued, a)
		ts.admitQ = append(ts.admitQ, a)
	}
	queued[0].admitWaiting = false // withdrawn: skipped
	ts.releaseSlot()
	if _, admitted := ts.held(); admitted != 2 || !queued[1].holdsSlot.Load() || len(queued[1].grant) != 1 || len(queued[2].grant) != 0 {
		t.Fatalf("admitted %d; second waiter slot %v grant %d; third grant %d", admitted, queued[1].holdsSlot.Load(), len(queued[1].grant), len(queued[2].grant))
	}
	ts.releaseSlot()
	if !queued[2].holdsSlot.Load() || len(queued[0].grant) != 0 {
		t.Fatal("the third waiter was not admitted when a slot came free, or the withdrawn one was")
	}
}

// TestCPUTokensFollowEstablishedTraffic: the default bounds are GOMAXPROCS
// tokens and 64 slots until a session established for a second carries a
// record; then one token fewer (at least 1) and 4 slots per token, until
// a second passes without such a record. Fixed bounds never move.
func TestCPUTokensFollowEstablishedTraffic(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	var live liveTraffic
	ts := newCPUTokens(&settings{}, &live)
	if ts.tokens() != procs || ts.slots() != defaultMaxFull {
		t.Fatalf("idle gateway: %d tokens, %d slots; want %d and %d", ts.tokens(), ts.slots(), procs, defaultMaxFull)
	}
	now := time.Now().UnixNano()
	live.note(now-int64(100*time.Millisecond), now) // a session established just now
	if live.active() {
		t.Fatal("a session established 100 ms ago counts as established traffic")
	}
	live.note(now-int64(2*time.Second), now)
	protected := max(1, procs-1)
	if !live.active() || ts.tokens() != protected || ts.slots() != 4*protected {
		t.Fatalf("established traffic: active %v, %d tokens, %d slots; want %d and %d", live.active(), ts.tokens(), ts.slots(), protected, 4*protected)
	}
	live.last.Store(now - int64(2*liveWindow))
	if live.active() || ts.tokens() != procs {
		t.Fatal("the bounds stay tight after established traffic stopped")
	}
	fixed := newCPUTokens(&settings{workers: 3, maxFull: 7}, &live)
	live.note(now-int64(2*time.Second), time.Now().UnixNano())
	if fixed.tokens() != 3 || fixed.slots() != 7 {
		t.Fatalf("fixed bounds moved: %d tokens, %d slots", fixed.tokens(), fixed.slots())
	}
}

// TestCPUTokensWaitForNetworkPass: while a pass is needed, a released
// token goes to the next step only once the pipe's reader has woken, and
// no step takes it meanwhile; when none is needed it goes on at once.
func TestCPUTokensWaitForNetworkPass(t *testing.T) {
	ts := fixedBounds(1, 4)
	need := true
	ts.needPass = func() bool { return need } // read under ts.mu
	if err := ts.startPass(); err != nil {
		t.Fatal(err)
	}
	ts.inUse = 1
	first := newWaiter()
	first.waiting = true
	ts.underway = append(ts.underway, first)
	ts.release()
	ts.mu.Lock()
	ts.grantLocked() // as a new step's acquireCPU would try
	gated, inUse := ts.gated, ts.inUse
	ts.mu.Unlock()
	if len(first.grant) != 0 || !gated || inUse != 0 {
		t.Fatalf("before the pass: grant %d, gated %v, tokens in use %d", len(first.grant), gated, inUse)
	}
	done := make(chan struct{})
	go func() {
		ts.passLoop()
		close(done)
	}()
	select {
	case <-first.grant:
	case <-time.After(10 * time.Second):
		t.Fatal("no grant after the pass")
	}
	ts.mu.Lock()
	passes := ts.passes
	need = false
	second := newWaiter()
	second.waiting = true
	ts.underway = append(ts.underway, second)
	ts.mu.Unlock()
	if passes != 1 || !first.holdsCPU.Load() {
		t.Fatalf("%d passes, first holds the token: %v", passes, first.holdsCPU.Load())
	}
	ts.release()
	if len(second.grant) != 1 {
		t.Fatal("with no pass needed the token did not go on at once")
	}
	// Closing the pipe opens the gate for good.
	ts.mu.Lock()
	need = true
	third := newWaiter()
	third.waiting = true
	ts.underway = append(ts.underway, third)
	ts.mu.Unlock()
	ts.release()
	ts.stopPass()
	<-done
	if len(third.grant) != 1 {
		t.Fatal("a step waiting for a pass was not granted when the pipe closed")
	}
	ts.release()
	if cpu, _ := ts.held(); cpu != 0 || ts.gated {
		t.Fatalf("%d tokens in use after the last release, gated %v", cpu, ts.gated)
	}
}
