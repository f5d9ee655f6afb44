package dtlsx

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"hash"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
)

// The listener's own abbreviated handshake. When the first ClientHello of
// a new association offers a session the SessionCache resolves, the
// association answers it itself (ServerHello, ChangeCipherSpec, Finished
// in one datagram), checks the client's Finished and only then builds a
// pion Conn from the finished state with dtls.ResumeWithOptions. pion's
// handshake machinery (flight FSM, handshake cache, per-message
// marshalling, retransmission timers) never runs for such a device.
// Anything this path does not handle before its first answer (an unknown
// suite, SRTP, a fragmented hello, a cookie, a session whose
// extended_master_secret differs from the client's offer, a client
// certificate policy) is left to pion's handshake unchanged.

// resumeState carries the fields pion/dtls v3 exports an established
// State with, under the same names and types (gob matches struct fields
// by name), so State.UnmarshalBinary imports what this path negotiated.
// Fields this path leaves at their zero value (IsClient, SRTP profile,
// negotiated protocol, and PeerCertificates: server sessions have none
// without client certificates, which this path leaves to pion) are left
// out: gob then sends a smaller type, which pion's decoder compiles
// faster. The import still costs a fresh gob decoder per handshake (see
// BenchmarkResumeImport), about what the skipped pion machinery costs.
type resumeState struct {
	RemoteSequenceNumber uint64
	HandshakeComplete    bool
	LocalEpoch           uint16
	RemoteEpoch          uint16
	LocalRandom          [randomLen]byte
	RemoteRandom         [randomLen]byte
	CipherSuiteID        uint16
	MasterSecret         []byte
	SequenceNumber       uint64
	IdentityHint         []byte
	SessionID            []byte
	LocalConnectionID    []byte
	RemoteConnectionID   []byte
}

// stateEncoder gob-encodes resumeState values. A gob stream starts with
// the type's description, which an Encoder sends once: the encoder keeps
// one stream open and prepends the description, captured at creation, to
// each value, so every handshake pays for the value alone.
type stateEncoder struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	enc    *gob.Encoder
	prefix []byte // the type description messages
}

func newStateEncoder() (*stateEncoder, error) {
	e := &stateEncoder{}
	e.enc = gob.NewEncoder(&e.buf)
	var probe resumeState
	if err := e.enc.Encode(&probe); err != nil {
		return nil, fmt.Errorf("dtlsx: state encoder: %w", err)
	}
	first := len(e.buf.Bytes())
	e.buf.Reset()
	if err := e.enc.Encode(&probe); err != nil {
		return nil, fmt.Errorf("dtlsx: state encoder: %w", err)
	}
	value := len(e.buf.Bytes())
	if value >= first {
		return nil, errors.New("dtlsx: state encoder: gob resent the type")
	}
	e.buf.Reset()
	// Encode wrote the same value twice: what the first call wrote
	// before it is the type description.
	e.enc = gob.NewEncoder(&e.buf)
	if err := e.enc.Encode(&probe); err != nil {
		return nil, fmt.Errorf("dtlsx: state encoder: %w", err)
	}
	e.prefix = clone(e.buf.Bytes()[:first-value])
	e.buf.Reset()
	return e, nil
}

// encode appends a complete gob stream holding s to dst.
func (e *stateEncoder) encode(dst []byte, s *resumeState) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.buf.Reset()
	err := e.enc.Encode(s)
	dst = append(append(dst, e.prefix...), e.buf.Bytes()...)
	clear(e.buf.Bytes())
	return dst, err
}

// Reasons an abbreviated handshake ends without a connection, for the
// counters and the debug log.
var (
	errFastTimeout   = errors.New("dtlsx: client Finished did not arrive in time")
	errFastFinished  = errors.New("dtlsx: client Finished verify_data mismatch")
	errFastAlert     = errors.New("dtlsx: client sent a fatal alert")
	errFastNewHello  = errors.New("dtlsx: client sent a different ClientHello")
	errFastMalformed = errors.New("dtlsx: client's flight is malformed")
)

// maxEarlyRecords bounds the application-data datagrams kept for pion
// when they overtake the client's Finished.
const maxEarlyRecords = 4

