//go:build linux

package udpbatch

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sysBatch is the preallocated recvmmsg/sendmmsg state of one Reader or
// Writer: the message headers point at its iovecs and sockaddrs, the
// iovecs at the slots' buffers.
type sysBatch struct {
	c        *net.UDPConn
	rc       syscall.RawConn
	hdrs     []unix.Mmsghdr
	iovs     []unix.Iovec
	names    []unix.RawSockaddrInet6
	family   int // the socket's address family
	disabled bool

	// The system calls' closures and results, made once: a closure
	// handed to RawConn.Read escapes, so one per call would allocate.
	readFn, writeFn func(fd uintptr) bool
	vlen, off, k    int
	errno           syscall.Errno
}

func newSysBatch(c *net.UDPConn, n int) *sysBatch {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	s := &sysBatch{c: c, rc: rc, hdrs: make([]unix.Mmsghdr, n), iovs: make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n), family: unix.AF_INET6}
	_ = rc.Control(func(fd uintptr) {
		if f, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN); err == nil {
			s.family = f
		}
	})
	s.readFn = func(fd uintptr) bool { return s.call(fd, unix.SYS_RECVMMSG) }
	s.writeFn = func(fd uintptr) bool { return s.call(fd, unix.SYS_SENDMMSG) }
	for i := range s.hdrs {
		h := &s.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		h.Iov = &s.iovs[i]
		h.SetIovlen(1)
	}
	return s
}

// call runs recvmmsg or sendmmsg on hdrs[off:off+vlen] without blocking;
// false asks the poller to wait until the socket is ready.
func (s *sysBatch) call(fd uintptr, trap uintptr) bool {
	for {
		r, _, e := unix.Syscall6(trap, fd, uintptr(unsafe.Pointer(&s.hdrs[s.off])), uintptr(s.vlen), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		s.k, s.errno = int(r), e
		return true
	}
}

func (s *sysBatch) read(msgs []Message) (int, error) {
	for i := range msgs {
		b := msgs[i].Buf
		s.iovs[i].Base = &b[0]
		s.iovs[i].SetLen(len(b))
		s.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
		s.hdrs[i].Hdr.Flags = 0
		s.hdrs[i].Len = 0
	}
	s.off, s.vlen = 0, len(msgs)
	err := s.rc.Read(s.readFn)
	k, errno := s.k, s.errno
	if err != nil {
		return 0, err
	}
	switch errno {
	case 0:
	case unix.ENOSYS:
		s.disabled = true
		return 0, errNoSys
	default:
		return 0, os.NewSyscallError("recvmmsg", errno)
	}
	for i := range k {
		m, h := &msgs[i], &s.hdrs[i]
		m.N = min(int(h.Len), len(m.Buf))
		m.Truncated = h.Hdr.Flags&unix.MSG_TRUNC != 0
		m.Addr = decodeAddr(&s.names[i])
	}
	return k, nil
}

// decodeAddr reads an AF_INET or AF_INET6 sockaddr the kernel wrote. The
// port is in network byte order in memory on every architecture.
func decodeAddr(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), netPort(&sa4.Port))
	case unix.AF_INET6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(a, netPort(&sa.Port))
	}
	return netip.AddrPort{}
}

func netPort(p *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(p))
	return uint16(b[0])<<8 | uint16(b[1])
}

func setNetPort(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}

// encodeAddr writes to into slot i's sockaddr for the socket's family and
// returns its length, or 0 when the socket cannot send there (an IPv6
// destination on an IPv4 socket) or the address has a zone (sent one by
// one through the net package, which resolves zone names).
func (s *sysBatch) encodeAddr(i int, to netip.AddrPort) uint32 {
	a := to.Addr()
	if a.Zone() != "" {
		return 0
	}
	sa := &s.names[i]
	if s.family == unix.AF_INET {
		a = a.Unmap()
		if !a.Is4() {
			return 0
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		setNetPort(&sa4.Port, to.Port())
		return unix.SizeofSockaddrInet4
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
	setNetPort(&sa.Port, to.Port())
	return unix.SizeofSockaddrInet6
}

func (s *sysBatch) write(msgs []Message) error {
	var first error
	keep := func(err error) {
		if first == nil {
			first = err
		}
	}
	n := 0
	for i := range msgs {
		m := &msgs[i]
		l := s.encodeAddr(n, m.Addr)
		if l == 0 {
			_, err := s.c.WriteToUDPAddrPort(m.Buf[:m.N], m.Addr)
			if err != nil {
				keep(err)
			}
			continue
		}
		h := &s.hdrs[n]
		h.Hdr.Namelen = l
		if m.N > 0 {
			s.iovs[n].Base = &m.Buf[0]
		} else {
			s.iovs[n].Base = nil
		}
		s.iovs[n].SetLen(m.N)
		h.Hdr.Flags = 0
		h.Len = 0
		n++
	}
	for sent := 0; sent < n; {
		s.off, s.vlen = sent, n-sent
		err := s.rc.Write(s.writeFn)
		k, errno := s.k, s.errno
		if err != nil {
			keep(err)
			return first
		}
		switch errno {
		case 0:
			sent += k
		case unix.ENOSYS:
			s.disabled = true
			for ; sent < n; sent++ {
				// The slots from sent on are still in msgs order, minus
				// the zoned ones already sent; resend from the headers.
				iov := s.iovs[sent]
				b := unsafe.Slice(iov.Base, iov.Len)
				_, err := s.c.WriteToUDPAddrPort(b, decodeAddr(&s.names[sent]))
				if err != nil {
					keep(err)
				}
			}
		default:
			keep(os.NewSyscallError("sendmmsg", errno))
			sent++ // that datagram is lost; send the rest
		}
	}
	return first
}
