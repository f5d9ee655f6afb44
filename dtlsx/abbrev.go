package dtlsx

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"slices"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/ccm"
	"golang.org/x/crypto/chacha20poly1305"
)

// This file holds the wire formats and the cryptography of the abbreviated
// (resumed) DTLS 1.2 handshake the listener runs itself (see
// association.resumeFast): ClientHello parsing, ServerHello and Finished
// construction, the TLS 1.2 PRF, key expansion and AEAD record
// protection, with and without RFC 9146 connection ids.

// More DTLS 1.2 wire constants (RFC 5246, RFC 6347, RFC 9146).
const (
	contentChangeCipherSpec = 20
	contentAlert            = 21
	contentApplicationData  = 23

	handshakeServerHello = 2
	handshakeFinished    = 20

	extensionUseSRTP        = 14
	extensionEMS            = 23
	extensionConnectionID   = 54
	extensionRenegotiation  = 0xff01
	scsvRenegotiation       = 0x00ff
	verifyDataLen           = 12
	randomLen               = 32
	masterSecretLen         = 48
	maxSequenceNumber       = 1<<48 - 1
	alertLevelFatal         = 2
	alertDecryptError       = 51
	alertBadCertificate     = 42
	alertHandshakeFailure   = 40
	dtls12Major, dtls12Minr = 0xfe, 0xfd
)

// errHello wraps every reason a ClientHello is not parsed.
var errHello = errors.New("malformed ClientHello")

// clientHello is what the abbreviated handshake needs from a ClientHello.
// Slices alias the datagram it was parsed from.
type clientHello struct {
	// msg is the whole handshake message, DTLS header included, as it
	// enters the handshake transcript (RFC 6347 4.2.6).
	msg          []byte
	messageSeq   uint16
	major, minor byte
	random       []byte
	sessionID    []byte
	cookie       []byte
	suites       []byte // pairs of bytes
	ems          bool
	renegotiate  bool // renegotiation_info (empty) or the SCSV
	badReneg     bool // renegotiation_info with a non-empty body
	srtp         bool
	cidOffered   bool
	cid          []byte
}

// offers reports whether the client listed suite.
func (h *clientHello) offers(suite dtls.CipherSuiteID) bool {
	for i := 0; i+1 < len(h.suites); i += 2 {
		if dtls.CipherSuiteID(binary.BigEndian.Uint16(h.suites[i:])) == suite {
			return true
		}
	}
	return false
}

// helloReader walks a ClientHello body, remembering the first error.
type helloReader struct {
	b   []byte
	off int // offset of b[0] in the handshake message, for errors
	err error
}

func (r *helloReader) take(n int, field string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.err = fmt.Errorf("%s at offset %d needs %d bytes, %d left: %w", field, r.off, n, len(r.b), errHello)
		return nil
	}
	v := r.b[:n:n]
	r.b, r.off = r.b[n:], r.off+n
	return v
}

func (r *helloReader) u8(field string) int {
	if v := r.take(1, field); v != nil {
		return int(v[0])
	}
	return 0
}

func (r *helloReader) u16(field string) int {
	if v := r.take(2, field); v != nil {
		return int(binary.BigEndian.Uint16(v))
	}
	return 0
}

