package opcua

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/iotgw/gateway"
)

// The payload of a frame is one OPC UA DataValue in a compact form that
// keeps the built-in type (see the package doc's frame contract):
//
//	byte 0      format version (1)
//	byte 1      built-in type id of the value (0: null; 1..15 as in
//	            OPC UA Part 6: Boolean, SByte, Byte, Int16, UInt16, Int32,
//	            UInt32, Int64, UInt64, Float, Double, String, DateTime,
//	            (14 Guid as string), ByteString)
//	byte 2      flags: 1 source timestamp, 2 server timestamp, 4 array
//	bytes 3..6  StatusCode, uint32 little-endian
//	[int64]     source timestamp, Unix nanoseconds, if flag 1
//	[int64]     server timestamp, Unix nanoseconds, if flag 2
//	[uvarint]   element count, if flag 4
//	values      one (or count) values: Boolean 1 byte; integers and
//	            DateTime (Unix ns) 8 bytes little-endian; Float 4 bytes and
//	            Double 8 bytes (IEEE 754); String and ByteString a uvarint
//	            length and the bytes.
const payloadVersion = 1

const (
	flagSource = 1 << iota
	flagServer
	flagArray
)

// maxArray bounds the elements one payload may claim, so a corrupt count
// cannot make the decoder allocate without limit.
const maxArray = 1 << 16

// ErrPayload is a frame payload that is not a value payload of this
// package.
var ErrPayload = errors.New("opcua: malformed value payload")

// Sample is one decoded value payload.
type Sample struct {
	Type   ua.TypeID // built-in type; 0 for null
	Values []gateway.Value
	Array  bool
	Status ua.StatusCode
	Source time.Time // zero when the server sent none
	Server time.Time
}

// supported reports whether t maps to a gateway.Value.
func supported(t ua.TypeID) bool {
	return t >= ua.TypeIDBoolean && t <= ua.TypeIDByteString
}

