package dtlsx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgw/gateway/internal/udpbatch"
	"github.com/pion/dtls/v3"
)

// maxDatagram is the largest datagram the listener reads; larger ones are
// truncated by the kernel and then fail authentication in pion.
const maxDatagram = 4096

// socketBuffer is the receive buffer the listener asks for.
const socketBuffer = 4 << 20

// inboxLen bounds datagrams queued for one association; more are dropped
// (and counted), as a congested UDP socket would.
const inboxLen = 16

// Stats counts what a Listener did with handshakes and datagrams.
type Stats struct {
	Associations      int    // live associations (handshaking or established)
	HandshakesFull    uint64 // certificate handshakes with key exchange
	HandshakesPSK     uint64 // full PSK handshakes
	HandshakesResumed uint64 // abbreviated handshakes from the session cache
	ResumedFast       uint64 // of those, run by the listener itself instead of pion (WithFastResumption)
	CookieSkipped     uint64 // resumptions answered without HelloVerifyRequest
	HandshakeFailures uint64 // bad credentials, alerts, protocol errors
	HandshakeTimeouts uint64
	DecryptFailures   uint64 // handshakes whose peer's Finished failed to decrypt (wrong PSK), ended with bad_record_mac
	AdmissionWaits    uint64 // full handshakes that queued for a slot
	RateLimited       uint64 // new associations refused by the per-source limit
	PendingLimited    uint64 // new associations refused at the pending bound
	Malformed         uint64 // datagrams that are not DTLS records
	Unknown           uint64 // records for no association (not a ClientHello)
	InboxDrops        uint64 // datagrams dropped because an association lagged
	Reconnects        uint64 // associations replaced by a new handshake from the same address
}

type listenerCounters struct {
	full, psk, resumed, cookieSkipped, failures, timeouts, admissionWaits   atomic.Uint64
	decryptFailures, resumedFast                                            atomic.Uint64
	rateLimited, pendingLimited, malformed, unknown, inboxDrops, reconnects atomic.Uint64
}

// Listener accepts DTLS 1.2 associations on one UDP socket. It routes
// datagrams itself (by address, and by connection id), so it can replace an
// association when a rebooted device handshakes again from the same port,
// bound and order the expensive handshakes, rate-limit sources and skip the
// cookie round trip for resumptions it can serve. Accept returns only
// connections whose handshake completed.
//
// Closing the Listener closes the socket and with it every association,
// accepted ones included: they share the socket.
//
// Listener satisfies go-coap v3's dtls/server.Listener (AcceptWithContext
// and Close), so a coaps server can Serve on it directly. After Close,
// AcceptWithContext returns an error wrapping net.ErrClosed; stop the CoAP
// server first, or translate that error, since go-coap only recognises its
// own closed-listener error.
type Listener struct {
	s            settings
	pc           net.PacketConn
	udp          *net.UDPConn
	base         []dtls.ServerOption
	resumeOpts   []dtls.Option // pion options of a Conn the fast path resumes
	stateEncoder *stateEncoder
	cache        *SessionCache
	cpu          *cpuTokens  // handshake steps and full handshakes running at once
	live         liveTraffic // established sessions carrying traffic
	accepted     chan net.Conn
	work         chan *association // associations with a step to run (see schedule)
	ctx          context.Context
	cancel       context.CancelFunc
	pool         sync.Pool
	wg           sync.WaitGroup
	counters     listenerCounters
	needsSlots   bool

	mu      sync.Mutex
	closed  bool
	byAddr  map[netip.AddrPort]*association
	byCID   map[string]*association
	pending int
	sources sourceLimiter
}

// Listen opens a UDP socket on address ("host:port") and serves DTLS on it.
func Listen(network, address string, opts ...Option) (*Listener, error) {
	laddr, err := net.ResolveUDPAddr(network, address)
	if err != nil {
		return nil, fmt.Errorf("dtlsx: listen %s: %w", address, err)
	}
	pc, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, fmt.Errorf("dtlsx: listen %s: %w", address, err)
	}
	l, err := NewListener(pc, opts...)
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	return l, nil
}

