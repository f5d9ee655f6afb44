//go:build linux

package tcpkeepalive

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Sockets returns this process's connected TCP sockets for which match
// reports true, with their keepalive settings read back with getsockopt.
func Sockets(match func(local, peer netip.AddrPort) bool) ([]Socket, error) {
	var out []Socket
	err := each(match, func(fd int, s Socket) error {
		var err error
		s.Enabled, s.Idle, s.Interval, s.Count, err = read(fd)
		if err != nil {
			return err
		}
		out = append(out, s)
		return nil
	})
	return out, err
}

// SetConnectedTo applies Config to every connected TCP socket of this
// process whose peer is one of peers, and returns how many it changed. It
// is for connections a library dials itself without a dialer hook: call it
// right after the dial. It scans /proc/self/fd and only queries sockets
// (getpeername) until one matches, so it touches no other descriptor; a
// socket of the same process connected to the same peer by other code gets
// the same setting.
func SetConnectedTo(peers []netip.AddrPort) (int, error) {
	n := 0
	err := each(func(_, peer netip.AddrPort) bool {
		for _, p := range peers {
			if p.Addr().Unmap() == peer.Addr() && p.Port() == peer.Port() {
				return true
			}
		}
		return false
	}, func(fd int, s Socket) error {
		if err := set(fd); err != nil {
			return fmt.Errorf("socket %s -> %s: %w", s.Local, s.Peer, err)
		}
		n++
		return nil
	})
	return n, err
}

// each calls fn for every connected TCP socket of this process that match
// selects. Descriptors are queried in place, never duplicated: closing a
// duplicate of a file descriptor would drop the process's POSIX locks on
// that file.
func each(match func(local, peer netip.AddrPort) bool, fn func(fd int, s Socket) error) error {
	dir, err := os.Open("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("tcp keepalive: %w", err)
	}
	names, err := dir.Readdirnames(-1)
	dirFd := int(dir.Fd())
	dir.Close()
	if err != nil {
		return fmt.Errorf("tcp keepalive: /proc/self/fd: %w", err)
	}
	var errs []error
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil || fd == dirFd {
			continue
		}
		// Files, pipes, listening and unconnected sockets fail here.
		psa, err := unix.Getpeername(fd)
		if err != nil {
			continue
		}
		peer, ok := addrPort(psa)
		if !ok {
			continue
		}
		lsa, err := unix.Getsockname(fd)
		if err != nil {
			continue
		}
		local, _ := addrPort(lsa)
		if !match(local, peer) {
			continue
		}
		if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_STREAM {
			continue
		}
		if err := fn(fd, Socket{Local: local, Peer: peer}); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("tcp keepalive: %w", errors.Join(errs...))
	}
	return nil
}

func addrPort(sa unix.Sockaddr) (netip.AddrPort, bool) {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)), true
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port)), true
	}
	return netip.AddrPort{}, false
}

func set(fd int) error {
	secs := int(Period / time.Second)
	for _, o := range []struct{ level, opt, v int }{
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, secs},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, secs},
		{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, Count},
	} {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.v); err != nil {
			return err
		}
	}
	return nil
}

func read(fd int) (on bool, idle, intvl time.Duration, count int, err error) {
	get := func(level, opt int) int {
		v, e := unix.GetsockoptInt(fd, level, opt)
		if e != nil && err == nil {
			err = e
		}
		return v
	}
	on = get(unix.SOL_SOCKET, unix.SO_KEEPALIVE) != 0
	idle = time.Duration(get(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)) * time.Second
	intvl = time.Duration(get(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)) * time.Second
	count = get(unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
	return on, idle, intvl, count, err
}