// fastResume is one abbreviated handshake in progress. Owned by the
// handshake worker running its association's step (one at a time).
type fastResume struct {
	a       *association
	session dtls.Session
	suite   fastSuite
	keys    *recordKeys
	hello   clientHello // aliases helloMsg
	// helloMsg is the accepted ClientHello message (DTLS header included).
	helloMsg       []byte
	serverRandom   [randomLen]byte
	serverHello    []byte
	serverFinished []byte
	clientVerify   []byte
	localCID       []byte // ours, nil when not negotiated
	remoteCID      []byte // the client's
	seq0, seq1     uint64 // next record sequence numbers in epochs 0 and 1
	lastSent       time.Time
	peerGap        time.Duration // after a resend triggered by the client
	deadline       time.Time     // the whole handshake's (WithHandshakeTimeout)
	interval       time.Duration // the current retransmission interval
	timer          *time.Timer   // retransmissions and the deadline
	timerDue       atomic.Bool   // set by timer, taken by poll
	ended          bool
	early          []*datagram
}

// startFast starts the listener's abbreviated handshake for session: it
// answers the ClientHello waiting in the inbox and leaves the rest to
// poll, which the handshake workers run when a datagram or the
// retransmission timer arrives. It reports false when pion must run the
// handshake instead (the ClientHello is then pushed back for it).
func (a *association) startFast(session dtls.Session) bool {
	l := a.l
	var d *datagram
	select {
	case d = <-a.inbox:
	default:
		return false // closed meanwhile: pion's handshake meets the same end
	}
	if err := a.acquireCPU(false); err != nil {
		a.pushback = append(a.pushback, d)
		return false
	}
	f := l.newFastResume(a, session, d.buf[:d.n])
	if f == nil {
		a.releaseCPU()
		a.pushback = append(a.pushback, d)
		return false
	}
	l.putDatagram(d)
	f.deadline = time.Now().Add(l.s.timeout)
	f.interval = l.s.flight
	if f.interval <= 0 {
		f.interval = time.Second
	}
	f.send(f.flight())
	a.releaseCPU()
	a.fast = f
	// One timer for both the retransmissions and the handshake deadline.
	f.timer = time.AfterFunc(min(f.interval, time.Until(f.deadline)), func() {
		f.timerDue.Store(true)
		l.schedule(a)
	})
	a.fastTimer.Store(f.timer)
	a.onWorkers.Store(true)
	// Datagrams (or a Close) that came while onWorkers was clear were not
	// scheduled; run poll for them now.
	if len(a.inbox) > 0 || a.isClosed() {
		l.schedule(a)
	}
	return true
}

// poll advances the abbreviated handshake with what arrived: the client's
// datagrams, the retransmission timer, or the association's Close.
func (f *fastResume) poll() {
	a, l := f.a, f.a.l
	if f.ended {
		return
	}
	if a.isClosed() {
		f.finish(nil, net.ErrClosed)
		return
	}
	for {
		var d *datagram
		select {
		case d = <-a.inbox:
		default:
		}
		if d == nil {
			break
		}
		if err := a.acquireCPU(false); err != nil {
			l.putDatagram(d)
			f.finish(nil, err)
			return
		}
		finSeq, rest, done, err := f.handle(d)
		if err != nil || !done {
			l.putDatagram(d)
			a.releaseCPU()
			if err != nil {
				f.finish(nil, err)
				return
			}
			continue
		}
		if len(rest) > 0 {
			// Records behind the Finished (application data) are the
			// connection's.
			r := l.getDatagram()
			r.n, r.from = copy(r.buf[:], rest), d.from
			f.early = append([]*datagram{r}, f.early...)
		}
		l.putDatagram(d)
		conn, err := f.establish(finSeq)
		f.finish(conn, err)
		return
	}
	if f.timerDue.Swap(false) {
		left := time.Until(f.deadline)
		if left <= 0 {
			f.finish(nil, errFastTimeout)
			return
		}
		f.send(f.flight())
		f.interval = min(2*f.interval, time.Minute)
		f.timer.Reset(min(f.interval, left))
	}
}

