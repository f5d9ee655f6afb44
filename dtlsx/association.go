package dtlsx

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/logging"
)

// association is one peer of the listener. It is the net.PacketConn pion's
// server Conn reads and writes: reads come from the inbox the listener
// fills, writes go straight to the shared socket.
type association struct {
	l        *Listener
	addr     netip.AddrPort
	udpAddr  *net.UDPAddr // returned by ReadFrom so pion sees a stable address
	inbox    chan *datagram
	closed   chan struct{}
	once     sync.Once
	deadline readDeadline

	offered []byte // session id of the first ClientHello
	// pushback holds datagrams read before pion's Conn existed that are
	// pion's to read first (the ClientHello the fast path declined, or
	// records behind the client's Finished). Written by the handshake
	// goroutine before it starts pion, then read only by pion's reader.
	pushback  []*datagram
	replaces  *association // established association at the same address
	reconnect bool         // replaces was set at creation (immutable)

	// Guarded by l.mu.
	candidate *association
	cids      []string

	established   atomic.Bool
	establishedAt atomic.Int64 // UnixNano, set with established
	detached      atomic.Bool  // replaced: writes are dropped

	// handshaking is set while pion's handshake runs; undecryptable
	// records then end it (see onDecryptFailure).
	handshaking atomic.Bool
	badRecord   atomic.Bool   // ended by an undecryptable record
	plainSeq    atomic.Uint64 // highest epoch-0 record sequence number written

	// onWorkers is set while the association's handshake advances on the
	// listener's workers (its first step, and the listener's abbreviated
	// handshake): deliver then schedules it. sched is its state there.
	onWorkers atomic.Bool
	sched     atomic.Int32
	begun     bool                       // owned by the worker running the step
	fast      *fastResume                // likewise; set by startFast
	fastTimer atomic.Pointer[time.Timer] // fast's timer, stopped by Close

	// Owned by pion's reading goroutine.
	needsSlot bool
	admitted  bool
	holdsSlot atomic.Bool
	holdsCPU  atomic.Bool   // a Listener.cpu token (see acquireCPU)
	grant     chan struct{} // a token granted to this waiting association
	// Guarded by l.cpu.mu.
	waiting      bool // queued for a token
	admitWaiting bool // queued for admission
}

var _ net.PacketConn = (*association)(nil)

// begin runs on a handshake worker (see Listener.runWorker) when the
// association's first datagram has arrived. It looks the offered session
// up and either starts the listener's own abbreviated handshake, which
// then advances on the workers as datagrams and timers arrive (see
// startFast), or hands the association to pion's handshake on a goroutine
// of its own.
func (a *association) begin() {
	l := a.l
	a.handshaking.Store(true)
	store := dtls.SessionStore(l.cache)
	skipCookie := false
	var session dtls.Session
	if len(a.offered) > 0 {
		// A session we can resume: answer without the cookie round trip
		// (RFC 6347 4.2.1 allows it for resumption), and pin the session
		// so a concurrent eviction cannot turn this into a cookie-less
		// full handshake.
		if s, src := l.cache.lookup(a.offered); src != 0 && bytes.Equal(s.ID, a.offered) {
			store = &pinnedStore{SessionCache: l.cache, session: s}
			skipCookie = true
			session = s
		}
	}
	if skipCookie && l.s.fastResume && a.startFast(session) {
		return
	}
	l.wg.Add(1)
	go a.pionHandshake(store, skipCookie)
}

