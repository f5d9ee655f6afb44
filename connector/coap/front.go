package coap

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/udpbatch"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
)

// udpFront owns the plain-UDP socket. Its readers answer the common case
// themselves: a CON or NON POST/PUT with no Block1/Block2/Observe or
// other option they do not know (see wireMessage.Fast). They deliver the
// frame, answer once the pipeline accepted it, and detect retransmissions
// by peer and message id in an exchangeCache whose per-datagram cost is
// O(1). Every other datagram (GET, block-wise, Observe, pings, ACK/RST,
// requests with unknown options) goes unchanged to go-coap through
// passListener, whose per-peer conns write to the same socket, so those
// features keep working on the same port.
type udpFront struct {
	c      *Connector
	pc     *net.UDPConn
	up     gateway.Uplink
	ctx    context.Context
	cache  *exchangeCache
	pass   *passListener
	nonMID atomic.Uint32
	dups   atomic.Uint64 // retransmissions recognised
}

func newUDPFront(c *Connector, pc *net.UDPConn, up gateway.Uplink, ctx context.Context) *udpFront {
	f := &udpFront{c: c, pc: pc, up: up, ctx: ctx, cache: newExchangeCache(c.s.dedupEntries),
		pass: newPassListener(pc, c.s.passQueue, &c.stats.Total)}
	f.nonMID.Store(uint32(time.Now().UnixNano()))
	return f
}

// run runs n readers until the socket is closed and waits for them.
func (f *udpFront) run(n int) {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.read()
		}()
	}
	wg.Wait()
}

// reader is one reader goroutine's reusable state: nothing on its hot
// path allocates except the frame's path string.
type reader struct {
	buf  []byte
	path []byte
	out  []byte
	msg  wireMessage
	dctx deliverCtx
	w    *udpbatch.Writer // answers of the batch being handled; nil: write each at once
}

func (f *udpFront) read() {
	r := &reader{path: make([]byte, 0, 256), out: make([]byte, 0, 256)}
	if n := f.c.s.udpBatch; n > 1 {
		f.readBatches(r, n)
		return
	}
	r.buf = make([]byte, maxDatagramReadSize)
	for {
		n, from, err := f.pc.ReadFromUDPAddrPort(r.buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || f.ctx.Err() != nil {
				return
			}
			f.c.s.logger.Warn("coap: read", "err", err)
			continue
		}
		f.handle(r, r.buf[:n], from)
	}
}

// readBatches reads up to n datagrams per system call (recvmmsg), handles
// them in order and sends their answers together (sendmmsg). Slots hold
// the largest request the connector accepts (max body plus 1 KiB of
// header and options, at most 64 KiB); a longer datagram is cut by the
// kernel and answered 4.13 when it is confirmable.
func (f *udpFront) readBatches(r *reader, n int) {
	size := int(min(int64(maxDatagramReadSize), f.c.s.maxBody+1024))
	br, err := udpbatch.NewReader(f.pc, n, size)
	if err == nil {
		r.w, err = udpbatch.NewWriter(f.pc, n)
	}
	if err != nil { // n is checked by WithUDPBatch
		f.c.s.logger.Error("coap: batched reader", "err", err)
		return
	}
	for {
		ms, err := br.Read()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || f.ctx.Err() != nil {
				return
			}
			f.c.s.logger.Warn("coap: read", "err", err)
			continue
		}
		for i := range ms {
			if ms[i].Truncated {
				f.tooLarge(r, ms[i].Data(), ms[i].Addr)
				continue
			}
			f.handle(r, ms[i].Data(), ms[i].Addr)
		}
		if err := r.w.Flush(); err != nil && f.ctx.Err() == nil {
			f.c.s.logger.Warn("coap: answer", "err", err)
		}
	}
}

