package tcpkeepalive

import (
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/testenv"
)

func peerIs(addr net.Addr) func(_, peer netip.AddrPort) bool {
	want := addr.(*net.TCPAddr).AddrPort()
	return func(_, peer netip.AddrPort) bool { return peer == want }
}

func one(t *testing.T, match func(_, peer netip.AddrPort) bool) Socket {
	t.Helper()
	ss, err := Sockets(match)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 1 {
		t.Fatalf("found %d sockets, want 1: %+v", len(ss), ss)
	}
	return ss[0]
}

// TestSetConnectedTo: a socket dialled with Go's defaults reads back 15 s;
// after SetConnectedTo it reads back 30 s idle and interval; a dialer with
// Config gets the same. Only the socket to the peer changes.
func TestSetConnectedTo(t *testing.T) {
	if runtime.GOOS != "linux" {
		testenv.Skip(t, "reads socket options through /proc/self/fd (Linux)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	defer func() {
		ln.Close()
		for c := range accepted {
			c.Close()
		}
	}()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case sc := <-accepted: // the accepted end exists in this process now
		defer sc.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("connection not accepted")
	}
	before := one(t, peerIs(ln.Addr()))
	if !before.Enabled || before.Idle != 15*time.Second || before.Interval != 15*time.Second {
		t.Fatalf("Go's default dial: %+v, want keepalive 15 s / 15 s", before)
	}
	if before.Local != c.LocalAddr().(*net.TCPAddr).AddrPort() {
		t.Fatalf("found socket %s, dialled from %s", before.Local, c.LocalAddr())
	}
	n, err := SetConnectedTo([]netip.AddrPort{ln.Addr().(*net.TCPAddr).AddrPort(), netip.MustParseAddrPort("192.0.2.1:502")})
	if err != nil || n != 1 {
		t.Fatalf("SetConnectedTo = %d, %v; want 1 socket", n, err)
	}
	after := one(t, peerIs(ln.Addr()))
	if !after.Standard() {
		t.Fatalf("after SetConnectedTo: %+v, want %v / %v / %d", after, Period, Period, Count)
	}
	// The accepted end (peer: the client) was not touched.
	server := one(t, peerIs(c.LocalAddr()))
	if server.Idle != 15*time.Second {
		t.Errorf("accepted socket changed too: %+v", server)
	}

	d := net.Dialer{KeepAliveConfig: Config()}
	c2, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	mine := one(t, func(local, _ netip.AddrPort) bool { return local == c2.LocalAddr().(*net.TCPAddr).AddrPort() })
	if mine.Idle != Period || mine.Interval != Period || mine.Count != Count {
		t.Errorf("dialer with Config: %+v", mine)
	}
}
