package tcpkeepalive

import (
	"net"
	"net/netip"
	"time"
)

// Period is the keepalive idle time and probe interval of every device
// TCP connection: a silent peer is probed after 30 s and declared dead
// after Count unanswered probes 30 s apart (30 s + 9 x 30 s = 5 min).
const Period = 30 * time.Second

// Count is the number of unanswered probes before the kernel drops the
// connection (the Linux and Go default).
const Count = 9

// Config is the net.KeepAliveConfig for net.Dialer and net.ListenConfig.
// Go's plain KeepAlive field sets only the idle time and leaves the probe
// interval at Go's default 15 s; this sets both.
func Config() net.KeepAliveConfig {
	return net.KeepAliveConfig{Enable: true, Idle: Period, Interval: Period, Count: Count}
}

// Socket is one TCP socket of this process and its keepalive settings as
// the kernel reports them.
type Socket struct {
	Local, Peer    netip.AddrPort
	Enabled        bool
	Idle, Interval time.Duration
	Count          int
}
