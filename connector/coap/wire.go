package coap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// CoAP message types (RFC 7252 section 3).
const (
	typeCON = 0
	typeNON = 1
	typeACK = 2
	typeRST = 3
)

// Codes the fast path reads and writes: class<<5 | detail.
const (
	codeEmpty           = 0x00
	codePOST            = 0x02
	codePUT             = 0x03
	codeChanged         = 0x44 // 2.04
	codeBadRequest      = 0x80 // 4.00
	codeEntityTooLarge  = 0x8d // 4.13
	codeServiceUnavail  = 0xa3 // 5.03
	optUriHost          = 3
	optUriPort          = 7
	optUriPath          = 11
	optContentFormat    = 12
	optMaxAge           = 14
	optUriQuery         = 15
	optAccept           = 17
	optSize1            = 60
	payloadMarker       = 0xff
	maxTokenLen         = 8
	coapHeaderLen       = 4
	contentFormatText   = 0 // text/plain; charset=utf-8
	maxUriPathSegment   = 255
	maxDatagramReadSize = 64 << 10
)

// Parse errors. errTooShort and errVersion are silently ignored (RFC
// 7252 section 3); errFormat is a message format error: a confirmable
// message gets a Reset (section 4.2).
var (
	errTooShort = errors.New("coap: datagram shorter than the 4-byte header")
	errVersion  = errors.New("coap: unknown version")
	errFormat   = errors.New("coap: message format error")
)

// wireMessage is a parsed datagram. Token and Payload alias the datagram;
// Path is built in the buffer given to parseMessage.
type wireMessage struct {
	Type    uint8
	Code    uint8
	MID     uint16
	Token   []byte
	Path    []byte // "/seg1/seg2", empty without Uri-Path
	Payload []byte
	// Fast reports that every option is one the fast path handles
	// (Uri-Host, Uri-Port, Uri-Path, Content-Format, Uri-Query, Accept,
	// Size1) with a valid length and the path is UTF-8, so no
	// Block1/Block2/Observe or unknown option is present.
	Fast bool
	// Header reports that the 4-byte header was read, so Type and MID
	// are valid even when the rest is malformed.
	Header bool
}

// isIngest reports whether m is a request the fast path answers alone: a
// confirmable or non-confirmable POST or PUT with only options it knows.
func (m *wireMessage) isIngest() bool {
	return m.Fast && (m.Type == typeCON || m.Type == typeNON) && (m.Code == codePOST || m.Code == codePUT)
}

// parseMessage parses datagram d (RFC 7252 section 3) into m, appending
// the Uri-Path segments to pathBuf. It never panics on any input and
// returns an error naming the offset of the first fault.
func parseMessage(d []byte, m *wireMessage, pathBuf []byte) error {
	*m = wireMessage{Path: pathBuf[:0]}
	if len(d) < coapHeaderLen {
		return errTooShort
	}
	if d[0]>>6 != 1 {
		return errVersion
	}
	m.Type = d[0] >> 4 & 0x3
	tkl := int(d[0] & 0x0f)
	m.Code = d[1]
	m.MID = binary.BigEndian.Uint16(d[2:4])
	m.Header = true
	if tkl > maxTokenLen {
		return fmt.Errorf("%w: token length %d at offset 0", errFormat, tkl)
	}
	if len(d) < coapHeaderLen+tkl {
		return fmt.Errorf("%w: token of %d bytes truncated at offset 4", errFormat, tkl)
	}
	m.Token = d[coapHeaderLen : coapHeaderLen+tkl]
	if m.Code == codeEmpty {
		if tkl != 0 || len(d) != coapHeaderLen {
			return fmt.Errorf("%w: empty message with %d bytes after the header", errFormat, len(d)-coapHeaderLen)
		}
		return nil
	}
	m.Fast = true
	i := coapHeaderLen + tkl
	num := 0
	for i < len(d) {
		if d[i] == payloadMarker {
			if i+1 == len(d) {
				return fmt.Errorf("%w: payload marker without payload at offset %d", errFormat, i)
			}
			m.Payload = d[i+1:]
			break
		}
		start := i
		delta, length := int(d[i]>>4), int(d[i]&0x0f)
		i++
		var err error
		if delta, i, err = optionExtended(d, i, delta); err != nil {
			return fmt.Errorf("%w: option delta at offset %d: %v", errFormat, start, err)
		}
		if length, i, err = optionExtended(d, i, length); err != nil {
			return fmt.Errorf("%w: option length at offset %d: %v", errFormat, start, err)
		}
		num += delta
		if num > 0xffff {
			return fmt.Errorf("%w: option number %d at offset %d", errFormat, num, start)
		}
		if length > len(d)-i {
			return fmt.Errorf("%w: option %d value of %d bytes truncated at offset %d", errFormat, num, length, i)
		}
		value := d[i : i+length]
		i += length
		if !fastOptionLen(num, length) {
			m.Fast = false // unknown option or odd length: go-coap decides
		}
		if num == optUriPath {
			if bytes.IndexByte(value, '/') >= 0 {
				m.Fast = false // ambiguous once joined: go-coap refuses it
			}
			m.Path = append(append(m.Path, '/'), value...)
		}
	}
	if m.Fast && !utf8.Valid(m.Path) {
		m.Fast = false
	}
	return nil
}

// fastOptionLen reports whether option num is one the fast path handles
// and length is within its RFC 7252 table 4 bounds.
func fastOptionLen(num, length int) bool {
	switch num {
	case optUriHost:
		return length >= 1 && length <= 255
	case optUriPath, optUriQuery:
		return length <= 255
	case optUriPort, optContentFormat, optAccept:
		return length <= 2
	case optSize1:
		return length <= 4
	}
	return false
}

// optionExtended decodes the extended form of an option delta or length
// nibble v (13: one more byte + 13, 14: two more bytes + 269, 15:
// reserved) starting at d[i].
func optionExtended(d []byte, i, v int) (int, int, error) {
	switch v {
	case 13:
		if i >= len(d) {
			return 0, i, errors.New("truncated")
		}
		return int(d[i]) + 13, i + 1, nil
	case 14:
		if i+1 >= len(d) {
			return 0, i, errors.New("truncated")
		}
		return int(binary.BigEndian.Uint16(d[i:])) + 269, i + 2, nil
	case 15:
		return 0, i, errors.New("reserved value 15")
	}
	return v, i, nil
}

// appendResponse appends a response datagram: typ ACK (piggybacked, same
// MID) or NON, code, the request's token, Content-Format text/plain and
// the reason as payload when there is one, and Max-Age 1 when asked.
func appendResponse(dst []byte, typ, code uint8, mid uint16, token []byte, maxAge1 bool, reason string) []byte {
	dst = append(dst, 0x40|typ<<4|uint8(len(token)), code, byte(mid>>8), byte(mid))
	dst = append(dst, token...)
	last := 0
	if reason != "" {
		dst = append(dst, optContentFormat<<4) // text/plain is the zero-length value 0
		last = optContentFormat
	}
	if maxAge1 {
		dst = append(dst, byte(optMaxAge-last)<<4|1, 1)
	}
	if reason != "" {
		dst = append(dst, payloadMarker)
		dst = append(dst, reason...)
	}
	return dst
}

// appendReset appends a Reset for message id mid.
func appendReset(dst []byte, mid uint16) []byte {
	return append(dst, 0x40|typeRST<<4, codeEmpty, byte(mid>>8), byte(mid))
}
