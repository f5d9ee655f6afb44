// Package tcpkeepalive holds the gateway's TCP keepalive setting for
// device connections (30 s idle, 30 s between probes) and, on Linux, a way
// to apply it to sockets a third-party library dialled itself, and to read
// it back.
//
// The happy path:
//
//	lc := net.ListenConfig{KeepAliveConfig: tcpkeepalive.Config()}
//	d := net.Dialer{KeepAliveConfig: tcpkeepalive.Config()}
//	n, err := tcpkeepalive.SetConnectedTo(peers) // after a library's own dial
package tcpkeepalive
