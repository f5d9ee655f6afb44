package dtlsx

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
)

// pionClient dials l with a stock pion client; store keeps its sessions
// across dials. It returns the established connection.
func pionClient(t *testing.T, l *Listener, pc net.PacketConn, opts ...dtls.ClientOption) *dtls.Conn {
	t.Helper()
	if pc == nil {
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		pc = u
	}
	c, err := dtls.ClientWithOptions(pc, l.Addr(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.HandshakeContext(ctxT(t, 5*time.Second)); err != nil {
		_ = c.Close()
		t.Fatalf("handshake: %v; server %+v", err, l.Stats())
	}
	return c
}

// echoAcrossRebinding rebinds the client's socket and expects the echo of
// a record sent from the new port (see TestConnectionIDSurvivesRebinding
// for why the first try may be lost).
func echoAcrossRebinding(t *testing.T, c *dtls.Conn, rc *rebindingConn) {
	t.Helper()
	rc.rebind(t)
	buf := make([]byte, 100)
	for try := 0; try < 3; try++ {
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("after rebinding")); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Read(buf); err == nil && string(buf[:n]) == "after rebinding" {
			_ = c.SetDeadline(time.Time{})
			return
		}
	}
	t.Fatal("no echo after rebinding")
}

// TestFastResumptionPionClients: stock pion clients resume through the
// listener's own abbreviated handshake with each AEAD suite family, with
// extended_master_secret, with and without connection ids (a client that
// only sends them, and one that wants its own), and the resumed
// connection carries records both ways; with connection ids it survives
// a NAT rebinding, which needs the id negotiated in the resumption.
func TestFastResumptionPionClients(t *testing.T) {
	pki := newPKI(t)
	key := []byte("0123456789abcdef")
	var tbl PSKTable
	_ = tbl.Set([]byte("sensor-7"), key)
	cases := []struct {
		name  string
		suite dtls.CipherSuiteID
		cid   func() []byte // nil: the client does not offer connection ids
	}{
		{"ecdsa-gcm", dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, nil},
		{"ecdsa-gcm/cid-send-only", dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.OnlySendCIDGenerator()},
		{"ecdsa-gcm/cid-both-ways", dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.RandomCIDGenerator(6)},
		{"ecdsa-gcm384", dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, nil},
		{"ecdsa-ccm8", dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, dtls.RandomCIDGenerator(4)},
		{"ecdsa-chacha", dtls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, dtls.RandomCIDGenerator(4)},
		{"psk-ccm8", dtls.TLS_PSK_WITH_AES_128_CCM_8, nil},
		{"psk-ccm8/cid-both-ways", dtls.TLS_PSK_WITH_AES_128_CCM_8, dtls.RandomCIDGenerator(8)},
		{"psk-ccm8/cid-send-only", dtls.TLS_PSK_WITH_AES_128_CCM_8, dtls.OnlySendCIDGenerator()},
		{"psk-gcm", dtls.TLS_PSK_WITH_AES_128_GCM_SHA256, dtls.RandomCIDGenerator(8)},
		{"psk-ccm", dtls.TLS_PSK_WITH_AES_128_CCM, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			suite, _ := fastSuiteFor(tc.suite)
			var l *Listener
			opts := []dtls.ClientOption{dtls.WithCipherSuites(tc.suite), dtls.WithSessionStore(newMapStore()),
				dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret)}
			if suite.psk {
				l = listen(t, WithPSK(&tbl))
				opts = append(opts, dtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
					dtls.WithPSKIdentityHint([]byte("sensor-7")))
			} else {
				l = listen(t, WithCertificate(pki.server))
				opts = append(opts, dtls.WithRootCAs(pki.pool), dtls.WithServerName("gw.test"))
			}
			if tc.cid != nil {
				opts = append(opts, dtls.WithConnectionIDGenerator(tc.cid))
			}
			serveEcho(t, l)
			c := pionClient(t, l, nil, opts...)
			echoOnce(t, c, "full")
			first, _ := c.ConnectionState()
			_ = c.Close()

			u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			rc := &rebindingConn{cur: u}
			c = pionClient(t, l, rc, opts...)
			defer c.Close()
			st, _ := c.ConnectionState()
			if !bytes.Equal(st.SessionID, first.SessionID) {
				t.Fatalf("session %x, want the resumed %x", st.SessionID, first.SessionID)
			}
			echoOnce(t, c, "resumed")
			if tc.cid != nil {
				echoAcrossRebinding(t, c, rc)
			}
			echoOnce(t, c, "and later")
			s := l.Stats()
			if s.HandshakesResumed != 1 || s.ResumedFast != 1 || s.CookieSkipped != 1 || s.HandshakeFailures+s.DecryptFailures+s.HandshakeTimeouts != 0 {
				t.Fatalf("stats %+v: want one resumption by the listener and no failure", s)
			}
		})
	}
}

