package dtlsx

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/testenv"
)

// TestWrongPSKFailsFast: a device with the wrong key for its identity gets
// a bad_record_mac alert as soon as its Finished fails to decrypt, instead
// of retransmitting until a timeout; the server counts it apart from other
// failures and keeps serving. Both timeouts are 30 s, so a client that
// returns within 10 s learned it from the server.
func TestWrongPSKFailsFast(t *testing.T) {
	var tbl PSKTable
	if err := tbl.Set([]byte("sensor-7"), []byte("0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	l := listen(t, WithPSK(&tbl), WithHandshakeTimeout(30*time.Second))
	serveEcho(t, l)
	const fast = 10 * time.Second

	t.Run("pion", func(t *testing.T) {
		before := l.Stats()
		start := time.Now()
		c, err := Dial(ctxT(t, 30*time.Second), "udp", l.Addr().String(), WithClientPSK([]byte("sensor-7"), []byte("not-the-real-key")))
		took := time.Since(start)
		if err == nil {
			c.Close()
			t.Fatal("wrong PSK completed a handshake")
		}
		if took > fast {
			t.Fatalf("client learned of the wrong key after %v: %v", took, err)
		}
		if !strings.Contains(strings.ToLower(err.Error()), "badrecordmac") {
			t.Errorf("client error %q does not carry the bad_record_mac alert", err)
		}
		st := waitStats(t, l, func(s Stats) bool { return s.DecryptFailures == before.DecryptFailures+1 })
		if st.HandshakeFailures != before.HandshakeFailures || st.HandshakeTimeouts != before.HandshakeTimeouts || st.HandshakesPSK != before.HandshakesPSK {
			t.Fatalf("stats %+v (before %+v): want exactly one more decrypt failure", st, before)
		}
		waitStats(t, l, func(s Stats) bool { return s.Associations == 0 })
		t.Logf("pion client failed after %v: %v", took, err)
	})

	t.Run("openssl", func(t *testing.T) {
		testenv.RequireCommand(t, "openssl")
		before := l.Stats()
		start := time.Now()
		p := startPeer(t, "openssl", "s_client", "-dtls1_2", "-connect", l.Addr().String(), "-timeout",
			"-psk_identity", "sensor-7", "-psk", hex.EncodeToString([]byte("not-the-real-key")), "-cipher", "PSK-AES128-GCM-SHA256")
		err := p.wait(30 * time.Second)
		took := time.Since(start)
		out := p.output()
		if err == nil {
			t.Fatalf("s_client with a wrong key exited cleanly:\n%s", out)
		}
		if took > fast {
			t.Fatalf("s_client learned of the wrong key after %v:\n%s", took, out)
		}
		if !strings.Contains(out, "bad record mac") {
			t.Errorf("s_client did not report the bad_record_mac alert:\n%s", out)
		}
		waitStats(t, l, func(s Stats) bool { return s.DecryptFailures == before.DecryptFailures+1 })
		t.Logf("s_client failed after %v", took)
	})

	t.Run("right key still works", func(t *testing.T) {
		c, err := Dial(ctxT(t, 5*time.Second), "udp", l.Addr().String(), WithClientPSK([]byte("sensor-7"), []byte("0123456789abcdef")))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		echoOnce(t, c, "right key")
	})
}
