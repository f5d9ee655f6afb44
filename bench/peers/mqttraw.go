package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/iotgw/gateway/internal/mqttwire"
)

// A minimal MQTT 3.1.1 client for the load generator and the consumer:
// CONNECT, SUBSCRIBE, QoS 1 PUBLISH and PUBACK, nothing else. It reads
// through a large buffer and writes through a buffered writer that the
// caller flushes, so neither side of the harness costs a system call per
// message and neither is the bottleneck it measures.

const (
	pktConnect   = 1
	pktConnack   = 2
	pktPublish   = 3
	pktPuback    = 4
	pktSubscribe = 8
	pktSuback    = 9
	pktPingresp  = 13
)

// maxPacket bounds the packets the harness accepts from a broker.
const maxPacket = 1 << 20

type rawConn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

// dialMQTT connects to addr as clientID (clean session, keepalive 0: the
// broker never expects a PINGREQ) and waits for a successful CONNACK.
func dialMQTT(addr, clientID string, rbuf, wbuf int, timeout time.Duration) (*rawConn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	rc := &rawConn{c: c, r: bufio.NewReaderSize(c, rbuf), w: bufio.NewWriterSize(c, wbuf)}
	_ = c.SetDeadline(time.Now().Add(timeout))
	var body []byte
	body = appendString(body, "MQTT")
	body = append(body, 4, 0x02, 0, 0) // level 4, clean session, keepalive 0
	body = appendString(body, clientID)
	rc.w.Write(mqttwire.AppendHeader(nil, pktConnect<<4, len(body)))
	rc.w.Write(body)
	if err := rc.w.Flush(); err != nil {
		c.Close()
		return nil, err
	}
	typ, b, err := rc.next()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("connack from %s: %w", addr, err)
	}
	if typ>>4 != pktConnack || len(b) != 2 || b[1] != 0 {
		c.Close()
		return nil, fmt.Errorf("connect to %s refused: packet %#x %v", addr, typ, b)
	}
	_ = c.SetDeadline(time.Time{})
	return rc, nil
}

// subscribe subscribes to filter at QoS 1 and waits for the SUBACK.
func (rc *rawConn) subscribe(filter string, timeout time.Duration) error {
	_ = rc.c.SetDeadline(time.Now().Add(timeout))
	defer rc.c.SetDeadline(time.Time{})
	var body []byte
	body = append(body, 0, 1)
	body = appendString(body, filter)
	body = append(body, 1)
	rc.w.Write(mqttwire.AppendHeader(nil, pktSubscribe<<4|0x02, len(body)))
	rc.w.Write(body)
	if err := rc.w.Flush(); err != nil {
		return err
	}
	for {
		typ, b, err := rc.next()
		if err != nil {
			return fmt.Errorf("suback: %w", err)
		}
		if typ>>4 != pktSuback {
			continue // a retained message or a late one: none are expected
		}
		if len(b) != 3 || b[2] > 2 {
			return fmt.Errorf("subscription to %q refused: %v", filter, b)
		}
		return nil
	}
}

// writePublish buffers a QoS 1 PUBLISH.
func (rc *rawConn) writePublish(topic string, id uint16, payload []byte) {
	n := 2 + len(topic) + 2 + len(payload)
	var hdr [5]byte
	h := mqttwire.AppendHeader(hdr[:0], pktPublish<<4|0x02, n)
	rc.w.Write(h)
	rc.w.WriteByte(byte(len(topic) >> 8))
	rc.w.WriteByte(byte(len(topic)))
	rc.w.WriteString(topic)
	rc.w.WriteByte(byte(id >> 8))
	rc.w.WriteByte(byte(id))
	rc.w.Write(payload)
}

// writePuback buffers a PUBACK.
func (rc *rawConn) writePuback(id uint16) {
	rc.w.Write([]byte{pktPuback << 4, 2, byte(id >> 8), byte(id)})
}

// next reads one packet: the first byte of its fixed header and its body,
// which is valid until the next call.
func (rc *rawConn) next() (byte, []byte, error) {
	first, err := rc.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, err := readRemainingLength(rc.r)
	if err != nil {
		return 0, nil, err
	}
	if n > maxPacket {
		return 0, nil, fmt.Errorf("packet of %d bytes is over the %d limit", n, maxPacket)
	}
	if b, err := rc.r.Peek(n); err == nil {
		_, _ = rc.r.Discard(n)
		return first, b, nil
	} else if !errors.Is(err, bufio.ErrBufferFull) {
		return 0, nil, err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(rc.r, b); err != nil {
		return 0, nil, err
	}
	return first, b, nil
}

func (rc *rawConn) close() error { return rc.c.Close() }

func readRemainingLength(r io.ByteReader) (int, error) {
	n, mul := 0, 1
	for i := 0; i < 4; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		n += int(b&0x7f) * mul
		if b&0x80 == 0 {
			return n, nil
		}
		mul *= 128
	}
	return 0, errors.New("malformed remaining length")
}

func appendString(b []byte, s string) []byte {
	b = append(b, byte(len(s)>>8), byte(len(s)))
	return append(b, s...)
}

// parsePublish splits the body of a PUBLISH with the given first byte into
// its topic, packet id (0 at QoS 0) and payload.
func parsePublish(first byte, b []byte) (topic []byte, id uint16, payload []byte, err error) {
	if len(b) < 2 {
		return nil, 0, nil, errors.New("publish too short")
	}
	tl := int(b[0])<<8 | int(b[1])
	if len(b) < 2+tl {
		return nil, 0, nil, errors.New("publish topic past the end")
	}
	topic, b = b[2:2+tl], b[2+tl:]
	if (first>>1)&3 > 0 {
		if len(b) < 2 {
			return nil, 0, nil, errors.New("publish without packet id")
		}
		id, b = uint16(b[0])<<8|uint16(b[1]), b[2:]
	}
	return topic, id, b, nil
}