// TestFastResumptionDeclined: what the listener's path does not serve is
// resumed by pion as before (a CBC suite), or not fast at all when turned
// off; a revoked session is not resumed by either.
func TestFastResumptionDeclined(t *testing.T) {
	key := []byte("0123456789abcdef")
	var tbl PSKTable
	_ = tbl.Set([]byte("sensor-7"), key)
	for _, tc := range []struct {
		name        string
		suite       dtls.CipherSuiteID
		opts        []Option
		revoke      bool
		wantResumed uint64
	}{
		{"cbc-suite", dtls.TLS_PSK_WITH_AES_128_CBC_SHA256, nil, false, 1},
		{"turned-off", dtls.TLS_PSK_WITH_AES_128_CCM_8, []Option{WithFastResumption(false)}, false, 1},
		{"revoked", dtls.TLS_PSK_WITH_AES_128_CCM_8, nil, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := listen(t, append([]Option{WithPSK(&tbl)}, tc.opts...)...)
			serveEcho(t, l)
			opts := []dtls.ClientOption{dtls.WithCipherSuites(tc.suite), dtls.WithSessionStore(newMapStore()),
				dtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }), dtls.WithPSKIdentityHint([]byte("sensor-7")),
				dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret)}
			c := pionClient(t, l, nil, opts...)
			// Closing before the server has counted the handshake would
			// race its end with the close_notify.
			waitStats(t, l, func(s Stats) bool { return s.HandshakesPSK == 1 })
			_ = c.Close()
			if tc.revoke {
				if n, err := l.Cache().Revoke(context.Background(), "psk:sensor-7"); err != nil || n != 1 {
					t.Fatalf("revoke: %d, %v", n, err)
				}
			}
			c = pionClient(t, l, nil, opts...)
			defer c.Close()
			echoOnce(t, c, "second")
			// The server counts a handshake a moment after the client returns.
			s := waitStats(t, l, func(s Stats) bool { return s.HandshakesResumed+s.HandshakesPSK == 2 })
			if s.HandshakesResumed != tc.wantResumed || s.ResumedFast != 0 || s.HandshakesPSK != 2-tc.wantResumed {
				t.Fatalf("stats %+v: want %d resumed by pion, none by the listener", s, tc.wantResumed)
			}
		})
	}
}

// rawResumption drives the abbreviated handshake by hand from a UDP
// socket, so tests can repeat, drop and tamper with the client's side.
type rawResumption struct {
	t        *testing.T
	c        *net.UDPConn
	session  dtls.Session
	suite    fastSuite
	hello    []byte // record
	helloMsg []byte
	keys     *recordKeys // client-side: seal with the client key
	shMsg    []byte
	sfPlain  []byte
}

