package dtlsx

import (
	"net"
	"testing"
	"time"
)

// TestSamePortReconnect: a device that reboots and handshakes again from
// the same address and port gets a new association at once, and the old
// one is closed (RFC 6347 4.2.8).
func TestSamePortReconnect(t *testing.T) {
	pki := newPKI(t)
	l := listen(t, WithCertificate(pki.server))
	accepted := acceptAll(t, l)
	opts := []Option{WithRootCAs(pki.pool), WithServerName("gw.test")}

	pcA, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	local := pcA.LocalAddr().(*net.UDPAddr)
	a, err := Client(ctxT(t, 5*time.Second), pcA, l.Addr(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	serverA := <-accepted
	// Reboot: the socket vanishes without a close_notify.
	_ = pcA.Close()
	_ = a

	pcB, err := net.ListenUDP("udp", local)
	if err != nil {
		t.Fatalf("rebind %v: %v", local, err)
	}
	start := time.Now()
	b, err := Client(ctxT(t, 5*time.Second), pcB, l.Addr(), opts...)
	if err != nil {
		t.Fatalf("handshake from the same port: %v", err)
	}
	defer b.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("reconnect took %v; it should not wait for the old association to expire", d)
	}
	serverB := <-accepted
	defer serverB.Close()
	go func() {
		buf := make([]byte, 100)
		n, err := serverB.Read(buf)
		if err == nil {
			_, _ = serverB.Write(buf[:n])
		}
	}()
	echoOnce(t, b, "after reboot")
	// The replaced association is closed.
	_ = serverA.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := serverA.Read(make([]byte, 10)); err == nil {
		t.Fatal("old association still readable")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("old association not closed: %v", err)
	}
	if st := l.Stats(); st.Reconnects != 1 || st.Associations != 1 {
		t.Fatalf("stats = %+v, want 1 reconnect and 1 association", st)
	}
}

// TestSpoofedHelloDoesNotReplace: an epoch-0 ClientHello from the address
// of a live association that never answers the cookie leaves it alone.
func TestSpoofedHelloDoesNotReplace(t *testing.T) {
	pki := newPKI(t)
	l := listen(t, WithCertificate(pki.server), WithHandshakeTimeout(500*time.Millisecond))
	serveEcho(t, l)
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Client(ctxT(t, 5*time.Second), pc, l.Addr(), WithRootCAs(pki.pool), WithServerName("gw.test"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoOnce(t, c, "one")
	// Same source address as the live association.
	if _, err := pc.WriteTo(rawClientHello(nil), l.Addr()); err != nil {
		t.Fatal(err)
	}
	echoOnce(t, c, "two")
	time.Sleep(800 * time.Millisecond) // past the candidate's handshake timeout
	echoOnce(t, c, "three")
	st := l.Stats()
	if st.Reconnects != 0 || st.HandshakeTimeouts != 1 {
		t.Fatalf("stats = %+v, want no reconnect and the candidate timed out", st)
	}
}

// beforeWrite is a client socket that runs hook once, just before its
// n-th write goes out.
type beforeWrite struct {
	net.PacketConn
	n, writes int
	hook      func()
}

func (b *beforeWrite) WriteTo(p []byte, addr net.Addr) (int, error) {
	b.writes++
	if b.writes == b.n {
		b.hook()
	}
	return b.PacketConn.WriteTo(p, addr)
}

// TestReconnectOutlivesReplacedAssociation: when the association a new
// handshake from the same port would replace closes first (the server
// closed it, or the old device's close_notify arrived), the new handshake
// keeps its records and completes.
func TestReconnectOutlivesReplacedAssociation(t *testing.T) {
	pki := newPKI(t)
	l := listen(t, WithCertificate(pki.server))
	accepted := acceptAll(t, l)
	opts := []Option{WithRootCAs(pki.pool), WithServerName("gw.test")}
	pcA, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	local := pcA.LocalAddr().(*net.UDPAddr)
	if _, err := Client(ctxT(t, 5*time.Second), pcA, l.Addr(), opts...); err != nil {
		t.Fatal(err)
	}
	serverA := <-accepted
	_ = pcA.Close()
	pcB, err := net.ListenUDP("udp", local)
	if err != nil {
		t.Fatalf("rebind %v: %v", local, err)
	}
	// Writes: ClientHello, ClientHello with cookie, then the key exchange.
	// Close the old association just before the key exchange goes out.
	hooked := &beforeWrite{PacketConn: pcB, n: 3, hook: func() {
		_ = serverA.Close()
		time.Sleep(100 * time.Millisecond)
	}}
	b, err := Client(ctxT(t, 5*time.Second), hooked, l.Addr(), opts...)
	if err != nil {
		t.Fatalf("handshake after the replaced association closed: %v; stats %+v", err, l.Stats())
	}
	defer b.Close()
	serverB := <-accepted
	defer serverB.Close()
	if st := l.Stats(); st.Associations != 1 || st.HandshakeTimeouts != 0 {
		t.Fatalf("stats = %+v, want the new association only", st)
	}
}