// parseClientHello parses one complete, unfragmented ClientHello handshake
// message (DTLS handshake header included) that fills msg exactly.
func parseClientHello(msg []byte) (clientHello, error) {
	var h clientHello
	if len(msg) < handshakeHeaderLen {
		return h, fmt.Errorf("handshake header of %d bytes: %w", len(msg), errHello)
	}
	if msg[0] != handshakeClientHello {
		return h, fmt.Errorf("handshake type %d at offset 0: %w", msg[0], errHello)
	}
	length := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
	fragOff := int(msg[6])<<16 | int(msg[7])<<8 | int(msg[8])
	fragLen := int(msg[9])<<16 | int(msg[10])<<8 | int(msg[11])
	if fragOff != 0 || fragLen != length || len(msg) != handshakeHeaderLen+length {
		return h, fmt.Errorf("fragment %d+%d of %d in %d bytes: not one whole message: %w", fragOff, fragLen, length, len(msg), errHello)
	}
	h.msg = msg
	h.messageSeq = binary.BigEndian.Uint16(msg[4:6])
	r := &helloReader{b: msg[handshakeHeaderLen:], off: handshakeHeaderLen}
	if v := r.take(2, "client_version"); v != nil {
		h.major, h.minor = v[0], v[1]
	}
	h.random = r.take(randomLen, "random")
	if n := r.u8("session_id length"); n <= 32 {
		h.sessionID = r.take(n, "session_id")
	} else if r.err == nil {
		r.err = fmt.Errorf("session_id length %d at offset %d: %w", n, r.off-1, errHello)
	}
	h.cookie = r.take(r.u8("cookie length"), "cookie")
	if n := r.u16("cipher_suites length"); r.err == nil && (n < 2 || n%2 != 0) {
		r.err = fmt.Errorf("cipher_suites length %d at offset %d: %w", n, r.off-2, errHello)
	} else {
		h.suites = r.take(n, "cipher_suites")
	}
	methods := r.take(r.u8("compression_methods length"), "compression_methods")
	if r.err != nil {
		return clientHello{}, r.err
	}
	nullCompression := false
	for _, m := range methods {
		nullCompression = nullCompression || m == 0
	}
	if !nullCompression {
		return clientHello{}, fmt.Errorf("compression_methods %x lack null: %w", methods, errHello)
	}
	for i := 0; i+1 < len(h.suites); i += 2 {
		if binary.BigEndian.Uint16(h.suites[i:]) == scsvRenegotiation {
			h.renegotiate = true
		}
	}
	if len(r.b) == 0 {
		return h, nil // no extensions
	}
	if err := h.parseExtensions(r); err != nil {
		return clientHello{}, err
	}
	return h, nil
}

// maxExtensions bounds how many extensions a ClientHello may carry here;
// more is not a hello this path serves.
const maxExtensions = 64

func (h *clientHello) parseExtensions(r *helloReader) error {
	total := r.u16("extensions length")
	if r.err == nil && total != len(r.b) {
		return fmt.Errorf("extensions length %d at offset %d, %d bytes follow: %w", total, r.off-2, len(r.b), errHello)
	}
	var seen [maxExtensions]uint16
	n := 0
	for r.err == nil && len(r.b) > 0 {
		at := r.off
		typ := uint16(r.u16("extension type"))
		data := r.take(r.u16("extension length"), "extension data")
		if r.err != nil {
			break
		}
		for _, s := range seen[:n] {
			if s == typ {
				return fmt.Errorf("extension %d repeated at offset %d: %w", typ, at, errHello)
			}
		}
		if n == len(seen) {
			return fmt.Errorf("more than %d extensions at offset %d: %w", maxExtensions, at, errHello)
		}
		seen[n] = typ
		n++
		switch typ {
		case extensionEMS:
			if len(data) != 0 {
				return fmt.Errorf("extended_master_secret with %d bytes at offset %d: %w", len(data), at, errHello)
			}
			h.ems = true
		case extensionRenegotiation:
			if len(data) == 0 || int(data[0]) != len(data)-1 {
				return fmt.Errorf("renegotiation_info of %d bytes at offset %d: %w", len(data), at, errHello)
			}
			h.renegotiate = true
			h.badReneg = data[0] != 0
		case extensionConnectionID:
			if len(data) == 0 || int(data[0]) != len(data)-1 {
				return fmt.Errorf("connection_id of %d bytes at offset %d: %w", len(data), at, errHello)
			}
			h.cidOffered = true
			h.cid = data[1:]
		case extensionUseSRTP:
			h.srtp = true
		}
	}
	return r.err
}