// finish ends the abbreviated handshake: it publishes conn, or counts err
// and closes the association.
func (f *fastResume) finish(conn net.Conn, err error) {
	a, l := f.a, f.a.l
	f.ended = true
	f.timer.Stop()
	a.onWorkers.Store(false)
	a.handshaking.Store(false)
	a.releaseCPU()
	if err != nil {
		switch {
		case errors.Is(err, errRecord) || errors.Is(err, errFastFinished):
			l.counters.decryptFailures.Add(1)
		case errors.Is(err, errFastTimeout):
			l.counters.timeouts.Add(1)
		default:
			l.counters.failures.Add(1)
		}
		l.s.log.Debug("dtlsx: resumption failed", "peer", a.addr, "err", err)
		for _, e := range f.early {
			l.putDatagram(e)
		}
		f.early = nil
		a.endHandshake()
		_ = a.Close()
		return
	}
	l.counters.resumed.Add(1)
	l.counters.cookieSkipped.Add(1)
	l.counters.resumedFast.Add(1)
	a.publishAsync(conn)
}

// newFastResume checks that datagram is a ClientHello this path serves
// for session and prepares the answer; nil means pion's handshake.
func (l *Listener) newFastResume(a *association, session dtls.Session, datagram []byte) *fastResume {
	rec, rest, err := splitRecord(datagram, 0)
	if err != nil || len(rest) != 0 || rec[0] != contentHandshake || binary.BigEndian.Uint16(rec[3:5]) != 0 {
		return nil
	}
	f := &fastResume{a: a, session: session, helloMsg: clone(rec[recordHeaderLen:]), seq0: 0, seq1: 0}
	if f.hello, err = parseClientHello(f.helloMsg); err != nil {
		return nil
	}
	h := &f.hello
	if h.major != dtls12Major || h.minor != dtls12Minr || h.messageSeq != 0 || len(h.cookie) != 0 ||
		h.srtp || h.badReneg || !bytes.Equal(h.sessionID, session.ID) {
		return nil
	}
	if !l.sessionResumable(&session) || h.ems != session.ExtendedMasterSecret || !h.offers(session.CipherSuiteID) {
		return nil // pion decides: a full handshake, or the RFC 7627 5.3 abort
	}
	suite, ok := fastSuiteFor(session.CipherSuiteID)
	if !ok {
		return nil
	}
	f.suite = suite
	binary.BigEndian.PutUint32(f.serverRandom[:4], uint32(time.Now().Unix()))
	if _, err := rand.Read(f.serverRandom[4:]); err != nil {
		return nil
	}
	mac := suite.newPRF(session.Secret)
	if f.keys, err = deriveKeys(suite, mac, h.random, f.serverRandom[:]); err != nil {
		return nil
	}
	if h.cidOffered && l.s.cidLen > 0 {
		f.localCID = a.newCID()
		f.remoteCID = clone(h.cid)
	}
	f.serverHello = appendServerHello(nil, h, f.serverRandom[:], suite.id, session.ExtendedMasterSecret, f.localCID)
	th := suite.newHash()
	th.Write(f.helloMsg)
	th.Write(f.serverHello)
	f.serverFinished = appendFinished(nil, 1, verifyData(mac, "server finished", transcript(th)))
	th.Write(f.serverFinished)
	f.clientVerify = verifyData(mac, "client finished", transcript(th))
	return f
}

func transcript(h hash.Hash) []byte { return h.Sum(nil) }

// sessionResumable applies pion's server-side rules for a cached session
// (pion's Session.usable) and this listener's configuration.
func (l *Listener) sessionResumable(s *dtls.Session) bool {
	if s.Version != 1 || s.IsClient || len(s.ID) == 0 || len(s.Secret) != masterSecretLen || len(s.PeerCertificates) > 0 {
		return false
	}
	if l.s.clientCAs != nil {
		return false // pion keeps no sessions of certificate-authenticated clients
	}
	if !slices.Contains(l.s.cipherSuites(), s.CipherSuiteID) {
		return false
	}
	suite, ok := fastSuiteFor(s.CipherSuiteID)
	if !ok {
		return false
	}
	if !suite.psk {
		return len(l.s.certs) > 0
	}
	if l.s.psk == nil {
		return false
	}
	key, err := l.s.psk.PSK(s.IdentityHint)
	if err != nil {
		return false
	}
	sum := sha256.Sum256(key)
	clear(key)
	return subtle.ConstantTimeCompare(sum[:], s.PSKHash[:]) == 1
}

