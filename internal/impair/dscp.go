package impair

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SetDSCP marks every datagram c sends with dscp.
func SetDSCP(c *net.UDPConn, dscp uint8) error {
	return control(c, func(fd int) error {
		if is6(c) {
			return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_TCLASS, int(dscp)<<2)
		}
		return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TOS, int(dscp)<<2)
	})
}

// EnableDSCP asks the kernel to report the DSCP of each received datagram
// to ReadDSCP.
func EnableDSCP(c *net.UDPConn) error {
	return control(c, func(fd int) error {
		if is6(c) {
			return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVTCLASS, 1)
		}
		return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVTOS, 1)
	})
}

// ReadDSCP reads one datagram and its DSCP (EnableDSCP first).
func ReadDSCP(c *net.UDPConn, buf []byte) (n int, dscp uint8, from netip.AddrPort, err error) {
	var oob [64]byte
	n, oobn, _, from, err := c.ReadMsgUDPAddrPort(buf, oob[:])
	if err != nil {
		return 0, 0, from, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return n, 0, from, fmt.Errorf("impair: control message: %w", err)
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_TOS && len(m.Data) >= 1:
			return n, m.Data[0] >> 2, from, nil
		case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_TCLASS && len(m.Data) >= 4:
			return n, uint8(binary.NativeEndian.Uint32(m.Data) >> 2), from, nil
		}
	}
	return n, 0, from, fmt.Errorf("impair: no DSCP in control messages (EnableDSCP not called?)")
}

// WriteDSCP sends b to dst with the given DSCP, whatever the socket's own
// marking.
func WriteDSCP(c *net.UDPConn, b []byte, dscp uint8, dst netip.AddrPort) error {
	oob := make([]byte, unix.CmsgSpace(4))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	if dst.Addr().Is4() && !is6(c) {
		h.Level, h.Type = unix.IPPROTO_IP, unix.IP_TOS
	} else {
		h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_TCLASS
	}
	h.SetLen(unix.CmsgLen(4))
	binary.NativeEndian.PutUint32(oob[unix.CmsgLen(0):], uint32(dscp)<<2)
	_, _, err := c.WriteMsgUDPAddrPort(b, oob, dst)
	return err
}

func is6(c *net.UDPConn) bool {
	a, ok := c.LocalAddr().(*net.UDPAddr)
	return ok && a.IP.To4() == nil
}

func control(c *net.UDPConn, f func(fd int) error) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
