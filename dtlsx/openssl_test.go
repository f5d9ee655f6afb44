package dtlsx

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/testenv"
)

// sClient runs openssl s_client against addr, sends a line, waits for its
// echo and quits. It returns the full output.
func sClient(t *testing.T, addr string, extra ...string) string {
	t.Helper()
	args := append([]string{"s_client", "-dtls1_2", "-connect", addr, "-no_ign_eof"}, extra...)
	p := startPeer(t, "openssl", args...)
	if !p.waitFor("Verify return code", 10*time.Second) && !p.waitFor("Cipher is", time.Second) {
		t.Fatalf("s_client %v: no handshake:\n%s", extra, p.output())
	}
	if _, err := p.stdin.Write([]byte("ping-from-openssl\n")); err != nil {
		t.Fatal(err)
	}
	// The echo arrives after the line we sent; s_client prints it once.
	if !p.waitFor("ping-from-openssl\n", 5*time.Second) {
		t.Fatalf("s_client %v: no echo:\n%s", extra, p.output())
	}
	_ = p.wait(5 * time.Second)
	return p.output()
}

func TestOpenSSLClientCertificateAndResumption(t *testing.T) {
	testenv.RequireCommand(t, "openssl")
	pki := newPKI(t)
	l := listen(t, WithCertificate(pki.server))
	serveEcho(t, l)
	sess := filepath.Join(t.TempDir(), "sess.pem")
	out := sClient(t, l.Addr().String(), "-CAfile", pki.caPEM, "-verify_return_error", "-sess_out", sess)
	if !strings.Contains(out, "New, TLSv1.2") {
		t.Fatalf("first handshake not new:\n%s", out)
	}
	out = sClient(t, l.Addr().String(), "-CAfile", pki.caPEM, "-verify_return_error", "-sess_in", sess)
	if !strings.Contains(out, "Reused, TLSv1.2") {
		t.Fatalf("second handshake not resumed:\n%s", out)
	}
	st := l.Stats()
	if st.HandshakesFull != 1 || st.HandshakesResumed != 1 || st.CookieSkipped != 1 || st.ResumedFast != 1 {
		t.Fatalf("stats = %+v, want 1 full + 1 resumed by the listener without the cookie round trip", st)
	}
}

func TestOpenSSLClientPSK(t *testing.T) {
	testenv.RequireCommand(t, "openssl")
	key := []byte("0123456789abcdef")
	var tbl PSKTable
	if err := tbl.Set([]byte("sensor-7"), key); err != nil {
		t.Fatal(err)
	}
	l := listen(t, WithPSK(&tbl), WithPSKHint([]byte("gw-hint")))
	serveEcho(t, l)
	for _, cipher := range []string{"PSK-AES128-CCM8:@SECLEVEL=0", "PSK-AES128-GCM-SHA256"} {
		t.Run(cipher, func(t *testing.T) {
			sess := filepath.Join(t.TempDir(), "sess.pem")
			psk := []string{"-psk_identity", "sensor-7", "-psk", hex.EncodeToString(key), "-cipher", cipher}
			out := sClient(t, l.Addr().String(), append(psk, "-sess_out", sess)...)
			if !strings.Contains(out, "PSK") || !strings.Contains(out, "gw-hint") || !strings.Contains(out, "New, TLSv1.2") {
				t.Fatalf("no new PSK session with the hint in output:\n%s", out)
			}
			out = sClient(t, l.Addr().String(), append(psk, "-sess_in", sess)...)
			if !strings.Contains(out, "Reused, TLSv1.2") {
				t.Fatalf("PSK session not resumed:\n%s", out)
			}
		})
	}
	if st := l.Stats(); st.HandshakesPSK != 2 || st.HandshakesResumed != 2 || st.ResumedFast != 2 {
		t.Fatalf("stats = %+v, want 2 PSK handshakes, both resumed by the listener", st)
	}
}

// sServer starts openssl s_server on a free port and returns its address.
func sServer(t *testing.T, extra ...string) (*peer, string) {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreeUDPPort(t))
	args := append([]string{"s_server", "-dtls1_2", "-accept", addr, "-naccept", "1"}, extra...)
	p := startPeer(t, "openssl", args...)
	if !p.waitFor("ACCEPT", 10*time.Second) {
		t.Fatalf("s_server did not start:\n%s", p.output())
	}
	return p, addr
}

func TestOpenSSLServer(t *testing.T) {
	testenv.RequireCommand(t, "openssl")
	pki := newPKI(t)
	key := []byte("0123456789abcdef")
	cases := []struct {
		name   string
		server []string
		client []Option
	}{
		{"certificate", []string{"-cert", pki.certPEM, "-key", pki.keyPEM},
			[]Option{WithRootCAs(pki.pool), WithServerName("gw.test")}},
		{"psk-ccm8", []string{"-nocert", "-psk", hex.EncodeToString(key), "-psk_identity", "sensor-7", "-psk_hint", "gw-hint", "-cipher", "PSK-AES128-CCM8:@SECLEVEL=0"},
			[]Option{WithClientPSKFunc([]byte("sensor-7"), func(hint []byte) ([]byte, error) {
				if string(hint) != "gw-hint" {
					return nil, fmt.Errorf("hint %q", hint)
				}
				return key, nil
			})}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, addr := sServer(t, tc.server...)
			c, err := Dial(ctxT(t, 10*time.Second), "udp", addr, tc.client...)
			if err != nil {
				t.Fatalf("dial openssl: %v\n%s", err, srv.output())
			}
			defer c.Close()
			if _, err := c.Write([]byte("ping-from-dtlsx\n")); err != nil {
				t.Fatal(err)
			}
			if !srv.waitFor("ping-from-dtlsx", 5*time.Second) {
				t.Fatalf("s_server did not receive data:\n%s", srv.output())
			}
		})
	}
}

