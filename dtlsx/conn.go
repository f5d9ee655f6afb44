package dtlsx

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
)

// Conn is an association resumed by the listener's own abbreviated
// handshake whose records dtlsx protects itself (WithOwnRecords): no pion
// Conn is built for it, which is most of what a resumption costs the
// server. It reads and writes application data like a *dtls.Conn:
//
//   - records are authenticated and decrypted with the session's suite
//     (AEAD only) and checked against a 64-record replay window (RFC 6347
//     4.1.2.6); a record that fails either is dropped silently;
//   - with connection ids, an authenticated record that is the newest seen
//     moves the peer's address (RFC 9146 6);
//   - a close_notify from the peer ends reading with io.EOF, a fatal alert
//     with an error; Close sends close_notify;
//   - renegotiation is not supported: handshake records after the
//     handshake are dropped.
//
// ConnectionState builds pion's State for the session on demand.
type Conn struct {
	a         *association
	keys      *recordKeys
	localCID  []byte // ours: the peer's records carry it
	remoteCID []byte // the peer's: ours carry it
	peer      atomic.Pointer[net.UDPAddr]
	state     func() (*dtls.State, error)

	wmu    sync.Mutex
	wseq   uint64 // next epoch-1 sequence number
	wbuf   []byte
	closed bool

	rmu    sync.Mutex
	replay replayWindow
	cur    *datagram
	rest   []byte // records of cur not read yet
	rbuf   []byte // plaintext of the record being read, reused
	eof    error  // set once reading has ended
	once   sync.Once
}

var _ net.Conn = (*Conn)(nil)

// maxPlaintext is the largest record payload (RFC 5246 6.2.1).
const maxPlaintext = 1 << 14

// errShortReadBuffer is returned when a record does not fit the buffer
// given to Read; the record is lost, as a datagram is.
var errShortReadBuffer = errors.New("dtlsx: read buffer shorter than the record")

// newConn takes over an association after the listener's abbreviated
// handshake: finSeq is the sequence number of the client's Finished,
// nextSeq the next epoch-1 sequence number for the server's records.
func newConn(f *fastResume, finSeq uint64) *Conn {
	c := &Conn{a: f.a, keys: f.keys, localCID: f.localCID, remoteCID: f.remoteCID, wseq: f.seq1,
		state: func() (*dtls.State, error) { return f.state(finSeq) }}
	c.replay.accept(finSeq)
	c.peer.Store(f.a.udpAddr)
	return c
}

// Read reads the next application data record.
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if c.eof != nil {
			return 0, c.eof
		}
		if len(c.rest) == 0 {
			if c.cur != nil {
				c.a.l.putDatagram(c.cur)
				c.cur = nil
			}
			d, err := c.a.nextDatagram()
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					return 0, &timeoutError{}
				}
				return 0, fmt.Errorf("dtlsx: read: %w", net.ErrClosed)
			}
			c.cur, c.rest = d, d.buf[:d.n]
		}
		rec, rest, err := splitRecord(c.rest, len(c.localCID))
		if err != nil {
			c.rest = nil // the rest of the datagram is not DTLS we can read
			continue
		}
		c.rest = rest
		if binary.BigEndian.Uint16(rec[3:5]) != 1 {
			continue // epoch 0: a late copy of the handshake
		}
		typ, pt, seq, err := c.keys.openRecordTo(c.rbuf[:0], rec, len(c.localCID))
		if err != nil {
			continue // forged, damaged or not for these keys
		}
		c.rbuf = pt[:0]
		fresh, newest := c.replay.accept(seq)
		if !fresh {
			continue
		}
		if newest && rec[0] == contentCID && c.cur.from != c.peer.Load().AddrPort() {
			c.peer.Store(net.UDPAddrFromAddrPort(c.cur.from)) // RFC 9146 6
		}
		switch typ {
		case contentApplicationData:
			if len(pt) > len(p) {
				return 0, errShortReadBuffer
			}
			return copy(p, pt), nil
		case contentAlert:
			if len(pt) != 2 {
				continue
			}
			if pt[1] == 0 { // close_notify
				c.eof = io.EOF
				_ = c.Close() // answer it and let go of the association
				return 0, io.EOF
			}
			if pt[0] == alertLevelFatal {
				c.eof = fmt.Errorf("dtlsx: fatal alert %d from the peer: %w", pt[1], net.ErrClosed)
				_ = c.a.Close()
				return 0, c.eof
			}
		}
		// Handshake records (a repeated Finished, a renegotiation attempt)
		// and change_cipher_spec are dropped.
	}
}

