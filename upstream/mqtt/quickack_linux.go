package mqtt

import (
	"net"
	"syscall"
)

// quickAck makes the kernel acknowledge every segment the broker sends at
// once instead of delaying the ACK up to 40 ms. Brokers that leave Nagle's
// algorithm on (mosquitto's default, set_tcp_nodelay false) hold back all
// PUBACKs after the first until that ACK arrives; a client that has sent
// its whole window and waits would otherwise stall 40 ms per window. The
// price is one setsockopt per read of the connection; reads go through a
// 4 KiB buffer (bufconn.Coalesced), so that is one per buffer-full of
// PUBACKs. Asking for quick ACKs only while a Publish waits for the last
// PUBACKs of its batch did not reduce the calls measurably, and without
// quick ACKs the sink ran at 40 % of the throughput (BENCHMARKS.md).
func quickAck(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &quickAckConn{TCPConn: tc, raw: raw}
}

type quickAckConn struct {
	*net.TCPConn
	raw syscall.RawConn
}

func (c *quickAckConn) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	if n > 0 {
		_ = c.raw.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
		})
	}
	return n, err
}
