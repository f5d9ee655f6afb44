package dtlsx

import "testing"

// TestCPUTokensServeHandshakesUnderWayFirst: a released token goes to the
// steps of handshakes under way (and resumptions) before full handshakes'
// ClientHellos, in arrival order within each, skipping withdrawn waits.
func TestCPUTokensServeHandshakesUnderWayFirst(t *testing.T) {
	ts := newCPUTokens(1)
	ts.free = 0 // the one token is held
	wait := func(hello bool) *association {
		a := &association{grant: make(chan struct{}, 1), waiting: true}
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
		if len(want.grant) != 1 || !want.holdsCPU.Load() || want.waiting {
			t.Fatalf("release %d: the expected waiter has grant %d, holds %v, waiting %v", i, len(want.grant), want.holdsCPU.Load(), want.waiting)
		}
		<-want.grant
	}
	if len(withdrawn.grant) != 0 || ts.free != 0 {
		t.Fatalf("withdrawn waiter granted %d, free tokens %d", len(withdrawn.grant), ts.free)
	}
	ts.release()
	if ts.free != 1 || ts.inUse(1) != 0 {
		t.Fatalf("with nobody waiting the token returns to the pool: free %d", ts.free)
	}
}
