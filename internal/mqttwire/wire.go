// Package mqttwire reads MQTT control packets off a connection and decodes
// them with the embedded broker's (mochi-mqtt's) packet types, safely: a
// fault inside the broker's decoders becomes a malformed-packet error.
//
//	rd := mqttwire.NewReader(conn, 256, 256<<10)
//	first, body, err := rd.Next()
//	err = mqttwire.Decode(&pk, first, body)
//
// Guard wraps a net.Listener so that a broker reading its own connections
// only ever sees packets that decode.
package mqttwire

import (
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Reader reads MQTT control packets from a connection through a small
// buffer. Each packet's body is a new slice: the broker keeps strings and
// slices that point into it (topics, filters, client ids, payloads queued
// for subscribers), so bodies are never reused.
type Reader struct {
	conn net.Conn
	buf  []byte
	r, w int
	// Max is the largest packet accepted, fixed header included; 0 means
	// the protocol's limit (256 MiB).
	Max uint32
	// Idle is how long a read may wait for the peer. When set, the
	// Reader sets the connection's read and write deadline before every
	// blocking read; when 0, it leaves deadlines alone.
	Idle time.Duration
}

// NewReader returns a Reader with a buffer of size bytes.
func NewReader(conn net.Conn, size int, max uint32) *Reader {
	return &Reader{conn: conn, buf: make([]byte, max16(size)), Max: max}
}

func max16(n int) int { return max(n, 16) }

// bodyStep is the first allocation for a packet body that is still
// arriving.
const bodyStep = 4 << 10

// fill reads more bytes into the buffer.
func (p *Reader) fill() error {
	if p.r == p.w {
		p.r, p.w = 0, 0
	} else if p.w == len(p.buf) {
		p.w = copy(p.buf, p.buf[p.r:p.w])
		p.r = 0
	}
	if err := p.refresh(); err != nil {
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
func (p *Reader) Buffered() bool { return p.r < p.w }

// Next returns the first byte of the next packet's fixed header and the
// packet's body (everything after the remaining length).
func (p *Reader) Next() (first byte, body []byte, err error) {
	var n, used int
	for {
		var done bool
		n, used, done, err = ParseRemainingLength(p.buf[p.r:p.w])
		if err != nil {
			return 0, nil, err
		}
		if done {
			break
		}
		if err := p.fill(); err != nil {
			return 0, nil, err
		}
	}
	if p.Max > 0 && uint64(1+used+n) > uint64(p.Max) {
		return 0, nil, fmt.Errorf("%d byte packet: %w", 1+used+n, packets.ErrPacketTooLarge)
	}
	first = p.buf[p.r]
	p.r += used
	k := min(n, p.w-p.r)
	if k == n {
		body = make([]byte, n)
		copy(body, p.buf[p.r:p.w])
		p.r += n
		return first, body, nil
	}
	// The rest goes straight into the body, not through the buffer. The
	// body grows as bytes arrive, so a header announcing a large packet
	// commits no more memory than the peer actually sends.
	body = make([]byte, k, min(n, max(2*k, bodyStep)))
	copy(body, p.buf[p.r:p.w])
	p.r = p.w
	for len(body) < n {
		if len(body) == cap(body) {
			body = slices.Grow(body, min(n-len(body), len(body)))
		}
		if err := p.refresh(); err != nil {
			return 0, nil, err
		}
		m, err := p.conn.Read(body[len(body):min(n, cap(body))])
		body = body[:len(body)+m]
		if err != nil && len(body) < n {
			return 0, nil, fmt.Errorf("packet body (%d of %d bytes): %w", len(body), n, err)
		}
	}
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
