package dtlsx

import (
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// cpuTokens schedules the CPU work of handshakes. It bounds the steps that
// run at once (see association.acquireCPU) and the full handshakes
// admitted past their cookie exchange (see association.admit).
//
// A freed token goes to the first waiting step of a handshake already
// under way (past its ClientHello, or a resumption), and only then to a
// full handshake's ClientHello: handshakes in progress and resumptions
// finish first, and new full handshakes take what CPU they leave.
//
// Both bounds may follow the listener's established traffic (see
// liveTraffic): tokens and slots are checked against them at every grant,
// so a change applies from the next one.
type cpuTokens struct {
	mu       sync.Mutex
	inUse    int
	tokens   func() int // the bound on steps now
	underway []*association
	hellos   []*association

	admitted int
	slots    func() int // the bound on admitted full handshakes now
	admitQ   []*association
	// In every queue, an entry whose flag (waiting, admitWaiting) is
	// clear was withdrawn and is skipped.

	pass     *netPass    // nil: tokens never wait for the network poller
	needPass func() bool // whether a released token waits for a pass now
	gated    bool        // no token is handed out until the next pass
	passes   uint64      // passes that reopened the gate, for tests
}

// netPass hands released tokens on only after the Go scheduler has polled
// the network, when handshake steps could otherwise occupy every
// processor.
//
// The runtime polls the network when a processor finds its run queue
// empty; a processor that always has runnable goroutines is polled only by
// sysmon, every 10 ms. During a reconnect storm on a gateway with one
// processor, established sessions' records would wait in the socket that
// long between two handshake steps. A goroutine reading a pipe wakes only
// through the network poller: a release writes a byte into the pipe, and
// the token is handed on when the reader wakes. The poll that wakes it
// also wakes the listener's reader if records are waiting, and those run
// before the next step. With processors to spare, the byte wakes the
// poller at once.
type netPass struct {
	r, w      *os.File
	requested bool // a byte is in the pipe or being read; guarded by cpuTokens.mu
}

var passByte = [1]byte{0}

// startPass opens the pipe of a netPass; passLoop serves it until
// stopPass.
func (t *cpuTokens) startPass() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	t.pass = &netPass{r: r, w: w}
	return nil
}

// passLoop opens the gate each time the network poller wakes it. When
// stopPass closes the pipe (or the pipe fails), tokens go on without
// passes from then on.
func (t *cpuTokens) passLoop() {
	p := t.pass
	var b [64]byte
	for {
		if _, err := p.r.Read(b[:]); err != nil {
			break
		}
		// Whatever the same poll woke (the listener's reader, and then
		// the records it routes) runs before the step this grant starts.
		runtime.Gosched()
		t.mu.Lock()
		p.requested = false
		t.gated = false
		t.passes++
		t.grantLocked()
		t.mu.Unlock()
	}
	t.mu.Lock()
	t.pass = nil
	t.gated = false
	t.grantLocked()
	t.mu.Unlock()
	_ = p.r.Close()
	_ = p.w.Close()
}

// stopPass ends passLoop.
func (t *cpuTokens) stopPass() {
	t.mu.Lock()
	p := t.pass
	t.mu.Unlock()
	if p != nil {
		_ = p.w.Close()
	}
}

// release returns a token and hands out what the bounds allow, after a
// pass of the network poller if one is needed now (see netPass).
func (t *cpuTokens) release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.inUse--
	if t.pass != nil && t.needPass() {
		t.gated = true
		if t.pass.requested {
			return
		}
		if _, err := t.pass.w.Write(passByte[:]); err == nil {
			t.pass.requested = true
			return
		}
		t.gated = false // the pipe is closing: hand the token on now
	}
	t.grantLocked()
}

// grantLocked gives tokens to waiting steps, under way first, and admits
// waiting full handshakes, while the bounds allow.
func (t *cpuTokens) grantLocked() {
	for !t.gated && t.inUse < t.tokens() {
		a := popWaiting(&t.underway, func(a *association) *bool { return &a.waiting })
		if a == nil {
			a = popWaiting(&t.hellos, func(a *association) *bool { return &a.waiting })
		}
		if a == nil {
			break
		}
		t.inUse++
		a.holdsCPU.Store(true)
		a.grant <- struct{}{}
	}
	for t.admitted < t.slots() {
		a := popWaiting(&t.admitQ, func(a *association) *bool { return &a.admitWaiting })
		if a == nil {
			break
		}
		t.admitted++
		a.holdsSlot.Store(true)
		a.grant <- struct{}{}
	}
}

// popWaiting takes the first entry of q whose flag is set, clearing it.
func popWaiting(q *[]*association, flag func(*association) *bool) *association {
	for len(*q) > 0 {
		a := (*q)[0]
		(*q)[0] = nil
		*q = (*q)[1:]
		if f := flag(a); *f {
			*f = false
			return a
		}
	}
	*q = nil // let the drained backing array go
	return nil
}

