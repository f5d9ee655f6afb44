package dtlsx

import (
	"net"
	"os"
	"sync"
)

// cpuTokens bounds the handshake steps that run at once (see
// association.acquireCPU). A freed token goes to the first waiting step of
// a handshake already under way (past its ClientHello, or a resumption),
// and only then to a full handshake's ClientHello: handshakes in progress
// and resumptions finish first, and new full handshakes take what CPU
// they leave.
type cpuTokens struct {
	mu   sync.Mutex
	free int
	// Waiting associations, in arrival order; an entry whose waiting flag
	// is clear was withdrawn (cancelWait) and is skipped.
	underway, hellos []*association
}

func newCPUTokens(n int) *cpuTokens { return &cpuTokens{free: n} }

// release returns a token: to the first step waiting, or to the pool.
func (t *cpuTokens) release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, q := range []*[]*association{&t.underway, &t.hellos} {
		for len(*q) > 0 {
			a := (*q)[0]
			(*q)[0] = nil
			*q = (*q)[1:]
			if !a.waiting {
				continue
			}
			a.waiting = false
			a.holdsCPU.Store(true)
			a.grant <- struct{}{}
			return
		}
		*q = nil // let the drained backing array go
	}
	t.free++
}

// inUse reports how many of n tokens are held, for tests.
func (t *cpuTokens) inUse(n int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return n - t.free
}

// acquireCPU takes a handshake CPU token before a handshake step: pion
// processing a handshake datagram (or setting up its Conn), or a step of
// the listener's abbreviated handshake. At most WithHandshakeWorkers steps
// (default one core fewer than GOMAXPROCS) run at once, so established
// traffic always finds a processor. hello says the step answers a
// ClientHello of a full handshake, which waits behind the others. The
// token is returned when pion answers (WriteTo), when the handshake ends,
// or after cpuGrace without a datagram.
func (a *association) acquireCPU(hello bool) error {
	if !a.handshaking.Load() || a.holdsCPU.Load() {
		return nil
	}
	t := a.l.cpu
	t.mu.Lock()
	if t.free > 0 {
		t.free--
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
		select {
		case <-a.grant:
		case <-a.closed:
			a.cancelWait()
			return net.ErrClosed
		case <-a.deadline.done():
			a.cancelWait()
			return os.ErrDeadlineExceeded
		}
	}
	// The handshake may have ended, or the association closed, while this
	// waited; both release after clearing their flag, so one side of this
	// check always gives the token back.
	if a.isClosed() {
		a.releaseCPU()
		return net.ErrClosed
	}
	if !a.handshaking.Load() {
		a.releaseCPU()
	}
	return nil
}

// cancelWait withdraws a wait that ended without its token or, if the
// token was granted meanwhile, gives it back.
func (a *association) cancelWait() {
	t := a.l.cpu
	t.mu.Lock()
	if a.waiting {
		a.waiting = false
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	<-a.grant // granted under t.mu before waiting was cleared
	a.releaseCPU()
}

func (a *association) releaseCPU() {
	if a.holdsCPU.CompareAndSwap(true, false) {
		a.l.cpu.release()
	}
}
