package impair

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"time"
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
	d, err := ReadDatagram(c, buf)
	return d.N, d.DSCP, d.From, err
}

// Datagram describes one received datagram.
type Datagram struct {
	N    int
	DSCP uint8
	From netip.AddrPort
	// Kernel is when the kernel received it, if EnableTimestamps was
	// called; zero otherwise.
	Kernel time.Time
}

// EnableTimestamps asks the kernel to report each datagram's receive time
// (SO_TIMESTAMPNS) to ReadDatagram.
func EnableTimestamps(c *net.UDPConn) error {
	return control(c, func(fd int) error {
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	})
}

// ReadDatagram reads one datagram with its DSCP (EnableDSCP first) and,
// when enabled, its kernel receive time.
func ReadDatagram(c *net.UDPConn, buf []byte) (Datagram, error) {
	var oob [128]byte
	n, oobn, _, from, err := c.ReadMsgUDPAddrPort(buf, oob[:])
	d := Datagram{N: n, From: from}
	if err != nil {
		return d, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return d, fmt.Errorf("impair: control message: %w", err)
	}
	found := false
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_TOS && len(m.Data) >= 1:
			d.DSCP, found = m.Data[0]>>2, true
		case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_TCLASS && len(m.Data) >= 4:
			d.DSCP, found = uint8(binary.NativeEndian.Uint32(m.Data)>>2), true
		case m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16:
			d.Kernel = time.Unix(int64(binary.NativeEndian.Uint64(m.Data[0:8])), int64(binary.NativeEndian.Uint64(m.Data[8:16])))
		}
	}
	if !found {
		return d, fmt.Errorf("impair: no DSCP in control messages (EnableDSCP not called?)")
	}
	return d, nil
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
