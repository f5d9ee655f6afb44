// Package layout is a declarative codec for fixed binary frames: each
// field sits at a byte offset (and, for bit fields, a bit position) and has
// a wire type (int8..int64, uint8..uint64, float32/64, bool, bits, fixed
// string), a byte order (big, little, and the word-swapped orders Modbus
// devices use), and an optional linear scale and bias.
//
// The happy path:
//
//	l, err := layout.New([]layout.Field{{Name: "temperature", Type: layout.Int16, Scale: 0.1, Unit: "C"}}, 0)
//	err = l.Decode(frame, msg)      // msg.Points gets temperature = raw * 0.1
//	buf, err := l.Encode(msg, nil) // and back
//
// Decode of numeric fields does not allocate; fixed strings are interned in
// a bounded table (see Layout). Errors are *FieldError values naming the
// field and byte offset and wrapping ErrShortFrame, ErrType, ErrRange,
// ErrUnknownField or ErrMissingField.
//
// Round trips: Encode(Decode(b)) == b for every frame whose fields cover
// all its bits, when no field is scaled or the scale maps raw integers to
// distinct floats (any 8-, 16- or 32-bit integer with a scale that is not
// tiny); 64-bit integers with a scale lose precision in float64, and NaN
// floats decode but do not encode (ErrRange).
package layout
