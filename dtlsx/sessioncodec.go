package dtlsx

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/pion/dtls/v3"
)

const sessionCodecVersion = 1

// errBadSession wraps every decoding failure of a stored session.
var errBadSession = errors.New("malformed session record")

// appendSession encodes s (the master secret included) for sealing. The
// layout is private to this package and versioned by its first byte.
func appendSession(dst []byte, s *dtls.Session) []byte {
	var flags byte
	if s.IsClient {
		flags |= 1
	}
	if s.ExtendedMasterSecret {
		flags |= 2
	}
	dst = append(dst, sessionCodecVersion, flags, s.Version)
	dst = binary.BigEndian.AppendUint16(dst, uint16(s.CipherSuiteID))
	dst = append(dst, byte(len(s.ID)))
	dst = append(dst, s.ID...)
	dst = append(dst, byte(len(s.Secret)))
	dst = append(dst, s.Secret...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s.IdentityHint)))
	dst = append(dst, s.IdentityHint...)
	dst = append(dst, s.PSKHash[:]...)
	dst = append(dst, byte(len(s.PeerCertificates)))
	for _, c := range s.PeerCertificates {
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(c)))
		dst = append(dst, c...)
	}
	return dst
}

// sessionReader walks an encoded session, remembering the first error.
type sessionReader struct {
	b   []byte
	off int
	err error
}

func (r *sessionReader) take(n int, field string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b)-r.off < n {
		r.err = fmt.Errorf("%s at offset %d needs %d bytes, %d left: %w", field, r.off, n, len(r.b)-r.off, errBadSession)
		return nil
	}
	v := r.b[r.off : r.off+n]
	r.off += n
	return v
}

func (r *sessionReader) u8(field string) int {
	v := r.take(1, field)
	if v == nil {
		return 0
	}
	return int(v[0])
}

func (r *sessionReader) u16(field string) int {
	v := r.take(2, field)
	if v == nil {
		return 0
	}
	return int(binary.BigEndian.Uint16(v))
}

// decodeSession is the inverse of appendSession. The result does not alias b.
func decodeSession(b []byte) (dtls.Session, error) {
	var s dtls.Session
	r := &sessionReader{b: b}
	if v := r.u8("codec version"); r.err == nil && v != sessionCodecVersion {
		return s, fmt.Errorf("codec version %d at offset 0: %w", v, errBadSession)
	}
	flags := r.u8("flags")
	if flags&^3 != 0 {
		return s, fmt.Errorf("unknown flags %#x at offset 1: %w", flags, errBadSession)
	}
	s.IsClient = flags&1 != 0
	s.ExtendedMasterSecret = flags&2 != 0
	s.Version = uint8(r.u8("version"))
	s.CipherSuiteID = dtls.CipherSuiteID(r.u16("cipher suite"))
	s.ID = clone(r.take(r.u8("session id length"), "session id"))
	s.Secret = clone(r.take(r.u8("secret length"), "secret"))
	s.IdentityHint = clone(r.take(r.u16("identity length"), "identity"))
	copy(s.PSKHash[:], r.take(len(s.PSKHash), "psk hash"))
	n := r.u8("certificate count")
	for i := 0; i < n && r.err == nil; i++ {
		lb := r.take(4, "certificate length")
		if lb == nil {
			break
		}
		s.PeerCertificates = append(s.PeerCertificates, clone(r.take(int(binary.BigEndian.Uint32(lb)), "certificate")))
	}
	if r.err == nil && r.off != len(b) {
		r.err = fmt.Errorf("%d trailing bytes at offset %d: %w", len(b)-r.off, r.off, errBadSession)
	}
	if r.err != nil {
		return dtls.Session{}, r.err
	}
	return s, nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}