// tooLarge answers a confirmable request that did not fit its slot with
// 4.13 and counts it as malformed; anything else is dropped.
func (f *udpFront) tooLarge(r *reader, d []byte, from netip.AddrPort) {
	f.c.stats.Total.Malformed()
	if len(d) < 4 || d[0]>>6 != 1 || d[0]>>4&3 != typeCON || d[1]>>5 != 0 {
		return // not CoAP version 1, not confirmable, or not a request
	}
	tkl := int(d[0] & 0x0f)
	if tkl > 8 || len(d) < 4+tkl {
		return
	}
	r.out = appendResponse(r.out[:0], typeACK, codeEntityTooLarge, uint16(d[2])<<8|uint16(d[3]), d[4:4+tkl], false, "request too large")
	_ = f.send(r, from)
}

// send writes r.out to the peer: queued with the batch's other answers,
// or at once on the one-datagram path.
func (f *udpFront) send(r *reader, to netip.AddrPort) error {
	if r.w != nil {
		return r.w.Add(r.out, to)
	}
	_, err := f.pc.WriteToUDPAddrPort(r.out, to)
	return err
}

func (f *udpFront) handle(r *reader, d []byte, from netip.AddrPort) {
	c := f.c
	err := parseMessage(d, &r.msg, r.path)
	m := &r.msg
	r.path = m.Path[:0]
	if err != nil {
		c.stats.Total.Malformed()
		if errors.Is(err, errFormat) && m.Header && m.Type == typeCON {
			r.out = appendReset(r.out[:0], m.MID)
			_ = f.send(r, from)
		}
		return
	}
	if !m.isIngest() {
		f.pass.pass(d, from)
		return
	}
	key := exchangeKey{peer: from, mid: m.MID}
	lifetime := exchangeLifetime
	if m.Type == typeNON {
		lifetime = nonLifetime
	}
	now := time.Now()
	state, seq, prior := f.cache.claim(key, now, lifetime)
	switch state {
	case claimPending:
		f.dups.Add(1)
		return
	case claimAnswered:
		f.dups.Add(1)
		if m.Type == typeCON {
			r.out = appendResponse(r.out[:0], typeACK, prior.code, m.MID, m.Token, prior.maxAge1, prior.reason)
			_ = f.send(r, from)
		}
		return
	}
	r.dctx.reset(f.ctx, now.Add(c.s.deliverTimeout))
	o := c.ingestBytes(&r.dctx, f.up, m.Path, m.Payload, from)
	r.dctx.release()
	f.cache.answer(key, seq, o.code, o.maxAge1, o.reason)
	if m.Type == typeCON {
		r.out = appendResponse(r.out[:0], typeACK, o.code, m.MID, m.Token, o.maxAge1, o.reason)
	} else {
		r.out = appendResponse(r.out[:0], typeNON, o.code, uint16(f.nonMID.Add(1)), m.Token, o.maxAge1, o.reason)
	}
	if err := f.send(r, from); err != nil && f.ctx.Err() == nil {
		c.s.logger.Warn("coap: answer", "remote", from.String(), "err", err)
	}
}

// deliverCtx is a reusable context for one delivery with a deadline. The
// gateway looks at Done only when it has to wait, so the timer behind the
// deadline is made only then. Every field is behind mu, so a late caller
// (one that kept the context past Deliver) sees a consistent, bounded
// context, never a torn one.
type deliverCtx struct {
	mu       sync.Mutex
	parent   context.Context
	deadline time.Time
	ctx      context.Context
	cancel   context.CancelFunc
}

var _ context.Context = (*deliverCtx)(nil)

func (d *deliverCtx) reset(parent context.Context, deadline time.Time) {
	d.mu.Lock()
	d.parent, d.deadline = parent, deadline
	d.mu.Unlock()
}

func (d *deliverCtx) inner() context.Context {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ctx == nil {
		d.ctx, d.cancel = context.WithDeadline(d.parent, d.deadline)
	}
	return d.ctx
}

// release ends the timer, if one was made.
func (d *deliverCtx) release() {
	d.mu.Lock()
	if d.cancel != nil {
		d.cancel()
	}
	d.ctx, d.cancel = nil, nil
	d.mu.Unlock()
}

func (d *deliverCtx) Deadline() (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.deadline, true
}

func (d *deliverCtx) Done() <-chan struct{} { return d.inner().Done() }

