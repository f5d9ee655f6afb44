package gateway

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// The binary form of a Message, used by stores and by anything that needs a
// compact, self-describing copy of a message:
//
//	version   u8 (= 1)
//	id        16 bytes
//	device, topic, connector   string
//	time      varint (Unix nanoseconds; 0 for the zero time)
//	priority  u8, qos u8
//	tags      uvarint count, then key string, value string each
//	points    uvarint count, then name string, unit string, kind u8, value each
//
// A string is a uvarint length and the bytes. A value is 8 bytes little
// endian for bool/int/uint/float, a string for string/bytes, nothing for none.
//
// Version 2, written when the message has a trace context, is version 1
// followed by the context: trace id (16), span id (8), flags u8, tracestate
// string. Version 1 stays readable (an older store's records).
const (
	messageBinaryVersion      = 1
	messageBinaryVersionTrace = 2
)

// errShortMessage is wrapped by every truncation error of UnmarshalBinary.
var errShortMessage = errors.New("truncated")

// AppendBinary appends the binary form of m to dst.
func (m *Message) AppendBinary(dst []byte) ([]byte, error) {
	ver := byte(messageBinaryVersion)
	if m.Trace.IsValid() {
		ver = messageBinaryVersionTrace
	}
	dst = append(dst, ver)
	dst = append(dst, m.ID[:]...)
	dst = appendString(dst, m.Device)
	dst = appendString(dst, m.Topic)
	dst = appendString(dst, m.Connector)
	var ns int64
	if !m.Time.IsZero() {
		ns = m.Time.UnixNano()
	}
	dst = binary.AppendVarint(dst, ns)
	dst = append(dst, byte(m.Priority), m.QoS)
	dst = binary.AppendUvarint(dst, uint64(len(m.Tags)))
	for _, t := range m.Tags {
		dst = appendString(dst, t.Key)
		dst = appendString(dst, t.Value)
	}
	dst = binary.AppendUvarint(dst, uint64(len(m.Points)))
	for _, p := range m.Points {
		dst = appendString(dst, p.Name)
		dst = appendString(dst, p.Unit)
		dst = append(dst, byte(p.Value.kind))
		switch p.Value.kind {
		case KindNone:
		case KindBool, KindInt, KindUint, KindFloat:
			dst = binary.LittleEndian.AppendUint64(dst, p.Value.bits)
		case KindString, KindBytes:
			dst = appendString(dst, p.Value.str)
		default:
			return dst, fmt.Errorf("point %q: unknown kind %d", p.Name, p.Value.kind)
		}
	}
	if ver == messageBinaryVersionTrace {
		dst = appendTraceBinary(dst, m.Trace)
	}
	return dst, nil
}

// appendTraceBinary appends tc as the trailer of the version 2 forms.
func appendTraceBinary(dst []byte, tc TraceContext) []byte {
	dst = append(dst, tc.TraceID[:]...)
	dst = append(dst, tc.SpanID[:]...)
	dst = append(dst, byte(tc.Flags))
	return appendString(dst, tc.State)
}

// traceBinary reads the trailer written by appendTraceBinary.
func (r *binReader) traceBinary() TraceContext {
	var tc TraceContext
	if r.need(16+8+1, "trace context") {
		copy(tc.TraceID[:], r.b[r.off:])
		copy(tc.SpanID[:], r.b[r.off+16:])
		tc.Flags = trace.TraceFlags(r.b[r.off+24])
		r.off += 25
	}
	tc.State = r.string("tracestate")
	return tc
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// MarshalBinary implements encoding.BinaryMarshaler.
func (m *Message) MarshalBinary() ([]byte, error) { return m.AppendBinary(nil) }

// UnmarshalBinary replaces m's content with the decoded data. Errors name
// the field and byte offset.
func (m *Message) UnmarshalBinary(data []byte) error {
	r := binReader{b: data}
	v := r.byte("version")
	if r.err == nil && v != messageBinaryVersion && v != messageBinaryVersionTrace {
		return fmt.Errorf("message: version: unsupported %d at offset 0", v)
	}
	if r.need(16, "id") {
		copy(m.ID[:], r.b[r.off:r.off+16])
		r.off += 16
	}
	m.Device = r.string("device")
	m.Topic = r.string("topic")
	m.Connector = r.string("connector")
	if ns := r.varint("time"); ns != 0 {
		m.Time = time.Unix(0, ns)
	} else {
		m.Time = time.Time{}
	}
	m.Priority = Priority(r.byte("priority"))
	m.QoS = r.byte("qos")
	if m.QoS > 2 && r.err == nil {
		r.fail("qos", fmt.Errorf("value %d out of range", m.QoS))
	}
	n := r.count("tags", 2)
	m.Tags = m.Tags[:0]
	for i := 0; i < n && r.err == nil; i++ {
		k := r.string("tag key")
		v := r.string("tag value")
		m.Tags = append(m.Tags, Tag{Key: k, Value: v})
	}
	n = r.count("points", 3)
	m.Points = m.Points[:0]
	for i := 0; i < n && r.err == nil; i++ {
		p := Point{Name: r.string("point name"), Unit: r.string("point unit")}
		k := Kind(r.byte("point kind"))
		switch k {
		case KindNone:
		case KindBool, KindInt, KindUint, KindFloat:
			if r.need(8, "point value") {
				p.Value = Value{kind: k, bits: binary.LittleEndian.Uint64(r.b[r.off:])}
				r.off += 8
			}
		case KindString, KindBytes:
			p.Value = Value{kind: k, str: r.string("point value")}
		default:
			r.fail("point kind", fmt.Errorf("unknown kind %d", k))
		}
		m.Points = append(m.Points, p)
	}
	m.Trace = TraceContext{}
	if v == messageBinaryVersionTrace {
		m.Trace = r.traceBinary()
	}
	if r.err == nil && r.off != len(r.b) {
		r.fail("end", fmt.Errorf("%d trailing bytes", len(r.b)-r.off))
	}
	return r.err
}

type binReader struct {
	b   []byte
	off int
	err error
}

func (r *binReader) fail(field string, err error) {
	if r.err == nil {
		r.err = fmt.Errorf("message: %s at offset %d: %w", field, r.off, err)
	}
}

func (r *binReader) need(n int, field string) bool {
	if r.err != nil {
		return false
	}
	if n < 0 || len(r.b)-r.off < n {
		r.fail(field, errShortMessage)
		return false
	}
	return true
}

func (r *binReader) byte(field string) byte {
	if !r.need(1, field) {
		return 0
	}
	v := r.b[r.off]
	r.off++
	return v
}

func (r *binReader) uvarint(field string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.fail(field, errShortMessage)
		return 0
	}
	r.off += n
	return v
}

func (r *binReader) varint(field string) int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b[r.off:])
	if n <= 0 {
		r.fail(field, errShortMessage)
		return 0
	}
	r.off += n
	return v
}

// count reads an element count and rejects one that cannot fit in the
// remaining bytes (each element takes at least minSize), so a hostile
// length cannot make us allocate.
func (r *binReader) count(field string, minSize int) int {
	v := r.uvarint(field)
	if r.err == nil && v > uint64((len(r.b)-r.off)/minSize) {
		r.fail(field, fmt.Errorf("count %d exceeds remaining %d bytes", v, len(r.b)-r.off))
		return 0
	}
	return int(v)
}

func (r *binReader) string(field string) string {
	n := r.uvarint(field)
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)-r.off) {
		r.fail(field, errShortMessage)
		return ""
	}
	s := string(r.b[r.off : r.off+int(n)])
	r.off += int(n)
	return s
}
