package dtlsx

import (
	"net"
	"testing"
	"time"
)

// stallFullHandshake passes the cookie exchange and then goes silent, so
// it holds a full-handshake slot until the server's handshake timeout.
func stallFullHandshake(t *testing.T, server net.Addr) {
	t.Helper()
	c, err := net.DialUDP("udp", nil, server.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write(rawClientHello(nil)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no HelloVerifyRequest: %v", err)
	}
	// record(13) handshake(12) server_version(2) cookie<1>
	if n < 28 || buf[0] != 22 || buf[13] != 3 {
		t.Fatalf("not a HelloVerifyRequest: %x", buf[:n])
	}
	cookie := append([]byte(nil), buf[28:28+int(buf[27])]...)
	if _, err := c.Write(rawClientHelloCookie(nil, cookie, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(buf); err != nil {
		t.Fatalf("server did not start the full handshake: %v", err)
	}
}

// TestAdmissionLetsResumptionsThrough: with every full-handshake slot taken,
// resumptions and established traffic still go through at once while a new
// full handshake waits for a slot.
func TestAdmissionLetsResumptionsThrough(t *testing.T) {
	pki := newPKI(t)
	l := listen(t, WithCertificate(pki.server), WithMaxFullHandshakes(1), WithHandshakeTimeout(3*time.Second))
	serveEcho(t, l)
	clientCache, _ := NewSessionCache()
	opts := []Option{WithRootCAs(pki.pool), WithServerName("gw.test")}
	established, err := Dial(ctxT(t, 5*time.Second), "udp", l.Addr().String(), append(opts, WithSessionCache(clientCache))...)
	if err != nil {
		t.Fatal(err)
	}
	defer established.Close()

	stallFullHandshake(t, l.Addr())

	start := time.Now()
	resumed, err := Dial(ctxT(t, 2*time.Second), "udp", l.Addr().String(), append(opts, WithSessionCache(clientCache))...)
	if err != nil {
		t.Fatalf("resumption blocked behind the stalled full handshake: %v", err)
	}
	defer resumed.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("resumption took %v", d)
	}
	echoOnce(t, resumed, "resumed")
	echoOnce(t, established, "established")

	if c, err := Dial(ctxT(t, time.Second), "udp", l.Addr().String(), opts...); err == nil {
		c.Close()
		t.Fatal("second full handshake ran while the only slot was held")
	}
	st := l.Stats()
	if st.AdmissionWaits < 1 || st.HandshakesResumed != 1 {
		t.Fatalf("stats = %+v, want an admission wait and 1 resumption", st)
	}
	// Once the staller times out its slot frees up.
	waitStats(t, l, func(s Stats) bool { return s.HandshakeTimeouts >= 1 })
	full, err := Dial(ctxT(t, 5*time.Second), "udp", l.Addr().String(), opts...)
	if err != nil {
		t.Fatalf("full handshake after the slot freed: %v", err)
	}
	full.Close()
}