// pionHandshake runs pion's server handshake and publishes the result.
func (a *association) pionHandshake(store dtls.SessionStore, skipCookie bool) {
	l := a.l
	defer l.wg.Done()
	a.needsSlot = l.needsSlots && !skipCookie
	// Setting up a pion Conn is not free: it is a handshake step like the
	// others, and the token carries over to pion's first read and returns
	// with its answer. The session lookup above runs outside it: a load
	// from the persistent store waits on the store more than it computes,
	// and the store's connection pool bounds how many run at once.
	if err := a.acquireCPU(true); err != nil {
		a.handshaking.Store(false)
		a.endHandshake()
		_ = a.Close()
		return
	}
	opts := make([]dtls.ServerOption, 0, len(l.base)+3)
	opts = append(opts, l.base...)
	opts = append(opts, dtls.WithSessionStore(store), dtls.WithInsecureSkipVerifyHello(skipCookie),
		dtls.WithLoggerFactory(a))
	if l.s.cidLen > 0 {
		opts = append(opts, dtls.WithConnectionIDGenerator(a.newCID))
	}
	conn, err := dtls.ServerWithOptions(a, a.udpAddr, opts...)
	if err != nil {
		l.s.log.Error("dtlsx: server config", "err", err)
		a.handshaking.Store(false)
		a.releaseCPU()
		a.endHandshake()
		_ = a.Close()
		return
	}
	ctx, cancel := context.WithTimeout(l.ctx, l.s.timeout)
	err = conn.HandshakeContext(ctx)
	a.handshaking.Store(false)
	cancel()
	a.releaseSlot()
	a.releaseCPU()
	if err == nil && a.badRecord.Load() {
		err = errBadRecord // pion finished before the association closed
	}
	if err != nil {
		switch {
		case a.badRecord.Load():
			l.counters.decryptFailures.Add(1)
		case errors.Is(err, context.DeadlineExceeded):
			l.counters.timeouts.Add(1)
		default:
			l.counters.failures.Add(1)
		}
		l.s.log.Debug("dtlsx: handshake failed", "peer", a.addr, "err", err)
		a.endHandshake()
		_ = conn.Close()
		return
	}
	state, _ := conn.ConnectionState()
	switch {
	case skipCookie && bytes.Equal(state.SessionID, a.offered):
		l.counters.resumed.Add(1)
		l.counters.cookieSkipped.Add(1)
	case len(a.offered) > 0 && bytes.Equal(state.SessionID, a.offered):
		l.counters.resumed.Add(1)
	case len(state.IdentityHint) > 0:
		l.counters.psk.Add(1)
	default:
		l.counters.full.Add(1)
	}
	a.publish(conn)
}

// publish makes an established association the address's one and hands
// its connection to Accept.
func (a *association) publish(conn net.Conn) {
	a.promoteAndReplace()
	a.offer(conn)
}

// promoteAndReplace promotes a and closes the association it replaces.
func (a *association) promoteAndReplace() {
	if old := a.promote(); old != nil {
		a.l.counters.reconnects.Add(1)
		old.detached.Store(true)
		_ = old.Close()
	}
}

// offer waits until Accept takes conn, or closes it with the listener.
func (a *association) offer(conn net.Conn) {
	select {
	case a.l.accepted <- conn:
	case <-a.l.ctx.Done():
		_ = conn.Close()
	}
}

func (a *association) isClosed() bool {
	select {
	case <-a.closed:
		return true
	default:
		return false
	}
}

// publishAsync is publish for a handshake worker: when the accept
// backlog is full it waits on a goroutine of its own, not on the worker.
func (a *association) publishAsync(conn net.Conn) {
	a.promoteAndReplace()
	select {
	case a.l.accepted <- conn:
		return
	default:
	}
	a.l.wg.Add(1)
	go func() {
		defer a.l.wg.Done()
		a.offer(conn)
	}()
}

// endHandshake releases the pending slot of a failed handshake.
func (a *association) endHandshake() {
	a.l.mu.Lock()
	a.l.pending--
	a.l.mu.Unlock()
}

// promote marks a established and, for a reconnect, makes it the address's
// association; it returns the association it replaced.
func (a *association) promote() *association {
	l := a.l
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending--
	a.establishedAt.Store(time.Now().UnixNano())
	a.established.Store(true)
	old := a.replaces
	if old == nil {
		return nil
	}
	a.replaces = nil
	if old.candidate == a {
		old.candidate = nil
	}
	select {
	case <-a.closed:
		return nil
	default:
	}
	l.byAddr[a.addr] = a
	return old
}

func (a *association) newCID() []byte {
	id := make([]byte, a.l.s.cidLen)
	_, _ = rand.Read(id)
	a.l.mu.Lock()
	a.l.byCID[string(id)] = a
	a.cids = append(a.cids, string(id))
	a.l.mu.Unlock()
	return id
}