// fastSuite is a cipher suite the abbreviated handshake can protect
// records with: the AEAD suites dtlsx offers (RFC 5288, 6655, 7251, 7905).
type fastSuite struct {
	id       dtls.CipherSuiteID
	psk      bool
	sha384   bool // PRF hash SHA-384 instead of SHA-256
	keyLen   int
	ivLen    int // implicit nonce part: 4 (GCM, CCM) or 12 (ChaCha20)
	tagLen   int
	kind     aeadKind
	explicit bool // 8-byte explicit nonce in each record (GCM, CCM)
}

type aeadKind uint8

const (
	aeadGCM aeadKind = iota + 1
	aeadCCM
	aeadChaCha
)

// fastSuiteFor describes id, or reports false for a suite the listener
// leaves to pion (CBC, unknown).
func fastSuiteFor(id dtls.CipherSuiteID) (fastSuite, bool) {
	gcm := fastSuite{id: id, keyLen: 16, ivLen: 4, tagLen: 16, kind: aeadGCM, explicit: true}
	ccm16 := fastSuite{id: id, keyLen: 16, ivLen: 4, tagLen: 16, kind: aeadCCM, explicit: true}
	chacha := fastSuite{id: id, keyLen: 32, ivLen: 12, tagLen: 16, kind: aeadChaCha}
	switch id {
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:
		return gcm, true
	case dtls.TLS_PSK_WITH_AES_128_GCM_SHA256:
		gcm.psk = true
		return gcm, true
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:
		gcm.keyLen, gcm.sha384 = 32, true
		return gcm, true
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM:
		return ccm16, true
	case dtls.TLS_PSK_WITH_AES_128_CCM:
		ccm16.psk = true
		return ccm16, true
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8:
		ccm16.tagLen = 8
		return ccm16, true
	case dtls.TLS_PSK_WITH_AES_128_CCM_8:
		ccm16.tagLen, ccm16.psk = 8, true
		return ccm16, true
	case dtls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, dtls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:
		return chacha, true
	case dtls.TLS_PSK_WITH_CHACHA20_POLY1305_SHA256:
		chacha.psk = true
		return chacha, true
	}
	return fastSuite{}, false
}

func (s *fastSuite) newHash() hash.Hash {
	if s.sha384 {
		return sha512.New384()
	}
	return sha256.New()
}

func (s *fastSuite) hashFunc() func() hash.Hash {
	if s.sha384 {
		return sha512.New384
	}
	return sha256.New
}

func (s *fastSuite) newAEAD(key []byte) (cipher.AEAD, error) {
	switch s.kind {
	case aeadGCM:
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(b)
	case aeadCCM:
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		return ccm.NewCCM(b, s.tagLen, 12)
	case aeadChaCha:
		return chacha20poly1305.New(key)
	}
	return nil, fmt.Errorf("suite %v: no AEAD", s.id)
}

// prf fills out with the TLS 1.2 PRF (RFC 5246 5): P_hash(secret, label +
// seed1 + seed2), mac being the suite's HMAC keyed with the secret.
func prf(mac hash.Hash, label string, seed1, seed2, out []byte) {
	var abuf, chunk [sha512.Size]byte
	lb := []byte(label) // once: each conversion handed to the hash escapes
	mac.Reset()
	mac.Write(lb)
	mac.Write(seed1)
	mac.Write(seed2)
	a := mac.Sum(abuf[:0]) // A(1)
	for len(out) > 0 {
		mac.Reset()
		mac.Write(a)
		mac.Write(lb)
		mac.Write(seed1)
		mac.Write(seed2)
		out = out[copy(out, mac.Sum(chunk[:0])):]
		mac.Reset()
		mac.Write(a)
		a = mac.Sum(abuf[:0])
	}
}

// newPRF returns the HMAC the suite's PRF runs on, keyed with secret.
func (s *fastSuite) newPRF(secret []byte) hash.Hash { return hmac.New(s.hashFunc(), secret) }

