package dtlsx

import (
	"bytes"
	"context"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
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

// firstReply sends hello from a fresh socket and returns the handshake type
// of the server's first reply: 3 for HelloVerifyRequest, 2 for ServerHello.
func firstReply(t *testing.T, server net.Addr, hello []byte) byte {
	t.Helper()
	c, err := net.DialUDP("udp", nil, server.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	if n < 14 || buf[0] != 22 {
		t.Fatalf("reply is not a handshake record: %x", buf[:n])
	}
	return buf[13]
}

// withExtendedMasterSecret appends the extended_master_secret extension
// (RFC 7627), which the session was made with, to a rawClientHello.
func withExtendedMasterSecret(hello []byte) []byte {
	out := append(append([]byte(nil), hello...), 0, 23, 0, 0)
	grow := func(at, width int) {
		var v int
		for i := 0; i < width; i++ {
			v = v<<8 | int(out[at+i])
		}
		v += 4
		for i := width - 1; i >= 0; i-- {
			out[at+i] = byte(v)
			v >>= 8
		}
	}
	grow(11, 2)            // record length
	grow(14, 3)            // handshake length
	grow(22, 3)            // fragment length
	grow(len(hello)-10, 2) // extensions length: rawClientHello's block is the last 10 bytes
	return out
}

// TestCookieRequiredUnlessResumable: only a ClientHello offering a session
// the cache holds is answered without a HelloVerifyRequest; a new peer, or
// one offering an unknown (made-up) session id, must return a cookie first.
func TestCookieRequiredUnlessResumable(t *testing.T) {
	pki := newPKI(t)
	l := listen(t, WithCertificate(pki.server), WithSourceRate(0, 0))
	serveEcho(t, l)
	clientCache, _ := NewSessionCache()
	c, err := Dial(ctxT(t, 5*time.Second), "udp", l.Addr().String(), WithRootCAs(pki.pool), WithServerName("gw.test"),
		WithSessionCache(clientCache), WithCipherSuites(dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256))
	if err != nil {
		t.Fatal(err)
	}
	state, _ := c.ConnectionState()
	_ = c.Close()
	if len(state.SessionID) == 0 {
		t.Fatal("server issued no session id")
	}
	madeUp := bytes.Repeat([]byte{0x5a}, len(state.SessionID))
	for _, tc := range []struct {
		name      string
		sessionID []byte
		want      byte
	}{
		{"unknown peer without session id", nil, 3},
		{"made-up session id", madeUp, 3},
		{"resumable session id", state.SessionID, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := firstReply(t, l.Addr(), withExtendedMasterSecret(rawClientHello(tc.sessionID))); got != tc.want {
				t.Fatalf("first reply is handshake type %d, want %d", got, tc.want)
			}
		})
	}
	if st := l.Stats(); st.HandshakesResumed != 0 {
		t.Fatalf("stats %+v: raw hellos completed a resumption", st)
	}
}

// TestHandshakeWorkersNeverStall: with a single handshake worker and a
// single full-handshake slot, concurrent full, resumed and failing (wrong
// PSK) handshakes all finish, and every worker token comes back.
func TestHandshakeWorkersNeverStall(t *testing.T) {
	pki := newPKI(t)
	var tbl PSKTable
	_ = tbl.Set([]byte("sensor-7"), []byte("0123456789abcdef"))
	l := listen(t, WithCertificate(pki.server), WithPSK(&tbl), WithHandshakeWorkers(1), WithMaxFullHandshakes(1), WithSourceRate(0, 0))
	serveEcho(t, l)
	certOpts := []Option{WithRootCAs(pki.pool), WithServerName("gw.test"),
		WithCipherSuites(dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)}
	const devices = 12
	caches := make([]*SessionCache, devices)
	for i := range caches {
		caches[i], _ = NewSessionCache()
	}
	round := func() (failed int) {
		errs := make(chan error, 2*devices)
		for i := 0; i < devices; i++ {
			go func() {
				c, err := Dial(ctxT(t, 10*time.Second), "udp", l.Addr().String(), append(certOpts, WithSessionCache(caches[i]))...)
				if err == nil {
					echoOnce(t, c, "worker")
					c.Close()
				}
				errs <- err
			}()
			go func() {
				c, err := Dial(ctxT(t, 10*time.Second), "udp", l.Addr().String(), WithClientPSK([]byte("sensor-7"), []byte("wrong-key-wrong!")))
				if err == nil {
					c.Close()
					err = errBadRecord
				} else {
					err = nil
				}
				errs <- err
			}()
		}
		for i := 0; i < 2*devices; i++ {
			if err := <-errs; err != nil {
				t.Error(err)
				failed++
			}
		}
		return failed
	}
	for r := 0; r < 2; r++ { // full handshakes, then resumptions
		if round() > 0 {
			t.Fatalf("round %d: handshakes failed; stats %+v", r, l.Stats())
		}
	}
	// A failed handshake is counted just after its association closes.
	st := waitStats(t, l, func(s Stats) bool {
		return s.Associations == 0 && cpuAndAdmittedIdle(l) && s.DecryptFailures >= 2*devices
	})
	if st.HandshakesFull != devices || st.HandshakesResumed != devices || st.DecryptFailures != 2*devices {
		t.Fatalf("stats %+v: want %d full, %d resumed, %d decrypt failures", st, devices, devices, 2*devices)
	}
}

// TestCookieRequiredForRevokedOrExpiredSession: a session id the cache no
// longer serves (revoked, or past its TTL) gets a HelloVerifyRequest like
// an unknown peer.
func TestCookieRequiredForRevokedOrExpiredSession(t *testing.T) {
	var tbl PSKTable
	_ = tbl.Set([]byte("sensor-7"), []byte("0123456789abcdef"))
	for _, tc := range []struct {
		name   string
		ttl    time.Duration
		revoke bool
	}{
		{"revoked", time.Hour, true},
		{"expired", 200 * time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache, err := NewSessionCache(WithTTL(tc.ttl))
			if err != nil {
				t.Fatal(err)
			}
			l := listen(t, WithPSK(&tbl), WithSessionCache(cache), WithSourceRate(0, 0))
			serveEcho(t, l)
			clientCache, _ := NewSessionCache()
			c, err := Dial(ctxT(t, 5*time.Second), "udp", l.Addr().String(),
				WithClientPSK([]byte("sensor-7"), []byte("0123456789abcdef")), WithSessionCache(clientCache))
			if err != nil {
				t.Fatal(err)
			}
			state, _ := c.ConnectionState()
			_ = c.Close()
			if _, src := cache.lookup(state.SessionID); src == 0 {
				t.Fatal("session not cached after the handshake")
			}
			if tc.revoke {
				if n, err := cache.Revoke(context.Background(), "psk:sensor-7"); err != nil || n != 1 {
					t.Fatalf("revoke: %d, %v", n, err)
				}
			} else {
				time.Sleep(2 * tc.ttl)
			}
			if got := firstReply(t, l.Addr(), withExtendedMasterSecret(rawClientHello(state.SessionID))); got != 3 {
				t.Fatalf("first reply is handshake type %d, want a HelloVerifyRequest (3)", got)
			}
			if st := l.Stats(); st.CookieSkipped != 0 {
				t.Fatalf("stats %+v: cookie skipped", st)
			}
		})
	}
}

