package dtlsx

import (
	"testing"
	"time"
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