// recordKeys protect the records of one resumed session, seen from the
// server: seal with the server write key, open with the client's.
type recordKeys struct {
	suite          fastSuite
	seal, open     cipher.AEAD
	sealIV, openIV []byte
}

// deriveKeys runs the key expansion (RFC 5246 6.3) for a server; mac is
// the PRF keyed with the master secret.
func deriveKeys(suite fastSuite, mac hash.Hash, clientRandom, serverRandom []byte) (*recordKeys, error) {
	block := make([]byte, 2*suite.keyLen+2*suite.ivLen)
	prf(mac, "key expansion", serverRandom, clientRandom, block)
	clientKey, serverKey := block[:suite.keyLen], block[suite.keyLen:2*suite.keyLen]
	ivs := block[2*suite.keyLen:]
	k := &recordKeys{suite: suite, openIV: ivs[:suite.ivLen], sealIV: ivs[suite.ivLen:]}
	var err error
	if k.seal, err = suite.newAEAD(serverKey); err != nil {
		return nil, err
	}
	if k.open, err = suite.newAEAD(clientKey); err != nil {
		return nil, err
	}
	return k, nil
}

// nonce builds the per-record nonce: implicit salt + epoch||seq (GCM,
// CCM: RFC 5288 3, RFC 6655 3) or the IV XOR epoch||seq (ChaCha20:
// RFC 7905 2).
func (k *recordKeys) nonce(dst *[12]byte, iv []byte, epochSeq uint64) {
	if k.suite.explicit {
		copy(dst[:4], iv)
		binary.BigEndian.PutUint64(dst[4:], epochSeq)
		return
	}
	copy(dst[:], iv)
	for i := 0; i < 8; i++ {
		dst[4+i] ^= byte(epochSeq >> (56 - 8*i))
	}
}

// additionalData appends the AEAD additional data of a record: RFC 5246
// 6.2.3.3 with the DTLS epoch||seq, or RFC 9146 5.3 for tls12_cid records.
func additionalData(dst []byte, typ byte, epochSeq uint64, cid []byte, length int) []byte {
	if len(cid) == 0 {
		dst = binary.BigEndian.AppendUint64(dst, epochSeq)
		dst = append(dst, typ, dtls12Major, dtls12Minr)
		return binary.BigEndian.AppendUint16(dst, uint16(length))
	}
	dst = append(dst, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, contentCID, byte(len(cid)), contentCID, dtls12Major, dtls12Minr)
	dst = binary.BigEndian.AppendUint64(dst, epochSeq)
	dst = append(dst, cid...)
	return binary.BigEndian.AppendUint16(dst, uint16(length))
}

func epochSeq(epoch uint16, seq uint64) uint64 {
	return uint64(epoch)<<48 | seq&maxSequenceNumber
}

// appendPlainRecord appends an unprotected (epoch 0) record.
func appendPlainRecord(dst []byte, typ byte, seq uint64, body []byte) []byte {
	dst = append(dst, typ, dtls12Major, dtls12Minr)
	dst = binary.BigEndian.AppendUint64(dst, epochSeq(0, seq))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(body)))
	return append(dst, body...)
}

