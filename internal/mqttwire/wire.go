// Package mqttwire reads MQTT control packets off a connection and decodes
// them with the embedded broker's (mochi-mqtt's) packet types, safely: a
// fault inside the broker's decoders becomes a malformed-packet error.
//
//	rd := mqttwire.NewReader(conn, 256, 256<<10)
//	first, body, err := rd.Next()
//	err = mqttwire.Decode(&pk, first, body)
//
// Next reads as needed. To read on one goroutine and process on another,
// Wait blocks until a whole packet is buffered, and Next then takes
// packets for as long as Ready reports one without reading again.
//
// Guard wraps a net.Listener so that a broker reading its own connections
// only ever sees packets that decode.
package mqttwire

import (
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Reader reads MQTT control packets from a connection through a small
// buffer. Each packet's body is a new slice: the broker keeps strings and
// slices that point into it (topics, filters, client ids, payloads queued
// for subscribers), so bodies are never reused.
//
// The buffer is held only while bytes of a packet are buffered: when the
// last buffered packet has been taken, it goes back to a pool shared by
// all Readers of that size, and the next blocking read waits with a
// 16-byte array of the Reader's own. An idle connection thus holds no
// buffer; the first bytes of a packet cost one more read call.
type Reader struct {
	conn net.Conn
	buf  []byte // nil while nothing is buffered
	r, w int
	size int
	pool *sync.Pool
	// a packet longer than the buffer, read straight into its body
	large      []byte
	largeFirst byte
	hasLarge   bool
	small      [16]byte
	fresh      bool // the deadline was set for this Wait's first read
	// Max is the largest packet accepted, fixed header included; 0 means
	// the protocol's limit (256 MiB).
	Max uint32
	// Idle is how long a read may wait for the peer. When set, the
	// Reader sets the connection's read and write deadline before every
	// blocking read; when 0, it leaves deadlines alone.
	Idle time.Duration
}

// NewReader returns a Reader with a buffer of size bytes (at least 16).
func NewReader(conn net.Conn, size int, max uint32) *Reader {
	size = max16(size)
	return &Reader{conn: conn, size: size, pool: bufferPool(size), Max: max}
}

func max16(n int) int { return max(n, 16) }

// pools holds one *sync.Pool of *[]byte per buffer size.
var pools sync.Map

func bufferPool(size int) *sync.Pool {
	if p, ok := pools.Load(size); ok {
		return p.(*sync.Pool)
	}
	p, _ := pools.LoadOrStore(size, &sync.Pool{New: func() any { b := make([]byte, size); return &b }})
	return p.(*sync.Pool)
}

// release returns the buffer to the pool once nothing is buffered.
func (p *Reader) release() {
	if p.r != p.w || p.buf == nil {
		return
	}
	b := p.buf
	p.buf, p.r, p.w = nil, 0, 0
	p.pool.Put(&b)
}

// bodyStep is the first allocation for a packet body that is still
// arriving.
const bodyStep = 4 << 10

// fill reads more bytes into the buffer.
func (p *Reader) fill() error {
	if p.buf == nil {
		return p.fillEmpty()
	}
	if p.r == p.w {
		p.r, p.w = 0, 0
	} else if p.w == len(p.buf) {
		p.w = copy(p.buf, p.buf[p.r:p.w])
		p.r = 0
	}
	if p.fresh {
		p.fresh = false // set a moment ago by fillEmpty
	} else if err := p.refresh(); err != nil {
		return err
	}
	n, err := p.conn.Read(p.buf[p.w:])
	p.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// fillEmpty waits for bytes with no buffer held, then takes one from the
// pool.
func (p *Reader) fillEmpty() error {
	if err := p.refresh(); err != nil {
		return err
	}
	n, err := p.conn.Read(p.small[:])
	p.fresh = true
	if n == 0 {
		if err == nil {
			err = io.ErrNoProgress
		}
		return err
	}
	p.buf = *p.pool.Get().(*[]byte)
	p.r, p.w = 0, copy(p.buf, p.small[:n])
	return nil
}

// refresh sets the deadline for the next blocking read: read and write
// alike, as the broker does, so a peer that stops reading is cut off as
// surely as one that stops sending.
func (p *Reader) refresh() error {
	if p.Idle == 0 {
		return nil
	}
	return p.conn.SetDeadline(time.Now().Add(p.Idle))
}

// Buffered reports whether bytes of a next packet are already buffered.
func (p *Reader) Buffered() bool { return p.r < p.w || p.hasLarge }

// Ready reports whether Next returns without reading from the
// connection: a whole packet is buffered, or the buffered header is
// malformed or announces a packet over Max.
func (p *Reader) Ready() bool {
	if p.hasLarge {
		return true
	}
	n, used, done, err := ParseRemainingLength(p.buf[p.r:p.w])
	return err != nil || done && (p.w-p.r-used >= n || p.tooLarge(n, used) != nil)
}

func (p *Reader) tooLarge(n, used int) error {
	if p.Max > 0 && uint64(1+used+n) > uint64(p.Max) {
		return fmt.Errorf("%d byte packet: %w", 1+used+n, packets.ErrPacketTooLarge)
	}
	return nil
}

// Wait reads until Next can return a whole packet without reading: it
// blocks for the packet's bytes, in a few small stack frames, and
// returns a read error or a malformed or oversized header.
func (p *Reader) Wait() error {
	p.fresh = false
	for !p.hasLarge {
		n, used, done, err := ParseRemainingLength(p.buf[p.r:p.w])
		if err != nil {
			return err
		}
		if done {
			if err := p.tooLarge(n, used); err != nil {
				return err
			}
			if p.w-p.r-used >= n {
				return nil
			}
			if used+n > len(p.buf) {
				return p.readLarge(n, used)
			}
		}
		if err := p.fill(); err != nil {
			return err
		}
	}
	return nil
}

// readLarge reads a packet longer than the buffer: the buffered part is
// copied and the rest goes straight into the body, not through the
// buffer. The body grows as bytes arrive, so a header announcing a large
// packet commits no more memory than the peer actually sends.
func (p *Reader) readLarge(n, used int) error {
	first := p.buf[p.r]
	p.r += used
	k := p.w - p.r
	body := make([]byte, k, min(n, max(2*k, bodyStep)))
	copy(body, p.buf[p.r:p.w])
	p.r = p.w
	p.release()
	for len(body) < n {
		if len(body) == cap(body) {
			body = slices.Grow(body, min(n-len(body), len(body)))
		}
		if err := p.refresh(); err != nil {
			return err
		}
		m, err := p.conn.Read(body[len(body):min(n, cap(body))])
		body = body[:len(body)+m]
		if err != nil && len(body) < n {
			return fmt.Errorf("packet body (%d of %d bytes): %w", len(body), n, err)
		}
	}
	p.large, p.largeFirst, p.hasLarge = body, first, true
	return nil
}

// Next returns the first byte of the next packet's fixed header and the
// packet's body (everything after the remaining length), reading from
// the connection as needed.
func (p *Reader) Next() (first byte, body []byte, err error) {
	if err := p.Wait(); err != nil {
		return 0, nil, err
	}
	if p.hasLarge {
		first, body = p.largeFirst, p.large
		p.large, p.hasLarge = nil, false
		return first, body, nil
	}
	n, used, _, _ := ParseRemainingLength(p.buf[p.r:p.w])
	first = p.buf[p.r]
	p.r += used
	body = make([]byte, n)
	copy(body, p.buf[p.r:p.r+n])
	p.r += n
	p.release()
	return first, body, nil
}

// ParseRemainingLength reads a fixed header from b: the first byte and the
// remaining length (MQTT's variable byte integer, at most 4 bytes). It
// returns the length, the header's size and done=false if b ends inside
// the header.
func ParseRemainingLength(b []byte) (n, used int, done bool, err error) {
	mult := 1
	for i := 1; i < len(b); i++ {
		if i > 4 {
			return 0, 0, false, packets.ErrMalformedVariableByteInteger
		}
		n += int(b[i]&0x7f) * mult
		if b[i]&0x80 == 0 {
			return n, i + 1, true, nil
		}
		mult *= 128
	}
	if len(b) > 5 {
		return 0, 0, false, packets.ErrMalformedVariableByteInteger
	}
	return 0, 0, false, nil
}

// Decode decodes a packet a client sent, for pk.ProtocolVersion (a
// CONNECT sets it). Types only a server sends are protocol violations.
// The broker's decoders index past the end of some malformed packets (an
// MQTT 5 SUBSCRIBE whose last filter lacks its options byte, in v2.7.9);
// such a fault is returned as a malformed packet.
func Decode(pk *packets.Packet, first byte, body []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("packet type %d: decoder fault (%v): %w", pk.FixedHeader.Type, r, packets.ErrMalformedPacket)
		}
	}()
	if err := pk.FixedHeader.Decode(first); err != nil {
		return err
	}
	pk.FixedHeader.Remaining = len(body)
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Pubrec:
		err = pk.PubrecDecode(body)
	case packets.Pubrel:
		err = pk.PubrelDecode(body)
	case packets.Pubcomp:
		err = pk.PubcompDecode(body)
	case packets.Subscribe:
		err = pk.SubscribeDecode(body)
	case packets.Unsubscribe:
		err = pk.UnsubscribeDecode(body)
	case packets.Pingreq:
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	case packets.Auth:
		err = pk.AuthDecode(body)
	default:
		return fmt.Errorf("packet type %d from a client: %w", pk.FixedHeader.Type, packets.ErrProtocolViolation)
	}
	if err != nil {
		return fmt.Errorf("packet type %d: %w", pk.FixedHeader.Type, err)
	}
	return nil
}
