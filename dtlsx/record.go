package dtlsx

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// DTLS 1.2 wire constants used to route datagrams before pion sees them
// (RFC 6347 4.1 and 4.3.2, RFC 9146 for tls12_cid).
const (
	recordHeaderLen    = 13
	handshakeHeaderLen = 12

	contentHandshake = 22
	contentCID       = 25

	handshakeClientHello = 1
)

// errShortRecord and errNotDTLS are the reasons a datagram is discarded as
// malformed by the demultiplexer.
var (
	errShortRecord = errors.New("record shorter than its header")
	errNotDTLS     = errors.New("not a DTLS 1.x record")
)

// recordInfo is what the demultiplexer needs from the first record of a
// datagram: enough to route it, never enough to trust it.
type recordInfo struct {
	contentType uint8
	epoch       uint16
	// cid aliases the datagram; set only for tls12_cid records.
	cid []byte
	// hello is set when the record carries the first fragment of a
	// ClientHello in epoch 0.
	hello     bool
	helloSeq  uint16
	sessionID []byte // aliases the datagram
	hasCookie bool
}

// parseRecord reads the first record header of a datagram and, for an
// epoch-0 ClientHello, its session id and whether it carries a cookie.
// cidLen is the fixed length of the connection ids this side issues.
// It never allocates; slices in the result alias b.
func parseRecord(b []byte, cidLen int) (recordInfo, error) {
	var ri recordInfo
	if len(b) < recordHeaderLen {
		return ri, fmt.Errorf("datagram of %d bytes: %w", len(b), errShortRecord)
	}
	ri.contentType = b[0]
	if b[1] != 0xfe { // DTLS versions are 0xfeXX (1.0 = feff, 1.2 = fefd)
		return ri, fmt.Errorf("version %#02x%02x at offset 1: %w", b[1], b[2], errNotDTLS)
	}
	ri.epoch = binary.BigEndian.Uint16(b[3:5])
	if ri.contentType == contentCID {
		if cidLen == 0 || len(b) < 11+cidLen+2 {
			return ri, fmt.Errorf("tls12_cid record of %d bytes: %w", len(b), errShortRecord)
		}
		ri.cid = b[11 : 11+cidLen]
		return ri, nil
	}
	if ri.contentType < 20 || ri.contentType > 24 {
		return ri, fmt.Errorf("content type %d at offset 0: %w", ri.contentType, errNotDTLS)
	}
	length := int(binary.BigEndian.Uint16(b[11:13]))
	body := b[recordHeaderLen:]
	if length > len(body) {
		return ri, fmt.Errorf("record length %d exceeds datagram (%d bytes left): %w", length, len(body), errShortRecord)
	}
	body = body[:length]
	if ri.contentType != contentHandshake || ri.epoch != 0 || len(body) < handshakeHeaderLen || body[0] != handshakeClientHello {
		return ri, nil
	}
	ri.helloSeq = binary.BigEndian.Uint16(body[4:6])
	fragOffset := uint32(body[6])<<16 | uint32(body[7])<<8 | uint32(body[8])
	if fragOffset != 0 {
		return ri, nil
	}
	msg := body[handshakeHeaderLen:]
	// client_version(2) random(32) session_id<0..32> cookie<0..255>
	if len(msg) < 35 {
		return ri, fmt.Errorf("ClientHello fragment of %d bytes: %w", len(msg), errShortRecord)
	}
	sidLen := int(msg[34])
	if sidLen > 32 || len(msg) < 35+sidLen+1 {
		return ri, fmt.Errorf("ClientHello session_id length %d at offset %d: %w", sidLen, recordHeaderLen+handshakeHeaderLen+34, errShortRecord)
	}
	ri.hello = true
	ri.sessionID = msg[35 : 35+sidLen]
	ri.hasCookie = msg[35+sidLen] != 0
	return ri, nil
}