// NewListener serves DTLS on an existing packet socket, which the Listener
// then owns and closes. Remote addresses must be *net.UDPAddr.
func NewListener(pc net.PacketConn, opts ...Option) (*Listener, error) {
	s, err := buildSettings(opts)
	if err != nil {
		return nil, err
	}
	base, err := s.serverOptions()
	if err != nil {
		return nil, err
	}
	if err := checkServerOptions(base); err != nil {
		return nil, err
	}
	cache := s.cache
	if cache == nil {
		if cache, err = NewSessionCache(); err != nil {
			return nil, err
		}
	}
	l := &Listener{
		s:          s,
		pc:         pc,
		base:       base,
		resumeOpts: s.resumeOptions(),
		cache:      cache,
		accepted:   make(chan net.Conn, s.backlog),
		work:       make(chan *association, s.maxPending),
		byAddr:     make(map[netip.AddrPort]*association),
		byCID:      make(map[string]*association),
		needsSlots: len(s.certs) > 0,
		sources:    newSourceLimiter(s.sourceRate, s.sourceBurst),
	}
	if l.stateEncoder, err = newStateEncoder(); err != nil {
		return nil, err
	}
	l.cpu = newCPUTokens(&l.s, &l.live)
	if !s.noNetPass {
		if err := l.cpu.startPass(); err != nil {
			return nil, fmt.Errorf("dtlsx: listener: %w", err)
		}
	}
	l.udp, _ = pc.(*net.UDPConn)
	if l.udp != nil {
		// Room for a reconnect storm's burst of ClientHellos; the kernel
		// caps it at net.core.rmem_max. Best effort.
		_ = l.udp.SetReadBuffer(socketBuffer)
	}
	l.pool.New = func() any { return new(datagram) }
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(1)
	go l.readLoop()
	if !s.noNetPass {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.cpu.passLoop()
		}()
	}
	for range s.maxHandshakeWorkers() + lookupWorkers {
		l.wg.Add(1)
		go l.runWorker()
	}
	return l, nil
}

// Addr returns the socket's local address.
func (l *Listener) Addr() net.Addr { return l.pc.LocalAddr() }

// Cache returns the session cache the listener resumes from.
func (l *Listener) Cache() *SessionCache { return l.cache }

// Accept waits for the next established connection. It implements net.Listener.
func (l *Listener) Accept() (net.Conn, error) {
	return l.AcceptWithContext(context.Background())
}

