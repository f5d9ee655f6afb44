//go:build !linux

package mqtt

import (
	"net"
	"sync/atomic"
)

// quickAck is Linux-only; elsewhere the connection is used as it is.
func quickAck(c net.Conn, _ *atomic.Int32) net.Conn { return c }
