package resume

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The UDP heartbeat is exactly 16 bytes, all integers big endian:
//
//	offset  size  field
//	0       1     version (low 7 bits, = 1) | reply flag (0x80)
//	1       3     sequence number, u24, wraps
//	4       8     timestamp, i64 Unix nanoseconds of the sender, echoed
//	12      4     CRC-32 (IEEE) over bytes 0..11
//
// The prober sends a request; the responder answers with the same bytes,
// the reply flag set and the CRC recomputed. A 24-bit sequence wraps after
// 16.7 million heartbeats (about 39 days at 200 ms); together with the
// echoed timestamp it matches replies to requests unambiguously.
const (
	HeartbeatSize    = 16
	HeartbeatVersion = 1
	heartbeatReply   = 0x80
)

// Heartbeat is one decoded heartbeat datagram.
type Heartbeat struct {
	Reply bool
	Seq   uint32 // low 24 bits are sent
	Time  int64  // Unix nanoseconds
}

// Errors of ParseHeartbeat.
var (
	ErrHeartbeatSize    = errors.New("resume: heartbeat: wrong size")
	ErrHeartbeatVersion = errors.New("resume: heartbeat: unsupported version")
	ErrHeartbeatCRC     = errors.New("resume: heartbeat: CRC mismatch")
)

// AppendBinary appends the 16-byte form of h to dst.
func (h Heartbeat) AppendBinary(dst []byte) []byte {
	b0 := byte(HeartbeatVersion)
	if h.Reply {
		b0 |= heartbeatReply
	}
	start := len(dst)
	dst = append(dst, b0, byte(h.Seq>>16), byte(h.Seq>>8), byte(h.Seq))
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.Time))
	return binary.BigEndian.AppendUint32(dst, crc32.ChecksumIEEE(dst[start:start+12]))
}

// ParseHeartbeat decodes a datagram. Errors name the offset at fault.
func ParseHeartbeat(b []byte) (Heartbeat, error) {
	if len(b) != HeartbeatSize {
		return Heartbeat{}, fmt.Errorf("%w: %d bytes, want %d", ErrHeartbeatSize, len(b), HeartbeatSize)
	}
	if v := b[0] &^ heartbeatReply; v != HeartbeatVersion {
		return Heartbeat{}, fmt.Errorf("%w: %d at offset 0", ErrHeartbeatVersion, v)
	}
	if got, want := binary.BigEndian.Uint32(b[12:]), crc32.ChecksumIEEE(b[:12]); got != want {
		return Heartbeat{}, fmt.Errorf("%w: %08x at offset 12, computed %08x", ErrHeartbeatCRC, got, want)
	}
	return Heartbeat{
		Reply: b[0]&heartbeatReply != 0,
		Seq:   uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]),
		Time:  int64(binary.BigEndian.Uint64(b[4:12])),
	}, nil
}

// HeartbeatResponder answers heartbeat requests: the cloud side of the UDP
// heartbeat probe. Run it next to the broker.
type HeartbeatResponder struct {
	conn               net.PacketConn
	wg                 sync.WaitGroup
	answered, rejected atomic.Uint64
}

// ListenHeartbeat starts a responder on addr ("host:port" for udp).
func ListenHeartbeat(addr string) (*HeartbeatResponder, error) {
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("resume: heartbeat responder: %w", err)
	}
	r := &HeartbeatResponder{conn: c}
	r.wg.Add(1)
	go r.serve()
	return r, nil
}

// Addr is the address the responder listens on.
func (r *HeartbeatResponder) Addr() net.Addr { return r.conn.LocalAddr() }

// Stats returns how many requests were answered and how many datagrams
// were rejected (bad size, version, CRC, or a reply).
func (r *HeartbeatResponder) Stats() (answered, rejected uint64) {
	return r.answered.Load(), r.rejected.Load()
}

func (r *HeartbeatResponder) serve() {
	defer r.wg.Done()
	buf := make([]byte, 64)
	out := make([]byte, 0, HeartbeatSize)
	for {
		n, from, err := r.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		h, err := ParseHeartbeat(buf[:n])
		if err != nil || h.Reply {
			r.rejected.Add(1)
			continue
		}
		h.Reply = true
		if _, err := r.conn.WriteTo(h.AppendBinary(out[:0]), from); err == nil {
			r.answered.Add(1)
		}
	}
}

// Close stops the responder and waits for it.
func (r *HeartbeatResponder) Close() error {
	err := r.conn.Close()
	r.wg.Wait()
	return err
}

// HeartbeatProbe sends one heartbeat per Probe call and waits for the
// matching reply.
type HeartbeatProbe struct {
	// Addr is the responder's "host:port".
	Addr string
	seq  atomic.Uint32
}

var _ Probe = (*HeartbeatProbe)(nil)

// Name implements Probe.
func (p *HeartbeatProbe) Name() string { return "udp-heartbeat" }

// Probe implements Probe: the round-trip time of one heartbeat.
func (p *HeartbeatProbe) Probe(ctx context.Context) (time.Duration, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", p.Addr)
	if err != nil {
		return 0, fmt.Errorf("heartbeat %s: %w", p.Addr, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	req := Heartbeat{Seq: p.seq.Add(1) & 0xffffff, Time: time.Now().UnixNano()}
	start := time.Now()
	if _, err := c.Write(req.AppendBinary(nil)); err != nil {
		return 0, fmt.Errorf("heartbeat %s: %w", p.Addr, err)
	}
	buf := make([]byte, 64)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return 0, fmt.Errorf("heartbeat %s: %w", p.Addr, err)
		}
		h, err := ParseHeartbeat(buf[:n])
		if err == nil && h.Reply && h.Seq == req.Seq && h.Time == req.Time {
			return time.Since(start), nil
		}
	}
}