// releaseSlot ends a full handshake's admission.
func (t *cpuTokens) releaseSlot() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.admitted--
	t.grantLocked()
}

// held reports the tokens held and the full handshakes admitted, for
// tests.
func (t *cpuTokens) held() (cpu, admitted int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.inUse, t.admitted
}

// liveTraffic tells whether established sessions carry traffic: a record
// from a session established for at least liveAge arrived within the last
// liveWindow. The router notes such records (note); the default bounds of
// cpuTokens read it.
type liveTraffic struct {
	last atomic.Int64 // UnixNano of the last such record
}

const (
	liveAge    = time.Second
	liveWindow = time.Second
)

// note records a record routed to a, established at establishedAt
// (UnixNano).
func (lt *liveTraffic) note(establishedAt, now int64) {
	if now-establishedAt >= int64(liveAge) {
		lt.last.Store(now)
	}
}

func (lt *liveTraffic) active() bool {
	last := lt.last.Load()
	return last != 0 && time.Now().UnixNano()-last < int64(liveWindow)
}

// acquireCPU takes a handshake CPU token before a handshake step: pion
// processing a handshake datagram (or setting up its Conn), or a step of
// the listener's abbreviated handshake. At most WithHandshakeWorkers steps
// run at once, so established traffic always finds a processor. hello
// says the step answers a ClientHello of a full handshake, which waits
// behind the others. The token is returned when pion answers (WriteTo),
// when the handshake ends, or after cpuGrace without a datagram.
func (a *association) acquireCPU(hello bool) error {
	if !a.handshaking.Load() || a.holdsCPU.Load() {
		return nil
	}
	t := a.l.cpu
	t.mu.Lock()
	if !t.gated && t.inUse < t.tokens() {
		t.inUse++
		a.holdsCPU.Store(true)
		t.mu.Unlock()
	} else {
		a.waiting = true
		if hello {
			t.hellos = append(t.hellos, a)
		} else {
			t.underway = append(t.underway, a)
		}
		t.mu.Unlock()
		if err := a.awaitGrant(&a.waiting, a.releaseCPU); err != nil {
			return err
		}
	}
	return a.keepGrant(a.releaseCPU)
}

// awaitGrant waits for the grant of a wait queued under flag (waiting or
// admitWaiting); if the association closes or its deadline passes first,
// the wait is withdrawn, or a grant that raced it is given back with
// release.
func (a *association) awaitGrant(flag *bool, release func()) error {
	select {
	case <-a.grant:
		return nil
	case <-a.closed:
		a.cancelWait(flag, release)
		return net.ErrClosed
	case <-a.deadline.done():
		a.cancelWait(flag, release)
		return os.ErrDeadlineExceeded
	}
}

// keepGrant checks a token or slot just obtained: the handshake may have
// ended, or the association closed, while it waited. Both release after
// clearing their flag, so one side of this check always gives it back.
func (a *association) keepGrant(release func()) error {
	if a.isClosed() {
		release()
		return net.ErrClosed
	}
	if !a.handshaking.Load() {
		release()
	}
	return nil
}

// cancelWait withdraws a wait (flag: waiting or admitWaiting) that ended
// without its grant or, if it was granted meanwhile, gives the grant back
// with release.
func (a *association) cancelWait(flag *bool, release func()) {
	t := a.l.cpu
	t.mu.Lock()
	if *flag {
		*flag = false
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	<-a.grant // granted under t.mu before the flag was cleared
	release()
}

func (a *association) releaseCPU() {
	if a.holdsCPU.CompareAndSwap(true, false) {
		a.l.cpu.release()
	}
}

// admit waits until a full handshake's cookie-bearing ClientHello
// (cookieHello) may proceed (WithMaxFullHandshakes). Resumed and
// established traffic, and PSK-only listeners, never wait here.
func (a *association) admit(cookieHello bool) error {
	if !a.needsSlot || a.admitted || !cookieHello {
		return nil
	}
	t := a.l.cpu
	t.mu.Lock()
	if t.admitted < t.slots() {
		t.admitted++
		a.holdsSlot.Store(true)
		t.mu.Unlock()
	} else {
		t.mu.Unlock()
		a.l.counters.admissionWaits.Add(1)
		a.releaseCPU() // never wait for admission holding a token
		t.mu.Lock()
		a.admitWaiting = true
		t.admitQ = append(t.admitQ, a)
		t.grantLocked() // a slot may have come free meanwhile
		t.mu.Unlock()
		if err := a.awaitGrant(&a.admitWaiting, a.releaseSlot); err != nil {
			return err
		}
	}
	a.admitted = true
	return a.keepGrant(a.releaseSlot)
}

func (a *association) releaseSlot() {
	if a.holdsSlot.CompareAndSwap(true, false) {
		a.l.cpu.releaseSlot()
	}
}
