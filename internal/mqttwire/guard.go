package mqttwire

import (
	"fmt"
	"net"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Guard wraps ln so that every accepted connection passes on only
// packets that decode: each packet is read and decoded first (for the
// protocol version its CONNECT announced) and handed on unchanged; the
// first one that does not decode ends the connection with an error, which
// the broker reading it sees as a failed read. Use it in front of an
// embedded broker that reads its own connections; max bounds the packet
// size as in NewReader.
func Guard(ln net.Listener, max uint32) net.Listener { return &guarded{Listener: ln, max: max} }

type guarded struct {
	net.Listener
	max uint32
}

func (g *guarded) Accept() (net.Conn, error) {
	c, err := g.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &guardedConn{Conn: c, rd: NewReader(c, 512, g.max)}, nil
}

type guardedConn struct {
	net.Conn
	rd      *Reader
	version byte
	pending []byte // checked bytes not yet read
	off     int
	err     error
}

func (c *guardedConn) Read(p []byte) (int, error) {
	for c.off == len(c.pending) {
		if c.err != nil {
			return 0, c.err
		}
		if err := c.next(); err != nil {
			c.err = err
			_ = c.Conn.Close()
			return 0, err
		}
	}
	n := copy(p, c.pending[c.off:])
	c.off += n
	return n, nil
}

// next reads and checks one packet and queues its bytes.
func (c *guardedConn) next() error {
	first, body, err := c.rd.Next()
	if err != nil {
		return err
	}
	pk := packets.Packet{ProtocolVersion: c.version}
	if err := Decode(&pk, first, body); err != nil {
		return fmt.Errorf("mqtt packet from %s refused: %w", c.Conn.RemoteAddr(), err)
	}
	if pk.FixedHeader.Type == packets.Connect {
		c.version = pk.ProtocolVersion
	}
	c.pending = AppendPacket(c.pending[:0], first, body)
	c.off = 0
	return nil
}

// AppendPacket appends a packet: first byte, remaining length and body.
func AppendPacket(b []byte, first byte, body []byte) []byte {
	return append(AppendHeader(b, first, len(body)), body...)
}

// AppendHeader appends a fixed header: the first byte and the remaining
// length n, for a body the caller writes after it.
func AppendHeader(b []byte, first byte, n int) []byte {
	b = append(b, first)
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}