// Write sends b as one application data record.
func (c *Conn) Write(b []byte) (int, error) {
	if len(b) > maxPlaintext {
		return 0, fmt.Errorf("dtlsx: write of %d bytes: more than one record (%d)", len(b), maxPlaintext)
	}
	if err := c.send(contentApplicationData, b); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (c *Conn) send(typ byte, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return fmt.Errorf("dtlsx: write: %w", net.ErrClosed)
	}
	if c.wseq > maxSequenceNumber {
		return errors.New("dtlsx: write: record sequence numbers exhausted")
	}
	c.wbuf = c.keys.appendSealed(c.wbuf[:0], typ, 1, c.wseq, c.remoteCID, b)
	c.wseq++
	_, err := c.a.WriteTo(c.wbuf, c.peer.Load())
	return err
}

// Close sends close_notify and releases the association.
func (c *Conn) Close() error {
	c.once.Do(func() {
		_ = c.send(contentAlert, []byte{1, 0}) // warning, close_notify
		c.wmu.Lock()
		c.closed = true
		c.wmu.Unlock()
		_ = c.a.Close()
	})
	return nil
}

// ConnectionState returns pion's State of the session (built on each
// call), as *dtls.Conn's does.
func (c *Conn) ConnectionState() (dtls.State, bool) {
	st, err := c.state()
	if err != nil {
		return dtls.State{}, false
	}
	return *st, true
}

// Handshake and HandshakeContext return nil: the handshake completed
// before the listener handed the Conn out (as for *dtls.Conn).
func (c *Conn) Handshake() error { return nil }

// HandshakeContext returns nil; see Handshake.
func (c *Conn) HandshakeContext(context.Context) error { return nil }

// LocalAddr returns the listener's address.
func (c *Conn) LocalAddr() net.Addr { return c.a.LocalAddr() }

// RemoteAddr returns the peer's current address.
func (c *Conn) RemoteAddr() net.Addr { return c.peer.Load() }

// SetDeadline sets the read deadline; writes do not block.
func (c *Conn) SetDeadline(t time.Time) error { return c.a.SetReadDeadline(t) }

// SetReadDeadline sets the read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.a.SetReadDeadline(t) }

// SetWriteDeadline does nothing: UDP writes do not block.
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }

type timeoutError struct{}

func (timeoutError) Error() string   { return "dtlsx: read deadline exceeded" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }
func (timeoutError) Unwrap() error   { return os.ErrDeadlineExceeded }

// replayWindow is the sliding window of RFC 6347 4.1.2.6 over the last 64
// sequence numbers.
type replayWindow struct {
	top  uint64 // highest sequence number accepted
	bits uint64 // bit i: top-i was accepted
	seen bool
}

// accept reports whether seq is new (and records it) and whether it is
// the highest so far.
func (w *replayWindow) accept(seq uint64) (fresh, newest bool) {
	switch {
	case !w.seen:
		w.seen, w.top, w.bits = true, seq, 1
		return true, true
	case seq > w.top:
		if d := seq - w.top; d >= 64 {
			w.bits = 1
		} else {
			w.bits = w.bits<<d | 1
		}
		w.top = seq
		return true, true
	}
	d := w.top - seq
	if d >= 64 || w.bits&(1<<d) != 0 {
		return false, false
	}
	w.bits |= 1 << d
	return true, false
}