// flight builds the server's flight with fresh record sequence numbers:
// ServerHello and ChangeCipherSpec in epoch 0, Finished in epoch 1.
func (f *fastResume) flight() []byte {
	b := make([]byte, 0, 3*recordHeaderLen+len(f.serverHello)+1+len(f.serverFinished)+8+16+len(f.remoteCID)+1)
	b = appendPlainRecord(b, contentHandshake, f.seq0, f.serverHello)
	b = appendPlainRecord(b, contentChangeCipherSpec, f.seq0+1, []byte{1})
	f.seq0 += 2
	b = f.keys.appendSealed(b, contentHandshake, 1, f.seq1, f.remoteCID, f.serverFinished)
	f.seq1++
	return b
}

func (f *fastResume) send(b []byte) {
	f.lastSent = time.Now()
	if _, err := f.a.l.writeTo(b, f.a.udpAddr); err != nil {
		f.a.l.s.log.Debug("dtlsx: resumption flight not sent", "peer", f.a.addr, "err", err)
	}
}

// alert sends a fatal alert: in epoch 1 when the client holds the keys,
// else in the clear.
func (f *fastResume) alert(desc byte, sealed bool) {
	body := []byte{alertLevelFatal, desc}
	var b []byte
	if sealed {
		b = f.keys.appendSealed(nil, contentAlert, 1, f.seq1, f.remoteCID, body)
		f.seq1++
	} else {
		b = appendPlainRecord(nil, contentAlert, f.seq0, body)
		f.seq0++
	}
	f.send(b)
}

// handle processes one datagram from the client. done reports the
// verified Finished: its record sequence number and the bytes behind it.
func (f *fastResume) handle(d *datagram) (finSeq uint64, rest []byte, done bool, err error) {
	b := d.buf[:d.n]
	cidLen := len(f.localCID)
	for len(b) > 0 {
		var rec []byte
		rec, b, err = splitRecord(b, cidLen)
		if err != nil {
			return 0, nil, false, nil // not DTLS we can read: dropped, as pion would
		}
		epoch := binary.BigEndian.Uint16(rec[3:5])
		switch {
		case epoch == 0 && rec[0] == contentHandshake:
			if !bytes.Equal(rec[recordHeaderLen:], f.helloMsg) {
				if _, perr := parseClientHello(rec[recordHeaderLen:]); perr == nil {
					return 0, nil, false, errFastNewHello
				}
				continue
			}
			// Our flight was lost: answer again, at once the first time,
			// then no more often than the retransmission interval.
			if now := time.Now(); now.Sub(f.lastSent) >= f.peerGap {
				f.send(f.flight())
				f.peerGap = max(time.Second, 2*f.peerGap)
			}
		case epoch == 0 && rec[0] == contentAlert:
			if len(rec) >= recordHeaderLen+2 && rec[recordHeaderLen] == alertLevelFatal {
				return 0, nil, false, fmt.Errorf("alert %d: %w", rec[recordHeaderLen+1], errFastAlert)
			}
		case epoch == 1:
			// pion clients send the Finished of a resumption without the
			// connection id they just negotiated (their later records carry
			// it); accept that form for the Finished alone.
			plainForm := rec[0] != contentCID
			openCID := cidLen
			if plainForm {
				openCID = 0
			}
			typ, pt, seq, oerr := f.keys.openRecord(rec, openCID)
			if oerr == nil && plainForm && cidLen > 0 && typ != contentHandshake {
				continue // RFC 9146 3: dropped, as pion drops it
			}
			if oerr != nil {
				if f.a.reconnect {
					continue // the established association's traffic reaches us too
				}
				f.alert(alertBadRecordMAC[1], false)
				return 0, nil, false, oerr
			}
			switch typ {
			case contentHandshake:
				if err := f.checkFinished(pt); err != nil {
					return 0, nil, false, err
				}
				return seq, b, true, nil
			case contentApplicationData:
				if len(f.early) < maxEarlyRecords {
					e := f.a.l.getDatagram()
					e.n, e.from = copy(e.buf[:], rec), d.from
					f.early = append(f.early, e)
				}
			case contentAlert:
				if len(pt) == 2 && pt[0] == alertLevelFatal {
					return 0, nil, false, fmt.Errorf("alert %d: %w", pt[1], errFastAlert)
				}
			}
		}
	}
	return 0, nil, false, nil
}