func (a *association) deliver(d *datagram) {
	select {
	case a.inbox <- d:
		if a.onWorkers.Load() {
			a.l.schedule(a)
		}
	default:
		a.l.counters.inboxDrops.Add(1)
		a.l.putDatagram(d)
	}
}

// Scheduling states of an association on the handshake workers.
const (
	idle         = iota
	queued       // in Listener.work
	running      // a worker is running its step
	runningAgain // and more arrived meanwhile: run the step once more
)

// step runs on a handshake worker: the association's first step, or the
// next step of its abbreviated handshake.
func (a *association) step() {
	if f := a.fast; f != nil {
		f.poll()
		return
	}
	if a.begun {
		return
	}
	a.begun = true
	a.onWorkers.Store(false)
	a.begin()
}

// helloOf reports whether d starts with a ClientHello, and whether that
// hello returns a cookie (see admit and acquireCPU).
func helloOf(d *datagram) (hello, cookie bool) {
	ri, err := parseRecord(d.buf[:d.n], 0)
	if err != nil {
		return false, false
	}
	return ri.hello, ri.hello && ri.hasCookie
}

// cpuGrace is how long an association keeps its CPU token while pion waits
// for the next datagram without having answered the last one: the rest of
// a fragmented flight normally follows at once, and pion may still be
// preparing its answer on another goroutine.
const cpuGrace = 20 * time.Millisecond

// nextDatagram waits for the association's next datagram. While it holds
// a CPU token it waits at most cpuGrace with it, then gives it back.
func (a *association) nextDatagram() (*datagram, error) {
	if len(a.pushback) > 0 {
		d := a.pushback[0]
		a.pushback = a.pushback[1:]
		return d, nil
	}
	if a.holdsCPU.Load() {
		grace := time.NewTimer(cpuGrace)
		select {
		case d := <-a.inbox:
			grace.Stop()
			return d, nil
		case <-grace.C:
			a.releaseCPU()
		case <-a.closed:
			grace.Stop()
			return nil, net.ErrClosed
		case <-a.deadline.done():
			grace.Stop()
			return nil, os.ErrDeadlineExceeded
		}
	}
	select {
	case d := <-a.inbox:
		return d, nil
	case <-a.closed:
		return nil, net.ErrClosed
	case <-a.deadline.done():
		return nil, os.ErrDeadlineExceeded
	}
}

// ReadFrom implements net.PacketConn for pion.
func (a *association) ReadFrom(b []byte) (int, net.Addr, error) {
	d, err := a.nextDatagram()
	if err != nil {
		return 0, nil, err
	}
	var hello, cookie bool
	if a.handshaking.Load() {
		hello, cookie = helloOf(d)
	}
	if err := a.admit(cookie); err != nil {
		a.l.putDatagram(d)
		return 0, nil, err
	}
	if err := a.acquireCPU(hello); err != nil {
		a.l.putDatagram(d)
		return 0, nil, err
	}
	n := copy(b, d.buf[:d.n])
	var from net.Addr = a.udpAddr
	if d.from != a.addr {
		from = net.UDPAddrFromAddrPort(d.from) // connection-id migration
	}
	a.l.putDatagram(d)
	return n, from, nil
}

// WriteTo implements net.PacketConn for pion.
func (a *association) WriteTo(b []byte, addr net.Addr) (int, error) {
	select {
	case <-a.closed:
		return 0, net.ErrClosed
	default:
	}
	if a.detached.Load() {
		return len(b), nil
	}
	if !a.established.Load() {
		a.notePlaintextSeq(b)
		defer a.releaseCPU() // pion answered: its step is done
	}
	return a.l.writeTo(b, addr)
}

// Close implements net.PacketConn; pion calls it when its Conn closes.
func (a *association) Close() error {
	a.once.Do(func() {
		close(a.closed)
		if t := a.fastTimer.Load(); t != nil {
			t.Stop()
		}
		if a.onWorkers.Load() {
			a.l.schedule(a) // a worker ends the handshake
		}
		a.releaseCPU()
		a.releaseSlot()
		a.l.forget(a)
		for {
			select {
			case d := <-a.inbox:
				a.l.putDatagram(d)
			default:
				return
			}
		}
	})
	return nil
}

