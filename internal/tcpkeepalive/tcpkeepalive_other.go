//go:build !linux

package tcpkeepalive

import (
	"errors"
	"net/netip"
)

// Sockets is implemented on Linux only.
func Sockets(func(local, peer netip.AddrPort) bool) ([]Socket, error) {
	return nil, errors.ErrUnsupported
}

// SetConnectedTo is implemented on Linux only; elsewhere a library's own
// dial keeps Go's default keepalive (15 s).
func SetConnectedTo([]netip.AddrPort) (int, error) { return 0, errors.ErrUnsupported }