func TestOpenSSLServerUntrustedOrExpiredCertificateRejected(t *testing.T) {
	testenv.RequireCommand(t, "openssl")
	pki := newPKI(t)
	other := newPKI(t) // a CA the client does not trust
	expired := pki.issue(t, "gw.test", time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	expCert := filepath.Join(pki.dir, "expired.pem")
	expKey := filepath.Join(pki.dir, "expired.key")
	writePEM(t, expCert, "CERTIFICATE", expired.Certificate[0])
	der, _ := x509.MarshalECPrivateKey(expired.PrivateKey.(*ecdsa.PrivateKey))
	writePEM(t, expKey, "EC PRIVATE KEY", der)
	for _, tc := range []struct{ name, cert, key string }{
		{"untrusted", other.certPEM, other.keyPEM},
		{"expired", expCert, expKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, addr := sServer(t, "-cert", tc.cert, "-key", tc.key)
			c, err := Dial(ctxT(t, 10*time.Second), "udp", addr, WithRootCAs(pki.pool), WithServerName("gw.test"))
			if err == nil {
				c.Close()
				t.Fatalf("handshake with %s certificate succeeded", tc.name)
			}
			if !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("error %q does not name the certificate problem", err)
			}
			_ = srv
		})
	}
}

// TestOpenSSLResumeAfterRestart: a session made with one gateway process is
// resumed by openssl -sess_in against a new process that only shares the
// sealed SQLite store (and the key ring) with the first.
func TestOpenSSLResumeAfterRestart(t *testing.T) {
	testenv.RequireCommand(t, "openssl")
	pki := newPKI(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "sessions.db")
	ringKey := make([]byte, 32)
	_, _ = rand.Read(ringKey)
	sess := filepath.Join(dir, "sess.pem")
	run := func(extra ...string) (string, Stats, CacheStats) {
		child := exec.Command(os.Args[0], "-test.run=^TestGatewayProcess$", "-test.count=1")
		child.Env = append(os.Environ(), "DTLSX_GATEWAY_PROCESS=1", "DTLSX_DB="+db,
			"DTLSX_RING_KEY="+hex.EncodeToString(ringKey), "DTLSX_CERT="+pki.certPEM, "DTLSX_KEY="+pki.keyPEM)
		stdin, _ := child.StdinPipe()
		var out strings.Builder
		var mu sync.Mutex
		child.Stdout = writerFunc(func(b []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(b) })
		child.Stderr = child.Stdout
		if err := child.Start(); err != nil {
			t.Fatal(err)
		}
		read := func() string { mu.Lock(); defer mu.Unlock(); return out.String() }
		var addr string
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && addr == ""; time.Sleep(20 * time.Millisecond) {
			if _, a, ok := strings.Cut(read(), "LISTEN "); ok {
				addr, _, _ = strings.Cut(a, "\n")
			}
		}
		if addr == "" {
			_ = child.Process.Kill()
			_ = child.Wait()
			t.Fatalf("gateway process did not start:\n%s", read())
		}
		sc := sClient(t, addr, append([]string{"-CAfile", pki.caPEM, "-verify_return_error"}, extra...)...)
		_ = stdin.Close()
		if err := child.Wait(); err != nil {
			t.Fatalf("gateway process: %v\n%s", err, read())
		}
		_, js, ok := strings.Cut(read(), "STATS ")
		if !ok {
			t.Fatalf("no stats from gateway process:\n%s", read())
		}
		js, _, _ = strings.Cut(js, "\n")
		var st struct {
			L Stats
			C CacheStats
		}
		if err := json.Unmarshal([]byte(js), &st); err != nil {
			t.Fatal(err)
		}
		return sc, st.L, st.C
	}
	out, st, _ := run("-sess_out", sess)
	if !strings.Contains(out, "New, TLSv1.2") || st.HandshakesFull != 1 {
		t.Fatalf("first process: stats %+v\n%s", st, out)
	}
	raw, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) == 0 {
		t.Fatal("store file empty")
	}
	out, st, cs := run("-sess_in", sess)
	if !strings.Contains(out, "Reused, TLSv1.2") {
		t.Fatalf("second process did not resume:\n%s", out)
	}
	if st.HandshakesResumed != 1 || st.ResumedFast != 1 || cs.StoreHits != 1 {
		t.Fatalf("second process: listener %+v cache %+v, want 1 resumption served from the store by the listener", st, cs)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// TestGatewayProcess is the gateway half of TestOpenSSLResumeAfterRestart,
// run in a child process. It serves until stdin closes, then prints stats.
func TestGatewayProcess(t *testing.T) {
	if os.Getenv("DTLSX_GATEWAY_PROCESS") != "1" {
		return // helper process for TestOpenSSLResumeAfterRestart: not a test of its own
	}
	cert, err := tls.LoadX509KeyPair(os.Getenv("DTLSX_CERT"), os.Getenv("DTLSX_KEY"))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := hex.DecodeString(os.Getenv("DTLSX_RING_KEY"))
	ring, err := NewKeyRing(1, key)
	if err != nil {
		t.Fatal(err)
	}
	store, err := OpenSQLiteStore(context.Background(), os.Getenv("DTLSX_DB"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cache, err := NewSessionCache(WithPersistentStore(store, ring))
	if err != nil {
		t.Fatal(err)
	}
	l := listen(t, WithCertificate(cert), WithSessionCache(cache))
	serveEcho(t, l)
	fmt.Printf("LISTEN %s\n", l.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = l.Close()
	_ = cache.Close()
	js, _ := json.Marshal(struct {
		L Stats
		C CacheStats
	}{l.Stats(), cache.Stats()})
	fmt.Printf("STATS %s\n", js)
}
