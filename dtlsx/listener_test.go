package dtlsx

import (
	"strings"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
)

func TestCertificateHandshakeAndResumption(t *testing.T) {
	pki := newPKI(t)
	l := listen(t, WithCertificate(pki.server))
	serveEcho(t, l)
	clientCache, err := NewSessionCache()
	if err != nil {
		t.Fatal(err)
	}
	dial := func() {
		c, err := Dial(ctxT(t, 5*time.Second), "udp", l.Addr().String(),
			WithRootCAs(pki.pool), WithServerName("gw.test"), WithSessionCache(clientCache))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		echoOnce(t, c, "hello")
	}
	dial()
	dial()
	st := l.Stats()
	if st.HandshakesFull != 1 || st.HandshakesResumed != 1 || st.CookieSkipped != 1 {
		t.Fatalf("stats = %+v, want 1 full, 1 resumed without cookie", st)
	}
}

func TestListenRejectsBadConfiguration(t *testing.T) {
	pki := newPKI(t)
	var tbl PSKTable
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"no credentials", nil},
		{"psk with certificate-only suites", []Option{WithPSK(&tbl), WithCipherSuites(dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)}},
		{"negative rate", []Option{WithCertificate(pki.server), WithSourceRate(-1, 1)}},
		{"zero full handshakes", []Option{WithCertificate(pki.server), WithMaxFullHandshakes(0)}},
		{"zero handshake workers", []Option{WithCertificate(pki.server), WithHandshakeWorkers(0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := Listen("udp", "127.0.0.1:0", tc.opts...)
			if err == nil {
				_ = l.Close()
				t.Fatal("accepted")
			}
			if !strings.HasPrefix(err.Error(), "dtlsx: ") {
				t.Fatalf("error %q does not say where it comes from", err)
			}
		})
	}
}