// AppendDataValue appends the payload of dv to dst. Values of types that
// do not map to a gateway.Value (structures, NodeIds...) give
// ErrUnsupportedType.
func AppendDataValue(dst []byte, dv *ua.DataValue) ([]byte, error) {
	var t ua.TypeID
	var val any
	if dv.Value != nil {
		t, val = dv.Value.Type(), dv.Value.Value()
	}
	if t != 0 && !supported(t) {
		return dst, fmt.Errorf("%w: %s", ErrUnsupportedType, typeName(t))
	}
	flags := byte(0)
	if !dv.SourceTimestamp.IsZero() {
		flags |= flagSource
	}
	if !dv.ServerTimestamp.IsZero() {
		flags |= flagServer
	}
	arr := dv.Value != nil && dv.Value.Has(ua.VariantArrayValues)
	if arr && dv.Value.Has(ua.VariantArrayDimensions) && len(dv.Value.ArrayDimensions()) > 1 {
		return dst, fmt.Errorf("%w: multi-dimensional %s array", ErrUnsupportedType, typeName(t))
	}
	if arr {
		flags |= flagArray
	}
	dst = append(dst, payloadVersion, byte(t), flags)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(dv.Status))
	if flags&flagSource != 0 {
		dst = binary.LittleEndian.AppendUint64(dst, uint64(dv.SourceTimestamp.UnixNano()))
	}
	if flags&flagServer != 0 {
		dst = binary.LittleEndian.AppendUint64(dst, uint64(dv.ServerTimestamp.UnixNano()))
	}
	if t == 0 {
		return dst, nil
	}
	if !arr {
		return appendScalar(dst, t, val)
	}
	n := sliceLen(val)
	if n < 0 {
		return dst, fmt.Errorf("%w: multi-dimensional %s array", ErrUnsupportedType, typeName(t))
	}
	if n > maxArray {
		return dst, fmt.Errorf("%w: %d elements, at most %d", ErrUnsupportedType, n, maxArray)
	}
	dst = binary.AppendUvarint(dst, uint64(n))
	for i := range n {
		var err error
		if dst, err = appendScalar(dst, t, sliceAt(val, i)); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

// sliceLen is the length of a one-dimensional array value, -1 for others.
func sliceLen(v any) int {
	switch s := v.(type) {
	case []bool:
		return len(s)
	case []int8:
		return len(s)
	case []byte:
		return len(s)
	case ua.ByteArray:
		return len(s)
	case []int16:
		return len(s)
	case []uint16:
		return len(s)
	case []int32:
		return len(s)
	case []uint32:
		return len(s)
	case []int64:
		return len(s)
	case []uint64:
		return len(s)
	case []float32:
		return len(s)
	case []float64:
		return len(s)
	case []string:
		return len(s)
	case []time.Time:
		return len(s)
	case [][]byte:
		return len(s)
	case []*ua.GUID:
		return len(s)
	}
	return -1
}

func sliceAt(v any, i int) any {
	switch s := v.(type) {
	case []bool:
		return s[i]
	case []int8:
		return s[i]
	case []byte:
		return s[i]
	case ua.ByteArray:
		return s[i]
	case []int16:
		return s[i]
	case []uint16:
		return s[i]
	case []int32:
		return s[i]
	case []uint32:
		return s[i]
	case []int64:
		return s[i]
	case []uint64:
		return s[i]
	case []float32:
		return s[i]
	case []float64:
		return s[i]
	case []string:
		return s[i]
	case []time.Time:
		return s[i]
	case [][]byte:
		return s[i]
	case []*ua.GUID:
		return s[i]
	}
	return nil
}

func appendScalar(dst []byte, t ua.TypeID, v any) ([]byte, error) {
	le := binary.LittleEndian
	switch x := v.(type) {
	case bool:
		if x {
			return append(dst, 1), nil
		}
		return append(dst, 0), nil
	case int8:
		return le.AppendUint64(dst, uint64(int64(x))), nil
	case uint8:
		return le.AppendUint64(dst, uint64(x)), nil
	case int16:
		return le.AppendUint64(dst, uint64(int64(x))), nil
	case uint16:
		return le.AppendUint64(dst, uint64(x)), nil
	case int32:
		return le.AppendUint64(dst, uint64(int64(x))), nil
	case uint32:
		return le.AppendUint64(dst, uint64(x)), nil
	case int64:
		return le.AppendUint64(dst, uint64(x)), nil
	case uint64:
		return le.AppendUint64(dst, x), nil
	case float32:
		return le.AppendUint32(dst, math.Float32bits(x)), nil
	case float64:
		return le.AppendUint64(dst, math.Float64bits(x)), nil
	case string:
		return append(binary.AppendUvarint(dst, uint64(len(x))), x...), nil
	case time.Time:
		return le.AppendUint64(dst, uint64(x.UnixNano())), nil
	case []byte:
		return append(binary.AppendUvarint(dst, uint64(len(x))), x...), nil
	case *ua.GUID:
		s := ""
		if x != nil {
			s = x.String()
		}
		return append(binary.AppendUvarint(dst, uint64(len(s))), s...), nil
	}
	return dst, fmt.Errorf("%w: %s value of Go type %T", ErrUnsupportedType, t, v)
}

// ErrUnsupportedType is a value whose OPC UA type has no gateway.Value
// mapping (structures, NodeIds, LocalizedText, multi-dimensional arrays).
var ErrUnsupportedType = errors.New("opcua: type not mapped to a gateway value")

// DecodePayload parses a value payload. It appends the values to
// s.Values[:0], so a reused Sample does not allocate for numbers.
func DecodePayload(p []byte, s *Sample) error {
	if len(p) < 7 {
		return fmt.Errorf("%w: %d bytes, want at least 7", ErrPayload, len(p))
	}
	if p[0] != payloadVersion {
		return fmt.Errorf("%w: version %d", ErrPayload, p[0])
	}
	t, flags := ua.TypeID(p[1]), p[2]
	if t != 0 && !supported(t) {
		return fmt.Errorf("%w: type id %d", ErrPayload, t)
	}
	if flags&^(flagSource|flagServer|flagArray) != 0 {
		return fmt.Errorf("%w: flags 0x%02x", ErrPayload, flags)
	}
	le := binary.LittleEndian
	s.Type, s.Array, s.Status = t, flags&flagArray != 0, ua.StatusCode(le.Uint32(p[3:]))
	s.Values = s.Values[:0]
	s.Source, s.Server = time.Time{}, time.Time{}
	p = p[7:]
	for _, f := range []byte{flagSource, flagServer} {
		if flags&f == 0 {
			continue
		}
		if len(p) < 8 {
			return fmt.Errorf("%w: timestamp cut off", ErrPayload)
		}
		ts := time.Unix(0, int64(le.Uint64(p))).UTC()
		if f == flagSource {
			s.Source = ts
		} else {
			s.Server = ts
		}
		p = p[8:]
	}
	if t == 0 {
		if len(p) != 0 || s.Array {
			return fmt.Errorf("%w: null value with %d value bytes", ErrPayload, len(p))
		}
		return nil
	}
	n := uint64(1)
	if s.Array {
		var k int
		n, k = binary.Uvarint(p)
		if k <= 0 || n > maxArray {
			return fmt.Errorf("%w: bad array length", ErrPayload)
		}
		p = p[k:]
	}
	for range n {
		var v gateway.Value
		var err error
		v, p, err = decodeScalar(t, p)
		if err != nil {
			return err
		}
		s.Values = append(s.Values, v)
	}
	if len(p) != 0 {
		return fmt.Errorf("%w: %d bytes after the value", ErrPayload, len(p))
	}
	return nil
}

func decodeScalar(t ua.TypeID, p []byte) (gateway.Value, []byte, error) {
	le := binary.LittleEndian
	switch t {
	case ua.TypeIDBoolean:
		if len(p) < 1 || p[0] > 1 {
			return gateway.Value{}, p, fmt.Errorf("%w: bad Boolean", ErrPayload)
		}
		return gateway.Bool(p[0] == 1), p[1:], nil
	case ua.TypeIDFloat:
		if len(p) < 4 {
			return gateway.Value{}, p, fmt.Errorf("%w: Float cut off", ErrPayload)
		}
		return gateway.Float(float64(math.Float32frombits(le.Uint32(p)))), p[4:], nil
	case ua.TypeIDString, ua.TypeIDByteString, ua.TypeIDGUID:
		n, k := binary.Uvarint(p)
		if k <= 0 || n > uint64(len(p)-k) {
			return gateway.Value{}, p, fmt.Errorf("%w: %s cut off", ErrPayload, typeName(t))
		}
		b := p[k : k+int(n)]
		if t == ua.TypeIDByteString {
			return gateway.Bytes(b), p[k+int(n):], nil
		}
		return gateway.String(string(b)), p[k+int(n):], nil
	}
	if len(p) < 8 {
		return gateway.Value{}, p, fmt.Errorf("%w: %s cut off", ErrPayload, typeName(t))
	}
	x := le.Uint64(p)
	p = p[8:]
	switch t {
	case ua.TypeIDSByte, ua.TypeIDInt16, ua.TypeIDInt32, ua.TypeIDInt64:
		return gateway.Int(int64(x)), p, nil
	case ua.TypeIDByte, ua.TypeIDUint16, ua.TypeIDUint32, ua.TypeIDUint64:
		return gateway.Uint(x), p, nil
	case ua.TypeIDDouble:
		return gateway.Float(math.Float64frombits(x)), p, nil
	case ua.TypeIDDateTime:
		return gateway.String(time.Unix(0, int64(x)).UTC().Format(time.RFC3339Nano)), p, nil
	}
	return gateway.Value{}, p, fmt.Errorf("%w: type id %d", ErrPayload, t)
}

// typeNames are the OPC UA names of the built-in types 1..15.
var typeNames = [...]string{"", "Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64",
	"Float", "Double", "String", "DateTime", "Guid", "ByteString"}

// typeName is the OPC UA name of a built-in type: "Int16", "UInt16".
func typeName(t ua.TypeID) string {
	if t > 0 && int(t) < len(typeNames) {
		return typeNames[t]
	}
	return strings.TrimPrefix(t.String(), "TypeID")
}

// Quality is the quality tag of a status code: "good", "uncertain" or
// "bad", from its two severity bits.
func Quality(s ua.StatusCode) string {
	switch uint32(s) >> 30 {
	case 0:
		return "good"
	case 1:
		return "uncertain"
	}
	return "bad"
}

// Codec decodes the connector's frames into points and encodes downlink
// writes. Register it as the connector's codec (kind "opcua"; see
// RegisterCodec).
//
// Decode gives one point per value, named after the frame topic (the
// node's name); an array gives the points "<name>[0]", "<name>[1]", ...
// The message time is the source timestamp (the server timestamp when
// the source sent none). Tags: quality (good, uncertain, bad), status
// (the StatusCode, 0x hex, only when not Good), type (the built-in type
// name) and server_time (RFC 3339, when present).
//
// Encode takes the message's first point and writes it with its own kind;
// the connector converts it to the node's data type on Write.
type Codec struct{}

var _ gateway.Codec = Codec{}

// Decode implements gateway.Codec.
func (Codec) Decode(f *gateway.Frame, m *gateway.Message) error {
	var s Sample
	if err := DecodePayload(f.Payload, &s); err != nil {
		return err
	}
	name := f.Topic
	if i := strings.LastIndexByte(name, '/'); i >= 0 && i < len(name)-1 {
		name = name[i+1:]
	}
	for i, v := range s.Values {
		pn := name
		if s.Array {
			pn = name + "[" + strconv.Itoa(i) + "]"
		}
		m.Points = append(m.Points, gateway.Point{Name: pn, Value: v})
	}
	switch {
	case !s.Source.IsZero():
		m.Time = s.Source
	case !s.Server.IsZero():
		m.Time = s.Server
	}
	m.Tags = m.Tags.Set("quality", Quality(s.Status))
	if s.Status != ua.StatusOK {
		m.Tags = m.Tags.Set("status", fmt.Sprintf("0x%08X", uint32(s.Status)))
	}
	if s.Type != 0 {
		m.Tags = m.Tags.Set("type", typeName(s.Type))
	}
	if !s.Server.IsZero() {
		m.Tags = m.Tags.Set("server_time", s.Server.Format(time.RFC3339Nano))
	}
	return nil
}

// Encode implements gateway.Codec: the first point of m as a payload of
// its own kind (Bool, Int64, UInt64, Double, String, ByteString).
func (Codec) Encode(m *gateway.Message, dst []byte) ([]byte, error) {
	if len(m.Points) == 0 {
		return dst, fmt.Errorf("opcua: encode: message has no point to write")
	}
	v := m.Points[0].Value
	dv := &ua.DataValue{Value: nil}
	var x any
	switch v.Kind() {
	case gateway.KindBool:
		x = v.Bool()
	case gateway.KindInt:
		x = v.Int()
	case gateway.KindUint:
		x = v.Uint()
	case gateway.KindFloat:
		x = v.Float()
	case gateway.KindString:
		x = v.Str()
	case gateway.KindBytes:
		x = []byte(v.Str())
	default:
		return dst, fmt.Errorf("opcua: encode: point %q has no value", m.Points[0].Name)
	}
	dv.Value = ua.MustVariant(x)
	return AppendDataValue(dst, dv)
}