// cachedSession runs a full handshake with a pion client (certificate,
// ECDHE-ECDSA-AES128-GCM) and returns the session the listener stored.
func cachedSession(t *testing.T, l *Listener, ems dtls.ExtendedMasterSecretType) dtls.Session {
	t.Helper()
	c := pionClient(t, l, nil, dtls.WithCipherSuites(dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
		dtls.WithInsecureSkipVerify(true), dtls.WithExtendedMasterSecret(ems), dtls.WithSessionStore(newMapStore()))
	st, _ := c.ConnectionState()
	_ = c.Close()
	s, src := l.Cache().lookup(st.SessionID)
	if src == 0 {
		t.Fatal("session not cached")
	}
	return s
}

// resumeHello builds a cookie-less ClientHello record offering session.
func resumeHello(session dtls.Session, ems bool, recordSeq uint64) []byte {
	body := []byte{0xfe, 0xfd}
	body = append(body, bytes.Repeat([]byte{0x5a}, 32)...)
	body = append(body, byte(len(session.ID)))
	body = append(body, session.ID...)
	body = append(body, 0)                         // cookie
	body = append(body, 0, 4, 0xc0, 0x2b, 0, 0xff) // suite + renegotiation SCSV
	body = append(body, 1, 0)
	ext := []byte{0, 10, 0, 4, 0, 2, 0, 23}
	if ems {
		ext = append(ext, 0, 23, 0, 0)
	}
	body = binary.BigEndian.AppendUint16(body, uint16(len(ext)))
	body = append(body, ext...)
	msg := appendHandshakeHeader(nil, handshakeClientHello, 0, len(body))
	return appendPlainRecord(nil, contentHandshake, recordSeq, append(msg, body...))
}

func newRawResumption(t *testing.T, l *Listener, session dtls.Session, ems bool) *rawResumption {
	c, err := net.DialUDP("udp", nil, l.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	r := &rawResumption{t: t, c: c, session: session, hello: resumeHello(session, ems, 0)}
	r.helloMsg = r.hello[recordHeaderLen:]
	r.suite, _ = fastSuiteFor(session.CipherSuiteID)
	return r
}

func (r *rawResumption) send(b []byte) {
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

// read returns the records of the server's next datagram.
func (r *rawResumption) read() [][]byte {
	r.t.Helper()
	buf := make([]byte, 4096)
	_ = r.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err := r.c.Read(buf)
	if err != nil {
		r.t.Fatalf("no reply: %v", err)
	}
	var recs [][]byte
	for b := buf[:n]; len(b) > 0; {
		rec, rest, err := splitRecord(b, 0)
		if err != nil {
			r.t.Fatalf("reply %x: %v", buf[:n], err)
		}
		recs, b = append(recs, rec), rest
	}
	return recs
}

// flight reads the server's flight and checks its Finished; it returns the
// ServerHello message, the Finished plaintext and the records' sequence numbers.
func (r *rawResumption) flight() (sh, sf []byte, seqs []uint64) {
	r.t.Helper()
	recs := r.read()
	if len(recs) != 3 || recs[0][0] != contentHandshake || recs[0][recordHeaderLen] != handshakeServerHello ||
		recs[1][0] != contentChangeCipherSpec || binary.BigEndian.Uint16(recs[2][3:5]) != 1 {
		r.t.Fatalf("flight is not ServerHello, ChangeCipherSpec, Finished: %x", recs)
	}
	for _, rec := range recs {
		seqs = append(seqs, binary.BigEndian.Uint64(rec[3:11])&maxSequenceNumber)
	}
	sh = recs[0][recordHeaderLen:]
	if r.keys == nil {
		mac := r.suite.newPRF(r.session.Secret)
		srv, err := deriveKeys(r.suite, mac, r.helloMsg[14:46], sh[14:46])
		if err != nil {
			r.t.Fatal(err)
		}
		r.keys = &recordKeys{suite: r.suite, seal: srv.open, open: srv.seal, sealIV: srv.openIV, openIV: srv.sealIV}
	}
	typ, sf, _, err := r.keys.openRecord(recs[2], 0)
	if err != nil || typ != contentHandshake {
		r.t.Fatalf("server Finished: type %d, %v", typ, err)
	}
	th := r.suite.newHash()
	th.Write(r.helloMsg)
	th.Write(sh)
	mac := r.suite.newPRF(r.session.Secret)
	if want := appendFinished(nil, 1, verifyData(mac, "server finished", th.Sum(nil))); !bytes.Equal(sf, want) {
		r.t.Fatalf("server Finished %x, want %x", sf, want)
	}
	r.shMsg, r.sfPlain = sh, sf
	return sh, sf, seqs
}

// finished returns the client's ChangeCipherSpec and Finished records,
// with verify_data from the transcript or the given one.
func (r *rawResumption) finished(verify []byte) []byte {
	if verify == nil {
		th := r.suite.newHash()
		th.Write(r.helloMsg)
		th.Write(r.shMsg)
		th.Write(r.sfPlain)
		verify = verifyData(r.suite.newPRF(r.session.Secret), "client finished", th.Sum(nil))
	}
	b := appendPlainRecord(nil, contentChangeCipherSpec, 1, []byte{1})
	return r.keys.appendSealed(b, contentHandshake, 1, 0, nil, appendFinished(nil, 1, verify))
}

func certListener(t *testing.T, opts ...Option) *Listener {
	pki := newPKI(t)
	l := listen(t, append([]Option{WithCertificate(pki.server), WithSourceRate(0, 0)}, opts...)...)
	serveEcho(t, l)
	return l
}

// TestFastResumptionRetransmittedHello: a repeated ClientHello (the
// server's flight was lost) is answered with the same flight under fresh
// record sequence numbers, and the handshake then completes.
func TestFastResumptionRetransmittedHello(t *testing.T) {
	l := certListener(t)
	r := newRawResumption(t, l, cachedSession(t, l, dtls.RequireExtendedMasterSecret), true)
	r.send(r.hello)
	sh1, sf1, seq1 := r.flight()
	r.send(r.hello)
	sh2, sf2, seq2 := r.flight()
	if !bytes.Equal(sh1, sh2) || !bytes.Equal(sf1, sf2) {
		t.Fatalf("second flight differs:\n%x %x\n%x %x", sh1, sf1, sh2, sf2)
	}
	for i := range seq1 {
		if seq2[i] <= seq1[i] {
			t.Fatalf("record sequence numbers %v then %v: not fresh", seq1, seq2)
		}
	}
	if !bytes.Contains(sh1, []byte{0xff, 0x01, 0, 1, 0}) || !bytes.Contains(sh1, []byte{0, 23, 0, 0}) {
		t.Fatalf("ServerHello %x lacks renegotiation_info or extended_master_secret", sh1)
	}
	r.send(r.finished(nil))
	s := waitStats(t, l, func(s Stats) bool { return s.ResumedFast == 1 })
	if s.DecryptFailures+s.HandshakeFailures != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestFastResumptionBadFinished: a client Finished whose record was
// tampered with, or that carries the wrong verify_data, ends the handshake
// with a fatal alert and is counted as a decrypt failure.
func TestFastResumptionBadFinished(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mangle func(r *rawResumption) []byte
		sealed bool // alert in epoch 1 (the client has the keys)
		desc   byte
	}{
		{"tampered-record", func(r *rawResumption) []byte {
			b := r.finished(nil)
			b[len(b)-1] ^= 0x80
			return b
		}, false, 20},
		{"wrong-verify-data", func(r *rawResumption) []byte {
			return r.finished(bytes.Repeat([]byte{7}, verifyDataLen))
		}, true, alertDecryptError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := certListener(t)
			r := newRawResumption(t, l, cachedSession(t, l, dtls.RequireExtendedMasterSecret), true)
			r.send(r.hello)
			r.flight()
			r.send(tc.mangle(r))
			recs := r.read()
			alert := recs[0]
			if alert[0] != contentAlert {
				t.Fatalf("reply %x is not an alert", alert)
			}
			body := alert[recordHeaderLen:]
			if tc.sealed {
				typ, pt, _, err := r.keys.openRecord(alert, 0)
				if err != nil || typ != contentAlert {
					t.Fatalf("sealed alert: %v", err)
				}
				body = pt
			}
			if !bytes.Equal(body, []byte{alertLevelFatal, tc.desc}) {
				t.Fatalf("alert %x, want fatal %d", body, tc.desc)
			}
			s := waitStats(t, l, func(s Stats) bool { return s.DecryptFailures == 1 && s.Associations == 0 })
			if s.ResumedFast != 0 || s.HandshakesResumed != 0 {
				t.Fatalf("stats %+v: resumed anyway", s)
			}
		})
	}
}

// TestFastResumptionEMSMismatch: the listener resumes only when the
// client's extended_master_secret offer matches the session (RFC 7627
// 5.3); otherwise pion decides, as before: it aborts an EMS session
// offered without EMS, and runs a full handshake for a session made
// without EMS offered with it.
func TestFastResumptionEMSMismatch(t *testing.T) {
	t.Run("ems-session-without-ems", func(t *testing.T) {
		l := certListener(t)
		r := newRawResumption(t, l, cachedSession(t, l, dtls.RequireExtendedMasterSecret), false)
		r.send(r.hello)
		if recs := r.read(); recs[0][0] != contentAlert {
			t.Fatalf("reply %x, want pion's alert", recs[0])
		}
		if s := l.Stats(); s.ResumedFast != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
	t.Run("plain-session-with-ems", func(t *testing.T) {
		l := certListener(t)
		session := cachedSession(t, l, dtls.DisableExtendedMasterSecret)
		r := newRawResumption(t, l, session, true)
		r.send(r.hello)
		recs := r.read()
		sh := recs[0][recordHeaderLen:]
		if recs[0][0] != contentHandshake || sh[0] != handshakeServerHello || len(recs) < 2 {
			t.Fatalf("reply %x, want pion's full handshake flight", recs)
		}
		if sid := sh[12+35 : 12+35+int(sh[12+34])]; bytes.Equal(sid, session.ID) {
			t.Fatal("session resumed")
		}
		if s := l.Stats(); s.ResumedFast != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// TestFastResumptionFinishedNeverComes: without the client's Finished the
// listener retransmits its flight on its timer (same messages, fresh
// record numbers) and, at the handshake timeout, gives up and counts it.
func TestFastResumptionFinishedNeverComes(t *testing.T) {
	l := certListener(t, WithFlightInterval(100*time.Millisecond), WithHandshakeTimeout(time.Second))
	r := newRawResumption(t, l, cachedSession(t, l, dtls.RequireExtendedMasterSecret), true)
	r.send(r.hello)
	sh1, sf1, seq1 := r.flight()
	sh2, sf2, seq2 := r.flight() // unprompted: the retransmission timer
	if !bytes.Equal(sh1, sh2) || !bytes.Equal(sf1, sf2) || seq2[0] <= seq1[0] {
		t.Fatalf("retransmitted flight differs or reuses record numbers %v %v", seq1, seq2)
	}
	s := waitStats(t, l, func(s Stats) bool { return s.HandshakeTimeouts == 1 && s.Associations == 0 })
	if s.ResumedFast != 0 || s.DecryptFailures != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestFastResumptionFullBacklog: resumptions that finish while the accept
// backlog is full wait for Accept without holding a handshake worker, so
// later devices still resume; none of the connections is lost.
func TestFastResumptionFullBacklog(t *testing.T) {
	const devices = 10 // more than the listener's 1+3 workers
	key := []byte("0123456789abcdef")
	var tbl PSKTable
	_ = tbl.Set([]byte("sensor-7"), key)
	l := listen(t, WithPSK(&tbl), WithAcceptBacklog(1), WithHandshakeWorkers(1))
	t.Cleanup(func() { _ = l.Close() })
	opts := func(store dtls.SessionStore) []dtls.ClientOption {
		return []dtls.ClientOption{dtls.WithCipherSuites(dtls.TLS_PSK_WITH_AES_128_CCM_8), dtls.WithSessionStore(store),
			dtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }), dtls.WithPSKIdentityHint([]byte("sensor-7"))}
	}
	stores := make([]*mapStore, devices)
	for i := range stores {
		stores[i] = newMapStore()
		c := make(chan *dtls.Conn, 1)
		go func() { c <- pionClient(t, l, nil, opts(stores[i])...) }()
		sc, err := l.AcceptWithContext(ctxT(t, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		// The client finishes its handshake before the server side closes,
		// and a client that never does fails the test instead of hanging it.
		select {
		case cc := <-c:
			_ = cc.Close()
		case <-time.After(10 * time.Second):
			t.Fatalf("device %d: the client's first handshake did not finish; server %+v", i, l.Stats())
		}
		_ = sc.Close()
	}
	// Nobody accepts now: the first resumed connection fills the backlog.
	clients := make(chan *dtls.Conn, devices)
	for i := range stores {
		go func() { clients <- pionClient(t, l, nil, opts(stores[i])...) }()
	}
	var conns []*dtls.Conn
	for range devices {
		select {
		case c := <-clients:
			conns = append(conns, c)
			defer c.Close()
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d devices resumed; server %+v", len(conns), devices, l.Stats())
		}
	}
	st := waitStats(t, l, func(s Stats) bool { return s.ResumedFast == devices })
	if st.HandshakeFailures+st.HandshakeTimeouts != 0 {
		t.Fatalf("stats %+v", st)
	}
	for range devices {
		sc, err := l.AcceptWithContext(ctxT(t, 5*time.Second))
		if err != nil {
			t.Fatalf("accept: %v", err)
		}
		go echoRecords(sc)
	}
	for _, c := range conns {
		echoOnce(t, c, "after the backlog drained")
	}
}
