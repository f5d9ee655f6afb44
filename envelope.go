package gateway

import (
	"encoding/base64"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends the JSON envelope of m to dst without reflection:
//
//	{"id":"0190...","device":"plc-1","topic":"hr/0","connector":"modbus",
//	 "time":"2026-11-24T14:00:00.123Z","qos":1,"priority":4,
//	 "tags":{"site":"A"},
//	 "points":[{"name":"temperature","value":21.5,"unit":"C"}]}
//
// Upstream consumers de-duplicate by "id". Bytes values are base64
// strings; NaN and infinities, which JSON cannot carry, are null.
func (m *Message) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"id":"`...)
	dst = m.ID.AppendHex(dst)
	dst = append(dst, `","device":`...)
	dst = appendJSONString(dst, m.Device)
	dst = append(dst, `,"topic":`...)
	dst = appendJSONString(dst, m.Topic)
	if m.Connector != "" {
		dst = append(dst, `,"connector":`...)
		dst = appendJSONString(dst, m.Connector)
	}
	if !m.Time.IsZero() {
		dst = append(dst, `,"time":"`...)
		dst = m.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"qos":`...)
	dst = strconv.AppendUint(dst, uint64(m.QoS), 10)
	dst = append(dst, `,"priority":`...)
	dst = strconv.AppendUint(dst, uint64(m.Priority), 10)
	if len(m.Tags) > 0 {
		dst = append(dst, `,"tags":{`...)
		for i, t := range m.Tags {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, t.Key)
			dst = append(dst, ':')
			dst = appendJSONString(dst, t.Value)
		}
		dst = append(dst, '}')
	}
	dst = append(dst, `,"points":[`...)
	for i, p := range m.Points {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"name":`...)
		dst = appendJSONString(dst, p.Name)
		dst = append(dst, `,"value":`...)
		dst = p.Value.AppendJSON(dst)
		if p.Unit != "" {
			dst = append(dst, `,"unit":`...)
			dst = appendJSONString(dst, p.Unit)
		}
		dst = append(dst, '}')
	}
	return append(dst, "]}"...)
}

// AppendJSON appends v as a JSON value.
func (v Value) AppendJSON(dst []byte) []byte {
	switch v.kind {
	case KindBool:
		return strconv.AppendBool(dst, v.bits != 0)
	case KindInt:
		return strconv.AppendInt(dst, int64(v.bits), 10)
	case KindUint:
		return strconv.AppendUint(dst, v.bits, 10)
	case KindFloat:
		f := math.Float64frombits(v.bits)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return append(dst, "null"...)
		}
		return strconv.AppendFloat(dst, f, 'g', -1, 64)
	case KindString:
		return appendJSONString(dst, v.str)
	case KindBytes:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, []byte(v.str))
		return append(dst, '"')
	}
	return append(dst, "null"...)
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a quoted JSON string. Invalid UTF-8 becomes
// U+FFFD, so the output is always valid JSON. It does not allocate beyond
// dst.
func AppendJSONString(dst []byte, s string) []byte { return appendJSONString(dst, s) }

func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