// checkFinished compares the client's Finished with the expected one in
// constant time.
func (f *fastResume) checkFinished(msg []byte) error {
	if len(msg) != handshakeHeaderLen+verifyDataLen || msg[0] != handshakeFinished ||
		!bytes.Equal(msg[1:4], []byte{0, 0, verifyDataLen}) || binary.BigEndian.Uint16(msg[4:6]) != 1 ||
		!bytes.Equal(msg[6:12], []byte{0, 0, 0, 0, 0, verifyDataLen}) {
		f.alert(alertDecryptError, true)
		return fmt.Errorf("%d-byte handshake message where Finished was due: %w", len(msg), errFastMalformed)
	}
	if subtle.ConstantTimeCompare(msg[handshakeHeaderLen:], f.clientVerify) != 1 {
		f.alert(alertDecryptError, true)
		return errFastFinished
	}
	return nil
}

// state exports the finished handshake in pion's State format.
func (f *fastResume) state(finSeq uint64) (*dtls.State, error) {
	s := &f.session
	rs := resumeState{
		RemoteSequenceNumber: finSeq + 1,
		HandshakeComplete:    true,
		LocalEpoch:           1,
		RemoteEpoch:          1,
		LocalRandom:          f.serverRandom,
		CipherSuiteID:        uint16(s.CipherSuiteID),
		MasterSecret:         s.Secret,
		SequenceNumber:       f.seq1,
		IdentityHint:         s.IdentityHint,
		SessionID:            s.ID,
		LocalConnectionID:    f.localCID,
		RemoteConnectionID:   f.remoteCID,
	}
	copy(rs.RemoteRandom[:], f.hello.random)
	enc, err := f.a.l.stateEncoder.encode(make([]byte, 0, 512), &rs)
	if err != nil {
		return nil, fmt.Errorf("dtlsx: export resumed state: %w", err)
	}
	st := &dtls.State{}
	err = st.UnmarshalBinary(enc)
	clear(enc)
	if err != nil {
		return nil, fmt.Errorf("dtlsx: import resumed state: %w", err)
	}
	return st, nil
}

// establish turns the verified handshake into a pion Conn over the
// association.
func (f *fastResume) establish(finSeq uint64) (net.Conn, error) {
	a, l := f.a, f.a.l
	if l.s.verifyConnect != nil {
		check, err := f.state(finSeq) // pion hands the callback a copy too
		if err != nil {
			return nil, err
		}
		if err := l.s.verifyConnect(check); err != nil {
			f.alert(alertBadCertificate, true)
			return nil, fmt.Errorf("dtlsx: verify connection: %w", err)
		}
	}
	a.pushback = append(a.pushback, f.early...)
	f.early = nil
	a.handshaking.Store(false)
	if l.s.ownRecords {
		return newConn(f, finSeq), nil
	}
	st, err := f.state(finSeq)
	if err != nil {
		return nil, err
	}
	opts := append(slices.Clip(l.resumeOpts), dtls.WithLoggerFactory(a))
	conn, err := dtls.ResumeWithOptions(st, a, a.udpAddr, opts...)
	if err != nil {
		return nil, fmt.Errorf("dtlsx: resume: %w", err)
	}
	// With a resumed state pion's handshake is already finished: this
	// starts the Conn's reader and returns.
	if err := conn.HandshakeContext(l.ctx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("dtlsx: resumed conn: %w", err)
	}
	return conn, nil
}