// shutdown is Close from the listener side.
func (a *association) shutdown() { _ = a.Close() }

// LocalAddr implements net.PacketConn.
func (a *association) LocalAddr() net.Addr { return a.l.pc.LocalAddr() }

// SetDeadline implements net.PacketConn (reads only; writes never block).
func (a *association) SetDeadline(t time.Time) error { return a.SetReadDeadline(t) }

// SetReadDeadline implements net.PacketConn.
func (a *association) SetReadDeadline(t time.Time) error { a.deadline.set(t); return nil }

// SetWriteDeadline implements net.PacketConn; UDP writes do not block.
func (a *association) SetWriteDeadline(time.Time) error { return nil }

// errBadRecord ends a handshake whose peer sent a record the server could
// not decrypt (see onDecryptFailure).
var errBadRecord = errors.New("dtlsx: peer's record failed to decrypt (wrong PSK?)")

// alertBadRecordMAC is the alert body sent by onDecryptFailure: fatal(2),
// bad_record_mac(20) (RFC 5246 7.2.2, RFC 6347 4.1.2.7).
var alertBadRecordMAC = [2]byte{2, 20}

// notePlaintextSeq records the highest epoch-0 record sequence number in
// a datagram pion writes, so an alert sent beside pion uses a fresh one.
func (a *association) notePlaintextSeq(b []byte) {
	for len(b) >= recordHeaderLen {
		if b[3] == 0 && b[4] == 0 {
			seq := uint64(b[5])<<40 | uint64(b[6])<<32 | uint64(binary.BigEndian.Uint32(b[7:11]))
			for {
				cur := a.plainSeq.Load()
				if seq <= cur || a.plainSeq.CompareAndSwap(cur, seq) {
					break
				}
			}
		}
		n := recordHeaderLen + int(binary.BigEndian.Uint16(b[11:13]))
		if n > len(b) {
			return
		}
		b = b[n:]
	}
}

// onDecryptFailure is called (through pion's logger) when pion discards a
// record it cannot decrypt. During a handshake, the only record a peer
// encrypts is its Finished, so this is a peer whose keys differ from ours:
// almost always a wrong PSK. pion would drop it silently and leave the
// device retransmitting until its timeout; instead the association answers
// with a fatal bad_record_mac alert in the clear (the peer cannot decrypt
// ours either), counts it in Stats.DecryptFailures and closes, so the
// device learns at once. The trade-off: an off-path attacker who spoofs
// the device's address and injects a record in that one round trip can
// abort its handshake, which the device then retries. A reconnect
// candidate is left alone: records of the established association at the
// same address reach it too, and it cannot read those.
func (a *association) onDecryptFailure() {
	if !a.handshaking.Load() || a.established.Load() || a.reconnect {
		return
	}
	if !a.badRecord.CompareAndSwap(false, true) {
		return
	}
	seq := a.plainSeq.Load() + 1
	rec := []byte{21, 0xfe, 0xfd, 0, 0, byte(seq >> 40), byte(seq >> 32), byte(seq >> 24), byte(seq >> 16), byte(seq >> 8), byte(seq), 0, 2,
		alertBadRecordMAC[0], alertBadRecordMAC[1]}
	if _, err := a.l.writeTo(rec, a.udpAddr); err != nil {
		a.l.s.log.Debug("dtlsx: alert not sent", "peer", a.addr, "err", err)
	}
	a.l.s.log.Debug("dtlsx: handshake record failed to decrypt", "peer", a.addr)
	_ = a.Close()
}

// pionDecryptFailed is the format pion/dtls v3 logs a discarded,
// undecryptable record with (Conn.handleIncomingPacket). It is the only
// signal pion gives; TestWrongPSKFailsFast notices if it changes.
const pionDecryptFailed = "%s: decrypt failed: %s"

