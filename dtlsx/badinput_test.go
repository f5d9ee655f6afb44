package dtlsx

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/testenv"
)

// rawClientHello builds a minimal cookie-less DTLS 1.2 ClientHello record
// offering ECDHE-ECDSA-AES128-GCM-SHA256 (what a flood would send).
func rawClientHello(sessionID []byte) []byte { return rawClientHelloCookie(sessionID, nil, 0) }

// rawClientHelloCookie is rawClientHello with a cookie and message_seq.
func rawClientHelloCookie(sessionID, cookie []byte, seq uint16) []byte {
	body := []byte{0xfe, 0xfd}
	// The same random in both ClientHellos, as the cookie exchange requires.
	body = append(body, bytes.Repeat([]byte{0x42}, 32)...)
	body = append(body, byte(len(sessionID)))
	body = append(body, sessionID...)
	body = append(body, byte(len(cookie)))
	body = append(body, cookie...)
	body = append(body, 0, 2, 0xc0, 0x2b)               // cipher suites
	body = append(body, 1, 0)                           // compression: null
	body = append(body, 0, 8, 0, 10, 0, 4, 0, 2, 0, 23) // supported_groups: P-256
	hs := []byte{1, 0, byte(len(body) >> 8), byte(len(body)), byte(seq >> 8), byte(seq), 0, 0, 0, 0, byte(len(body) >> 8), byte(len(body))}
	hs = append(hs, body...)
	rec := []byte{22, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, byte(seq >> 8), byte(seq)} // record seq = message seq
	rec = binary.BigEndian.AppendUint16(rec, uint16(len(hs)))
	return append(rec, hs...)
}

func TestBadInputRejectedAndCounted(t *testing.T) {
	pki := newPKI(t)
	key := []byte("0123456789abcdef")
	var tbl PSKTable
	_ = tbl.Set([]byte("sensor-7"), key)
	l := listen(t, WithCertificate(pki.server), WithPSK(&tbl), WithSourceRate(20, 40),
		WithHandshakeTimeout(time.Second), WithFlightInterval(100*time.Millisecond))
	serveEcho(t, l)
	established, err := Dial(ctxT(t, 5*time.Second), "udp", l.Addr().String(), WithRootCAs(pki.pool), WithServerName("gw.test"))
	if err != nil {
		t.Fatal(err)
	}
	defer established.Close()
	echoOnce(t, established, "before")

	raddr := l.Addr().(*net.UDPAddr)
	t.Run("garbage", func(t *testing.T) {
		c, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		hello := rawClientHello(nil)
		garbage := [][]byte{
			{}, {0x16}, []byte("GET / HTTP/1.1\r\n\r\n"),
			append([]byte{22, 0x03, 0x03}, make([]byte, 20)...), // TLS, not DTLS
			hello[:20],                              // truncated record
			append([]byte{99}, hello[1:]...),        // unknown content type
			append([]byte{25}, make([]byte, 30)...), // connection id nobody issued
		}
		before := l.Stats()
		for _, g := range garbage {
			if _, err := c.Write(g); err != nil {
				t.Fatal(err)
			}
		}
		waitStats(t, l, func(s Stats) bool {
			return s.Malformed+s.Unknown >= before.Malformed+before.Unknown+uint64(len(garbage)-1)
		})
		echoOnce(t, established, "after garbage")
	})

	t.Run("clienthello-flood", func(t *testing.T) {
		const sources, burst, rate = 200, 40, 20 // WithSourceRate above
		before := l.Stats()
		// Each hello comes from its own port, and every socket stays open
		// until the flood is decided: a port the kernel handed out again
		// would send its hello into the association of an earlier one
		// instead of through the limiter.
		conns := make([]*net.UDPConn, 0, sources)
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		start := time.Now()
		for i := 0; i < sources; i++ {
			c, err := net.DialUDP("udp", nil, raddr)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			_, _ = c.Write(rawClientHello(nil))
		}
		// Wait until the listener has decided on every hello: refused by
		// the source limit, or admitted as an association that is still
		// handshaking or has ended (timeout or failure).
		decided := func(s Stats) uint64 {
			n := s.RateLimited - before.RateLimited + s.HandshakeTimeouts - before.HandshakeTimeouts +
				s.HandshakeFailures - before.HandshakeFailures
			if s.Associations > before.Associations {
				n += uint64(s.Associations - before.Associations)
			}
			return n
		}
		st := waitStats(t, l, func(s Stats) bool { return decided(s) >= sources })
		// The limiter could admit at most its burst plus what its bucket
		// refilled while the hellos were sent and decided (a loaded
		// machine stretches that); it must have refused the rest.
		allowed := burst + int(rate*time.Since(start).Seconds()) + 1
		limited := st.RateLimited - before.RateLimited
		if allowed < sources && limited < uint64(sources-allowed) {
			t.Fatalf("source limit refused %d of %d hellos, want at least %d (%d allowed in %v): %+v",
				limited, sources, sources-allowed, allowed, time.Since(start), st)
		}
		if st.Associations-before.Associations > allowed {
			t.Fatalf("flood created %d associations; the source limit allows %d", st.Associations-before.Associations, allowed)
		}
		echoOnce(t, established, "during flood")
		// The half-open associations time out and are dropped.
		waitStats(t, l, func(s Stats) bool { return s.Associations == 1 })
		echoOnce(t, established, "after flood")
	})

	t.Run("wrong-psk", func(t *testing.T) {
		testenv.RequireCommand(t, "openssl")
		time.Sleep(200 * time.Millisecond) // let the source budget refill
		before := l.Stats()
		p := startPeer(t, "openssl", "s_client", "-dtls1_2", "-connect", l.Addr().String(),
			"-psk_identity", "sensor-7", "-psk", hex.EncodeToString([]byte("not-the-real-key")), "-cipher", "PSK-AES128-GCM-SHA256")
		// The undecryptable Finished ends the handshake at once.
		waitStats(t, l, func(s Stats) bool { return s.DecryptFailures > before.DecryptFailures })
		if st := l.Stats(); st.HandshakesPSK != before.HandshakesPSK {
			t.Fatalf("wrong PSK completed a handshake: %+v\n%s", st, p.output())
		}
		echoOnce(t, established, "after wrong psk")
	})
}

// waitStats polls l until ok or five seconds pass, then fails.
func waitStats(t *testing.T, l *Listener, ok func(Stats) bool) Stats {
	t.Helper()
	var st Stats
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if st = l.Stats(); ok(st) {
			return st
		}
	}
	t.Fatalf("stats never reached the expected state: %+v", st)
	return st
}