// cpuAndAdmittedIdle reports that no handshake holds a CPU token or an
// admission.
func cpuAndAdmittedIdle(l *Listener) bool {
	cpu, admitted := l.cpu.held()
	return cpu == 0 && admitted == 0
}

// TestNetPassDuringHandshakes: with a token for every processor and an
// established session carrying records, released tokens wait for the
// network poller (netPass); full and resumed handshakes still complete,
// and the established session keeps echoing between them.
func TestNetPassDuringHandshakes(t *testing.T) {
	pki := newPKI(t)
	l := listen(t, WithCertificate(pki.server), WithHandshakeWorkers(runtime.GOMAXPROCS(0)))
	serveEcho(t, l)
	opts := []Option{WithRootCAs(pki.pool), WithServerName("gw.test")}
	established, err := Dial(ctxT(t, 5*time.Second), "udp", l.Addr().String(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer established.Close()
	time.Sleep(liveAge + 100*time.Millisecond)
	echoOnce(t, established, "live")
	if !l.live.active() {
		t.Fatal("a session established for a second carried a record, but the listener sees no established traffic")
	}
	clientCache, _ := NewSessionCache()
	for i := range 6 {
		c, err := Dial(ctxT(t, 5*time.Second), "udp", l.Addr().String(), append(opts, WithSessionCache(clientCache))...)
		if err != nil {
			t.Fatalf("handshake %d: %v", i, err)
		}
		echoOnce(t, c, "new")
		echoOnce(t, established, "still live")
		_ = c.Close()
	}
	l.cpu.mu.Lock()
	passes := l.cpu.passes
	l.cpu.mu.Unlock()
	if st := l.Stats(); passes == 0 || st.HandshakesResumed < 5 {
		t.Fatalf("%d network passes, %d resumptions; want some of each", passes, st.HandshakesResumed)
	}
}