func (d *deliverCtx) Err() error {
	d.mu.Lock()
	parent, deadline := d.parent, d.deadline
	d.mu.Unlock()
	if err := parent.Err(); err != nil {
		return err
	}
	if !time.Now().Before(deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

func (d *deliverCtx) Value(key any) any {
	d.mu.Lock()
	parent := d.parent
	d.mu.Unlock()
	return parent.Value(key)
}

// passListener hands the datagrams the fast path does not answer to
// go-coap's connection-oriented server, one net.Conn per peer. Reads come
// from a bounded queue per peer (full: the datagram is dropped and
// counted as an error, and the peer retransmits); writes go to the shared
// socket.
type passListener struct {
	pc      *net.UDPConn
	queue   int
	errs    errorCounter
	accept  chan *passConn
	closed  chan struct{}
	once    sync.Once
	mu      sync.Mutex
	peers   map[netip.AddrPort]*passConn
	buffers sync.Pool
}

type errorCounter interface{ Error() }

func newPassListener(pc *net.UDPConn, queue int, errs errorCounter) *passListener {
	return &passListener{pc: pc, queue: queue, errs: errs, accept: make(chan *passConn, 64),
		closed: make(chan struct{}), peers: map[netip.AddrPort]*passConn{},
		buffers: sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}}
}

// pass queues a copy of d for the go-coap session of peer from, creating
// the session when there is none.
func (l *passListener) pass(d []byte, from netip.AddrPort) {
	l.mu.Lock()
	p := l.peers[from]
	if p == nil {
		select {
		case <-l.closed:
			l.mu.Unlock()
			return
		default:
		}
		p = &passConn{l: l, peer: from, remote: net.UDPAddrFromAddrPort(from),
			in: make(chan *[]byte, l.queue), closed: make(chan struct{})}
		select {
		case l.accept <- p:
			l.peers[from] = p
		default:
			l.mu.Unlock()
			l.errs.Error()
			return
		}
	}
	l.mu.Unlock()
	b := l.buffers.Get().(*[]byte)
	*b = append((*b)[:0], d...)
	select {
	case p.in <- b:
	default:
		l.buffers.Put(b)
		l.errs.Error()
	}
}

// AcceptWithContext implements go-coap's dtls/server.Listener.
func (l *passListener) AcceptWithContext(ctx context.Context) (net.Conn, error) {
	select {
	case p := <-l.accept:
		return p, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.closed:
		return nil, coapnet.ErrListenerIsClosed
	}
}

// Close stops accepting; sessions end when go-coap closes their conns.
func (l *passListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

// passConn is one peer's datagrams as go-coap sees them.
type passConn struct {
	l      *passListener
	peer   netip.AddrPort
	remote *net.UDPAddr
	in     chan *[]byte
	closed chan struct{}
	once   sync.Once
}

var _ net.Conn = (*passConn)(nil)

// Read returns the next datagram; one that does not fit b is dropped
// (counted), never truncated.
func (p *passConn) Read(b []byte) (int, error) {
	for {
		select {
		case d := <-p.in:
			n := len(*d)
			fits := n <= len(b)
			if fits {
				copy(b, *d)
			}
			p.l.buffers.Put(d)
			if fits {
				return n, nil
			}
			p.l.errs.Error()
		case <-p.closed:
			return 0, net.ErrClosed
		}
	}
}

func (p *passConn) Write(b []byte) (int, error) {
	select {
	case <-p.closed:
		return 0, net.ErrClosed
	default:
	}
	return p.l.pc.WriteToUDPAddrPort(b, p.peer)
}

// Close ends the session; the peer's next datagram starts a new one.
func (p *passConn) Close() error {
	p.once.Do(func() {
		close(p.closed)
		p.l.mu.Lock()
		if p.l.peers[p.peer] == p {
			delete(p.l.peers, p.peer)
		}
		p.l.mu.Unlock()
	})
	return nil
}

func (p *passConn) LocalAddr() net.Addr              { return p.l.pc.LocalAddr() }
func (p *passConn) RemoteAddr() net.Addr             { return p.remote }
func (p *passConn) SetDeadline(time.Time) error      { return nil }
func (p *passConn) SetReadDeadline(time.Time) error  { return nil }
func (p *passConn) SetWriteDeadline(time.Time) error { return nil }