// AcceptWithContext waits for the next established connection or for ctx.
// The connection is a *dtls.Conn whose handshake has completed, or, for a
// session the listener resumed itself (WithFastResumption and
// WithOwnRecords, both on by default), a *dtlsx.Conn. Both have
// ConnectionState() (dtls.State, bool).
func (l *Listener) AcceptWithContext(ctx context.Context) (net.Conn, error) {
	select {
	case c := <-l.accepted:
		return c, nil
	case <-l.ctx.Done():
		return nil, fmt.Errorf("dtlsx: accept: %w", net.ErrClosed)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Stats returns a snapshot of the counters.
func (l *Listener) Stats() Stats {
	k := &l.counters
	l.mu.Lock()
	n := len(l.byAddr)
	l.mu.Unlock()
	return Stats{
		Associations: n, HandshakesFull: k.full.Load(), HandshakesPSK: k.psk.Load(),
		HandshakesResumed: k.resumed.Load(), ResumedFast: k.resumedFast.Load(), CookieSkipped: k.cookieSkipped.Load(),
		HandshakeFailures: k.failures.Load(), HandshakeTimeouts: k.timeouts.Load(),
		DecryptFailures: k.decryptFailures.Load(),
		AdmissionWaits:  k.admissionWaits.Load(), RateLimited: k.rateLimited.Load(),
		PendingLimited: k.pendingLimited.Load(), Malformed: k.malformed.Load(),
		Unknown: k.unknown.Load(), InboxDrops: k.inboxDrops.Load(), Reconnects: k.reconnects.Load(),
	}
}

// Close stops accepting, closes every association and the socket, and
// waits for the listener's goroutines. The session cache stays open.
func (l *Listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	assocs := make([]*association, 0, len(l.byAddr))
	for _, a := range l.byAddr {
		assocs = append(assocs, a)
		if a.candidate != nil {
			assocs = append(assocs, a.candidate)
		}
	}
	l.mu.Unlock()
	l.cancel()
	err := l.pc.Close()
	l.cpu.stopPass()
	for _, a := range assocs {
		a.shutdown()
	}
	l.wg.Wait()
	for {
		select {
		case c := <-l.accepted:
			_ = c.Close()
		default:
			return err
		}
	}
}

type datagram struct {
	buf  [maxDatagram]byte
	n    int
	from netip.AddrPort
}

func (l *Listener) getDatagram() *datagram  { return l.pool.Get().(*datagram) }
func (l *Listener) putDatagram(d *datagram) { l.pool.Put(d) }

func (l *Listener) readFrom(d *datagram) (int, netip.AddrPort, error) {
	if l.udp != nil {
		return l.udp.ReadFromUDPAddrPort(d.buf[:])
	}
	n, addr, err := l.pc.ReadFrom(d.buf[:])
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, netip.AddrPort{}, fmt.Errorf("dtlsx: remote address %v is not UDP", addr)
	}
	return n, ua.AddrPort(), nil
}

func (l *Listener) writeTo(b []byte, addr net.Addr) (int, error) {
	if l.udp != nil {
		if ua, ok := addr.(*net.UDPAddr); ok {
			return l.udp.WriteToUDPAddrPort(b, ua.AddrPort())
		}
	}
	return l.pc.WriteTo(b, addr)
}

// readLoop is the only reader of the socket.
func (l *Listener) readLoop() {
	defer l.wg.Done()
	if l.udp != nil && l.s.udpBatch > 1 {
		l.readBatches(l.s.udpBatch)
		return
	}
	for {
		d := l.getDatagram()
		n, from, err := l.readFrom(d)
		if err != nil {
			l.putDatagram(d)
			if l.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.s.log.Warn("dtlsx: read failed", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		d.n, d.from = n, from
		l.route(d)
	}
}

// readBatches is readLoop with recvmmsg: up to n datagrams per call, read
// into datagrams of the pool, routed in arrival order.
func (l *Listener) readBatches(n int) {
	br, err := udpbatch.NewReader(l.udp, n, 1)
	if err != nil {
		l.s.log.Error("dtlsx: batched reader", "err", err)
		return
	}
	slots := make([]*datagram, n)
	for i := range slots {
		slots[i] = l.getDatagram()
		br.SetBuffer(i, slots[i].buf[:])
	}
	defer func() {
		for _, d := range slots {
			l.putDatagram(d)
		}
	}()
	for {
		ms, err := br.Read()
		if err != nil {
			if l.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.s.log.Warn("dtlsx: read failed", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		for i := range ms {
			// A datagram longer than maxDatagram was cut, as on the
			// one-datagram path, and fails authentication in pion.
			d := slots[i]
			d.n, d.from = ms[i].N, ms[i].Addr
			slots[i] = l.getDatagram()
			br.SetBuffer(i, slots[i].buf[:])
			l.route(d)
		}
	}
}

// route hands a datagram to its association, creating one for an epoch-0
// ClientHello from a new address (or from an address whose association is
// established: a device that rebooted behind the same port).
func (l *Listener) route(d *datagram) {
	ri, err := parseRecord(d.buf[:d.n], l.s.cidLen)
	if err != nil {
		l.counters.malformed.Add(1)
		l.putDatagram(d)
		return
	}
	if ri.contentType == contentCID {
		l.mu.Lock()
		a := l.byCID[string(ri.cid)]
		l.mu.Unlock()
		if a == nil {
			l.counters.unknown.Add(1)
			l.putDatagram(d)
			return
		}
		l.noteTraffic(a)
		a.deliver(d)
		return
	}
	l.mu.Lock()
	a := l.byAddr[d.from]
	switch {
	case a == nil:
		if !ri.hello {
			l.mu.Unlock()
			l.counters.unknown.Add(1)
			l.putDatagram(d)
			return
		}
		a = l.startLocked(d.from, ri.sessionID, nil)
		l.mu.Unlock()
		if a == nil {
			l.putDatagram(d)
			return
		}
		a.deliver(d) // schedules its first step
	case ri.hello && a.established.Load():
		c := a.candidate
		if c == nil {
			c = l.startLocked(d.from, ri.sessionID, a)
		}
		l.mu.Unlock()
		if c == nil {
			l.putDatagram(d)
			return
		}
		c.deliver(d)
	case a.candidate != nil:
		c := a.candidate
		l.mu.Unlock()
		if ri.epoch == 0 {
			c.deliver(d)
			return
		}
		// Epoch 1 records are either the old device's traffic or the new
		// handshake's Finished; each side drops what it cannot decrypt.
		dup := l.getDatagram()
		dup.n, dup.from = copy(dup.buf[:], d.buf[:d.n]), d.from
		a.deliver(d)
		c.deliver(dup)
	default:
		l.mu.Unlock()
		l.noteTraffic(a)
		a.deliver(d)
	}
}

// noteTraffic tells l.live about a record for an established association.
func (l *Listener) noteTraffic(a *association) {
	if a.established.Load() {
		l.live.note(a.establishedAt.Load(), time.Now().UnixNano())
	}
}

// startLocked creates an association, or returns nil (counted) when
// admission refuses it. Its first step runs on a handshake worker once
// its first datagram is delivered.
func (l *Listener) startLocked(from netip.AddrPort, offered []byte, replaces *association) *association {
	if l.closed {
		return nil
	}
	if l.pending >= l.s.maxPending {
		l.counters.pendingLimited.Add(1)
		return nil
	}
	if !l.sources.allow(from.Addr().Unmap(), time.Now()) {
		l.counters.rateLimited.Add(1)
		return nil
	}
	a := &association{
		l:         l,
		addr:      from,
		udpAddr:   net.UDPAddrFromAddrPort(from),
		inbox:     make(chan *datagram, inboxLen),
		grant:     make(chan struct{}, 1),
		closed:    make(chan struct{}),
		offered:   clone(offered),
		replaces:  replaces,
		reconnect: replaces != nil,
	}
	a.deadline.init()
	l.pending++
	if replaces == nil {
		l.byAddr[from] = a
	} else {
		replaces.candidate = a
	}
	a.onWorkers.Store(true)
	return a
}

// lookupWorkers is how many handshake workers there are beyond
// WithHandshakeWorkers: the workers also look sessions up in the
// persistent store, which waits more than it computes, while CPU-bound
// steps still take one of the handshake CPU tokens.
const lookupWorkers = 3

// runWorker runs associations' handshake steps: first steps (session
// lookup, then the listener's abbreviated handshake or a goroutine for
// pion's) and the abbreviated handshakes' later steps. Handshakes thus
// wait in l.work instead of as runnable goroutines, so during a reconnect
// storm the Go scheduler's run queue holds established traffic and at
// most this many handshake goroutines.
func (l *Listener) runWorker() {
	defer l.wg.Done()
	for {
		select {
		case a := <-l.work:
			for {
				a.sched.Store(running)
				a.step()
				if a.sched.CompareAndSwap(running, idle) {
					break
				}
				// runningAgain: something arrived during the step.
			}
		case <-l.ctx.Done():
			return
		}
	}
}

// schedule queues a's next step on the handshake workers, unless it is
// queued already or a worker is running it (which then runs it again).
func (l *Listener) schedule(a *association) {
	for {
		switch st := a.sched.Load(); st {
		case idle:
			if !a.sched.CompareAndSwap(idle, queued) {
				continue
			}
			select {
			case l.work <- a:
			default:
				// More than maxPending queued: only associations that
				// outlived their handshake's admission can get here.
				l.mu.Lock()
				if l.closed {
					l.mu.Unlock()
					return
				}
				l.wg.Add(1)
				l.mu.Unlock()
				go func() {
					defer l.wg.Done()
					select {
					case l.work <- a:
					case <-l.ctx.Done():
					}
				}()
			}
			return
		case running:
			if a.sched.CompareAndSwap(running, runningAgain) {
				return
			}
		default: // queued or runningAgain
			return
		}
	}
}

// forget removes a closed association from the routing tables.
func (l *Listener) forget(a *association) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byAddr[a.addr] == a {
		if c := a.candidate; c != nil {
			// The device (or a new one on the same port) is handshaking
			// again: its records must keep reaching the new association.
			l.byAddr[a.addr] = c
			a.candidate = nil
		} else {
			delete(l.byAddr, a.addr)
		}
	}
	if r := a.replaces; r != nil && r.candidate == a {
		r.candidate = nil
	}
	for _, id := range a.cids {
		if l.byCID[id] == a {
			delete(l.byCID, id)
		}
	}
	a.cids = nil
}

// newCPUTokens builds the handshake scheduler with s's bounds: fixed ones
// (WithHandshakeWorkers, WithMaxFullHandshakes) or the defaults, which
// tighten while live reports established traffic.
func newCPUTokens(s *settings, live *liveTraffic) *cpuTokens {
	procs := runtime.GOMAXPROCS(0)
	tokens := func() int {
		switch {
		case s.workers > 0:
			return s.workers
		case live.active():
			return max(1, procs-1)
		default:
			return procs
		}
	}
	slots := func() int {
		switch {
		case s.maxFull > 0:
			return s.maxFull
		case live.active():
			return 4 * tokens()
		default:
			return defaultMaxFull
		}
	}
	// Tokens wait for the network poller between steps (see netPass)
	// while established traffic needs it and handshake steps could hold
	// every processor.
	needPass := func() bool { return live.active() && tokens() >= procs }
	return &cpuTokens{tokens: tokens, slots: slots, needPass: needPass}
}

// defaultMaxFull is the full-handshake bound with no established traffic
// to protect (see WithMaxFullHandshakes).
const defaultMaxFull = 64

// maxHandshakeWorkers is the most handshake tokens there can be.
func (s *settings) maxHandshakeWorkers() int {
	if s.workers > 0 {
		return s.workers
	}
	return runtime.GOMAXPROCS(0)
}

// checkServerOptions lets pion validate the configuration once, so a bad
// one fails NewListener instead of every handshake.
func checkServerOptions(base []dtls.ServerOption) error {
	c, err := dtls.ServerWithOptions(idlePacketConn{}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, base...)
	if err != nil {
		return fmt.Errorf("dtlsx: server configuration: %w", err)
	}
	return c.Close()
}

// idlePacketConn is a PacketConn that never carries anything.
type idlePacketConn struct{}

func (idlePacketConn) ReadFrom([]byte) (int, net.Addr, error)    { return 0, nil, net.ErrClosed }
func (idlePacketConn) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }
func (idlePacketConn) Close() error                              { return nil }
func (idlePacketConn) LocalAddr() net.Addr                       { return &net.UDPAddr{} }
func (idlePacketConn) SetDeadline(time.Time) error               { return nil }
func (idlePacketConn) SetReadDeadline(time.Time) error           { return nil }
func (idlePacketConn) SetWriteDeadline(time.Time) error          { return nil }