// NewLogger implements pion's logging.LoggerFactory: each association
// gets pion's log lines for its own Conn.
func (a *association) NewLogger(string) logging.LeveledLogger { return pionLogger{a} }

// pionLogger passes pion's errors to the listener's logger at Warn and
// its debug lines at Debug, and watches for decrypt failures.
type pionLogger struct{ a *association }

func (p pionLogger) Debugf(format string, args ...any) {
	if format == pionDecryptFailed {
		p.a.onDecryptFailure()
	}
	p.debug(format, args...)
}

func (p pionLogger) debug(format string, args ...any) {
	if log := p.a.l.s.log; log.Enabled(context.Background(), slog.LevelDebug) {
		log.Debug("dtlsx: pion: "+fmt.Sprintf(format, args...), "peer", p.a.addr)
	}
}

func (p pionLogger) Trace(string)             {}
func (p pionLogger) Tracef(string, ...any)    {}
func (p pionLogger) Debug(msg string)         { p.debug("%s", msg) }
func (p pionLogger) Info(msg string)          { p.debug("%s", msg) }
func (p pionLogger) Infof(f string, a ...any) { p.debug(f, a...) }
func (p pionLogger) Warn(msg string)          { p.debug("%s", msg) }
func (p pionLogger) Warnf(f string, a ...any) { p.debug(f, a...) }
func (p pionLogger) Error(msg string)         { p.a.l.s.log.Warn("dtlsx: pion: "+msg, "peer", p.a.addr) }
func (p pionLogger) Errorf(f string, a ...any) {
	p.a.l.s.log.Warn("dtlsx: pion: "+fmt.Sprintf(f, a...), "peer", p.a.addr)
}

// pinnedStore serves one preloaded session to a resumption handshake.
type pinnedStore struct {
	*SessionCache
	session dtls.Session
}

func (p *pinnedStore) Get(key []byte) (dtls.Session, error) {
	if bytes.Equal(key, p.session.ID) {
		return p.session, nil
	}
	return p.SessionCache.Get(key)
}

// readDeadline is a resettable read deadline whose done channel closes when
// it passes.
type readDeadline struct {
	mu    sync.Mutex
	ch    chan struct{}
	timer *time.Timer
	gen   uint64
	fired bool
}

func (d *readDeadline) init() { d.ch = make(chan struct{}) }

func (d *readDeadline) done() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch
}

func (d *readDeadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if d.fired {
		d.ch = make(chan struct{})
		d.fired = false
	}
	if t.IsZero() {
		return
	}
	wait := time.Until(t)
	if wait <= 0 {
		close(d.ch)
		d.fired = true
		return
	}
	gen := d.gen
	d.timer = time.AfterFunc(wait, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.gen == gen && !d.fired {
			close(d.ch)
			d.fired = true
		}
	})
}

// sourceLimiter is a token bucket per source address for new associations.
// Guarded by Listener.mu.
type sourceLimiter struct {
	rate    float64
	burst   float64
	buckets map[netip.Addr]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

const maxTrackedSources = 65536

func newSourceLimiter(rate float64, burst int) sourceLimiter {
	return sourceLimiter{rate: rate, burst: float64(burst), buckets: make(map[netip.Addr]*bucket)}
}

func (s *sourceLimiter) allow(src netip.Addr, now time.Time) bool {
	if s.rate == 0 {
		return true
	}
	b := s.buckets[src]
	if b == nil {
		if len(s.buckets) >= maxTrackedSources {
			s.sweep(now)
		}
		b = &bucket{tokens: s.burst, last: now}
		s.buckets[src] = b
	}
	b.tokens += now.Sub(b.last).Seconds() * s.rate
	if b.tokens > s.burst {
		b.tokens = s.burst
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweep forgets sources whose buckets have refilled; if that frees too
// little (a spoofed-source flood), it forgets them all.
func (s *sourceLimiter) sweep(now time.Time) {
	for k, b := range s.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*s.rate >= s.burst {
			delete(s.buckets, k)
		}
	}
	if len(s.buckets) >= maxTrackedSources*3/4 {
		clear(s.buckets)
	}
}