// appendSealed appends payload as a protected record of typ. With cid
// (the peer's connection id) it is a tls12_cid record whose inner
// plaintext carries the real type (RFC 9146 4).
func (k *recordKeys) appendSealed(dst []byte, typ byte, epoch uint16, seq uint64, cid, payload []byte) []byte {
	es := epochSeq(epoch, seq)
	inner := len(payload)
	outer := typ
	if len(cid) > 0 {
		inner++ // the real content type follows the payload
		outer = contentCID
	}
	explicit := 0
	if k.suite.explicit {
		explicit = 8
	}
	dst = slices.Grow(dst, recordHeaderLen+len(cid)+explicit+inner+k.suite.tagLen)
	dst = append(dst, outer, dtls12Major, dtls12Minr)
	dst = binary.BigEndian.AppendUint64(dst, es)
	dst = append(dst, cid...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(explicit+inner+k.suite.tagLen))
	if explicit > 0 {
		dst = binary.BigEndian.AppendUint64(dst, es)
	}
	// The plaintext is laid out where its ciphertext goes and sealed in
	// place (the AEAD allows exact overlap): no copy of the payload.
	at := len(dst)
	dst = append(dst, payload...)
	if len(cid) > 0 {
		dst = append(dst, typ)
	}
	var nonce [12]byte
	k.nonce(&nonce, k.sealIV, es)
	var adBuf [64]byte
	ad := additionalData(adBuf[:0], typ, es, cid, inner)
	return k.seal.Seal(dst[:at], nonce[:], dst[at:], ad)
}

// errRecord wraps every reason a protected record is refused.
var errRecord = errors.New("protected record refused")

// openRecord authenticates and decrypts one protected record from the
// client (header included). cidLen is the length of the connection id
// this side issued (0: none, and a tls12_cid record is refused). It
// returns the real content type, the plaintext (in a new buffer) and the
// record's sequence number.
func (k *recordKeys) openRecord(rec []byte, cidLen int) (byte, []byte, uint64, error) {
	return k.openRecordTo(nil, rec, cidLen)
}

// openRecordTo is openRecord with the plaintext appended to dst, so a
// reader that consumes each record before the next can reuse one buffer.
func (k *recordKeys) openRecordTo(dst, rec []byte, cidLen int) (byte, []byte, uint64, error) {
	if len(rec) < recordHeaderLen {
		return 0, nil, 0, fmt.Errorf("record of %d bytes: %w", len(rec), errRecord)
	}
	typ := rec[0]
	es := binary.BigEndian.Uint64(rec[3:11])
	var cid []byte
	hdr := recordHeaderLen
	if typ == contentCID {
		if cidLen == 0 || len(rec) < 11+cidLen+2 {
			return 0, nil, 0, fmt.Errorf("tls12_cid record of %d bytes: %w", len(rec), errRecord)
		}
		cid = rec[11 : 11+cidLen]
		hdr = 11 + cidLen + 2
	} else if cidLen > 0 {
		// RFC 9146 3: once negotiated, protected records carry the id.
		return 0, nil, 0, fmt.Errorf("record type %d without the negotiated connection id: %w", typ, errRecord)
	}
	body := rec[hdr:]
	if int(binary.BigEndian.Uint16(rec[hdr-2:hdr])) != len(body) {
		return 0, nil, 0, fmt.Errorf("record length field %d, %d bytes: %w", binary.BigEndian.Uint16(rec[hdr-2:hdr]), len(body), errRecord)
	}
	var nonce [12]byte
	if k.suite.explicit {
		if len(body) < 8 {
			return 0, nil, 0, fmt.Errorf("record of %d bytes has no explicit nonce: %w", len(body), errRecord)
		}
		copy(nonce[:4], k.openIV)
		copy(nonce[4:], body[:8])
		body = body[8:]
	} else {
		k.nonce(&nonce, k.openIV, es)
	}
	if len(body) < k.suite.tagLen {
		return 0, nil, 0, fmt.Errorf("ciphertext of %d bytes is shorter than the tag: %w", len(body), errRecord)
	}
	var adBuf [64]byte
	ad := additionalData(adBuf[:0], typ, es, cid, len(body)-k.suite.tagLen)
	if dst == nil {
		dst = make([]byte, 0, len(body))
	}
	pt, err := k.open.Open(dst, nonce[:], body, ad)
	if err != nil {
		return 0, nil, 0, fmt.Errorf("record %d: %v: %w", es&maxSequenceNumber, err, errRecord)
	}
	if cid != nil {
		i := len(pt) - 1
		for i >= 0 && pt[i] == 0 {
			i--
		}
		if i < 0 {
			return 0, nil, 0, fmt.Errorf("tls12_cid inner plaintext without a content type: %w", errRecord)
		}
		typ, pt = pt[i], pt[:i]
	}
	return typ, pt, es & maxSequenceNumber, nil
}

