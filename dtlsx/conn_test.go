package dtlsx

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
)

// TestOwnRecords drives a resumption by hand and then the record layer of
// the *Conn the listener hands out: records are read in order, a replayed
// or tampered record is dropped, the server's records open with the
// client's keys under fresh sequence numbers, close_notify ends reading
// and is answered, and ConnectionState describes the session.
func TestOwnRecords(t *testing.T) {
	pki := newPKI(t)
	l := listen(t, WithCertificate(pki.server), WithSourceRate(0, 0))
	accepted := acceptAll(t, l)
	session := cachedSession(t, l, dtls.RequireExtendedMasterSecret)
	first := <-accepted // the full handshake's pion Conn
	defer first.Close()
	r := newRawResumption(t, l, session, true)
	r.send(r.hello)
	_, _, flightSeqs := r.flight()
	r.send(r.finished(nil))
	var sc net.Conn
	select {
	case sc = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("resumed connection not accepted")
	}
	conn, ok := sc.(*Conn)
	if !ok {
		t.Fatalf("accepted %T, want *dtlsx.Conn", sc)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	record := func(seq uint64, typ byte, body string) []byte {
		return r.keys.appendSealed(nil, typ, 1, seq, nil, []byte(body))
	}
	expect := func(want string) {
		t.Helper()
		buf := make([]byte, 64)
		n, err := conn.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("read %q, %v; want %q", buf[:n], err, want)
		}
	}

	one := record(1, contentApplicationData, "one")
	r.send(one)
	expect("one")
	r.send(one) // replayed: dropped
	tampered := record(2, contentApplicationData, "two?")
	tampered[len(tampered)-1] ^= 1
	r.send(tampered)                                    // fails authentication: dropped
	r.send(record(3, contentHandshake, "renegotiate?")) // no renegotiation: dropped
	r.send(append(record(4, contentApplicationData, "four"), record(2, contentApplicationData, "two")...))
	expect("four")
	expect("two") // late but inside the window, and two records in one datagram

	if _, err := conn.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	recs := r.read()
	typ, pt, seq, err := r.keys.openRecord(recs[0], 0)
	if err != nil || typ != contentApplicationData || string(pt) != "pong" || seq <= flightSeqs[2] {
		t.Fatalf("server record: type %d %q seq %d (Finished was %d): %v", typ, pt, seq, flightSeqs[2], err)
	}

	st, ok := conn.ConnectionState()
	if !ok || !bytes.Equal(st.SessionID, session.ID) {
		t.Fatalf("connection state: ok %v, session %x; want %x", ok, st.SessionID, session.ID)
	}

	r.send(record(5, contentAlert, "\x01\x00")) // close_notify
	if _, err := conn.Read(make([]byte, 64)); !errors.Is(err, io.EOF) {
		t.Fatalf("after close_notify: %v, want EOF", err)
	}
	recs = r.read()
	typ, pt, _, err = r.keys.openRecord(recs[0], 0)
	if err != nil || typ != contentAlert || !bytes.Equal(pt, []byte{1, 0}) {
		t.Fatalf("server's answer to close_notify: type %d %x, %v", typ, pt, err)
	}
	if _, err := conn.Write([]byte("late")); err == nil {
		t.Fatal("write after close accepted")
	}
	if s := l.Stats(); s.ResumedFast != 1 || s.DecryptFailures != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestOwnRecordsOff: WithOwnRecords(false) hands the same resumption to
// pion's record layer.
func TestOwnRecordsOff(t *testing.T) {
	pki := newPKI(t)
	l := listen(t, WithCertificate(pki.server), WithSourceRate(0, 0), WithOwnRecords(false))
	accepted := acceptAll(t, l)
	session := cachedSession(t, l, dtls.RequireExtendedMasterSecret)
	(<-accepted).Close()
	r := newRawResumption(t, l, session, true)
	r.send(r.hello)
	r.flight()
	r.send(r.finished(nil))
	select {
	case sc := <-accepted:
		defer sc.Close()
		if _, ok := sc.(*dtls.Conn); !ok {
			t.Fatalf("accepted %T, want *dtls.Conn", sc)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("resumed connection not accepted")
	}
}

// TestReplayWindow checks the window against a model that remembers every
// sequence number: accepted once, and only within 64 of the highest.
func TestReplayWindow(t *testing.T) {
	var w replayWindow
	seen := map[uint64]bool{}
	var top uint64
	rng := rand.New(rand.NewPCG(7, 9))
	for i := range 200000 {
		base := uint64(i / 4)
		seq := base + rng.Uint64N(150)
		if rng.IntN(10) == 0 {
			seq = base - min(base, rng.Uint64N(100))
		}
		want := !seen[seq] && (len(seen) == 0 || seq > top || top-seq < 64)
		wantNewest := want && (len(seen) == 0 || seq > top)
		fresh, newest := w.accept(seq)
		if fresh != want || newest != wantNewest {
			t.Fatalf("op %d: seq %d (top %d): got %v/%v, want %v/%v", i, seq, top, fresh, newest, want, wantNewest)
		}
		if fresh {
			if len(seen) == 0 || seq > top {
				top = seq
			}
			seen[seq] = true
		}
	}
}
