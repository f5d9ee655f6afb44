package dtlsx

import (
	"context"
	"fmt"
	"net"

	"github.com/pion/dtls/v3"
)

// Dial opens a UDP socket, connects to address and completes the DTLS
// handshake within ctx. The returned Conn owns the socket.
func Dial(ctx context.Context, network, address string, opts ...Option) (*dtls.Conn, error) {
	raddr, err := net.ResolveUDPAddr(network, address)
	if err != nil {
		return nil, fmt.Errorf("dtlsx: dial %s: %w", address, err)
	}
	pc, err := net.ListenUDP(network, nil)
	if err != nil {
		return nil, fmt.Errorf("dtlsx: dial %s: %w", address, err)
	}
	c, err := Client(ctx, pc, raddr, opts...)
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	return c, nil
}

// Client runs the client handshake over pc to raddr within ctx. The
// returned Conn owns pc and closes it on Close.
func Client(ctx context.Context, pc net.PacketConn, raddr net.Addr, opts ...Option) (*dtls.Conn, error) {
	s, err := buildSettings(opts)
	if err != nil {
		return nil, err
	}
	copts, err := s.clientOptions()
	if err != nil {
		return nil, err
	}
	c, err := dtls.ClientWithOptions(pc, raddr, copts...)
	if err != nil {
		return nil, fmt.Errorf("dtlsx: client %v: %w", raddr, err)
	}
	if err := c.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("dtlsx: handshake with %v: %w", raddr, err)
	}
	return c, nil
}