// splitRecord cuts the first record off a datagram. cidLen is the length
// of the connection id tls12_cid records carry (0: such records are not
// expected and end the datagram).
func splitRecord(b []byte, cidLen int) (rec, rest []byte, err error) {
	if len(b) < recordHeaderLen {
		return nil, nil, fmt.Errorf("%d bytes left: %w", len(b), errShortRecord)
	}
	lenAt := 11
	if b[0] == contentCID {
		if cidLen == 0 {
			return nil, nil, fmt.Errorf("tls12_cid record without a connection id: %w", errShortRecord)
		}
		lenAt = 11 + cidLen
		if len(b) < lenAt+2 {
			return nil, nil, fmt.Errorf("tls12_cid header of %d bytes: %w", len(b), errShortRecord)
		}
	}
	n := lenAt + 2 + int(binary.BigEndian.Uint16(b[lenAt:lenAt+2]))
	if n > len(b) {
		return nil, nil, fmt.Errorf("record of %d bytes, %d in the datagram: %w", n, len(b), errShortRecord)
	}
	return b[:n], b[n:], nil
}

// appendHandshakeHeader appends an unfragmented DTLS handshake header.
func appendHandshakeHeader(dst []byte, typ byte, seq uint16, length int) []byte {
	l := []byte{byte(length >> 16), byte(length >> 8), byte(length)}
	dst = append(dst, typ)
	dst = append(dst, l...)
	dst = binary.BigEndian.AppendUint16(dst, seq)
	dst = append(dst, 0, 0, 0)
	return append(dst, l...)
}

// appendServerHello appends the ServerHello of a resumption (RFC 5246
// 7.4.1.3) as a DTLS handshake message with message_seq 0. Extensions
// are answered only when the client sent them: renegotiation_info (RFC
// 5746 3.6), extended_master_secret (RFC 7627 5.2) and connection_id
// (RFC 9146 3) with cid, this side's id (nil when not negotiated).
func appendServerHello(dst []byte, h *clientHello, random []byte, suite dtls.CipherSuiteID, ems bool, cid []byte) []byte {
	var ext []byte
	if h.renegotiate {
		ext = append(ext, 0xff, 0x01, 0, 1, 0)
	}
	if ems {
		ext = append(ext, 0, extensionEMS, 0, 0)
	}
	if cid != nil {
		ext = append(ext, 0, extensionConnectionID)
		ext = binary.BigEndian.AppendUint16(ext, uint16(1+len(cid)))
		ext = append(ext, byte(len(cid)))
		ext = append(ext, cid...)
	}
	n := 2 + randomLen + 1 + len(h.sessionID) + 2 + 1
	if ext != nil {
		n += 2 + len(ext)
	}
	dst = appendHandshakeHeader(dst, handshakeServerHello, 0, n)
	dst = append(dst, dtls12Major, dtls12Minr)
	dst = append(dst, random...)
	dst = append(dst, byte(len(h.sessionID)))
	dst = append(dst, h.sessionID...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(suite))
	dst = append(dst, 0) // null compression
	if ext != nil {
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(ext)))
		dst = append(dst, ext...)
	}
	return dst
}

// appendFinished appends a Finished handshake message.
func appendFinished(dst []byte, seq uint16, verifyData []byte) []byte {
	dst = appendHandshakeHeader(dst, handshakeFinished, seq, len(verifyData))
	return append(dst, verifyData...)
}

// verifyData computes a Finished's verify_data (RFC 5246 7.4.9) over the
// transcript hash sum; mac is the PRF keyed with the master secret.
func verifyData(mac hash.Hash, label string, sum []byte) []byte {
	out := make([]byte, verifyDataLen)
	prf(mac, label, sum, nil, out)
	return out
}
