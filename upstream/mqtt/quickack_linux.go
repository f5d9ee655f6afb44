package mqtt

import (
	"net"
	"sync/atomic"
	"syscall"
)

// quickAck makes the kernel acknowledge the segments the broker sends at
// once, instead of delaying the ACK up to 40 ms, while the sink waits for
// PUBACKs with nothing more to send (waiting > 0). Brokers that leave
// Nagle's algorithm on (mosquitto's default, set_tcp_nodelay false) hold
// back all PUBACKs after the first until that ACK arrives; a sink that has
// sent its whole window would otherwise stall 40 ms per window. While the
// sink still has PUBLISHes to write, they carry the ACK, so reads then
// skip the setsockopt: it used to follow every read.
func quickAck(c net.Conn, waiting *atomic.Int32) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &quickAckConn{TCPConn: tc, raw: raw, waiting: waiting}
}

type quickAckConn struct {
	*net.TCPConn
	raw     syscall.RawConn
	waiting *atomic.Int32
	setOpts atomic.Uint64 // setsockopt calls, for tests and benchmarks
}

func (c *quickAckConn) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	if n > 0 && c.waiting.Load() > 0 {
		c.setOpts.Add(1)
		_ = c.raw.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
		})
	}
	return n, err
}
