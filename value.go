package gateway

import (
	"math"
	"strconv"
)

// Kind is the type of a Value.
type Kind uint8

// The kinds a Value can hold. The zero Value is KindNone.
const (
	KindNone Kind = iota
	KindBool
	KindInt
	KindUint
	KindFloat
	KindString
	KindBytes
)

var kindNames = [...]string{"none", "bool", "int", "uint", "float", "string", "bytes"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Value is a typed scalar without interface boxing: numbers live in a uint64,
// text and bytes in a string, so building and reading a Value never allocates
// for numeric kinds. The zero Value is KindNone.
type Value struct {
	kind Kind
	bits uint64
	str  string
}

// Bool returns a boolean Value.
func Bool(b bool) Value {
	var v uint64
	if b {
		v = 1
	}
	return Value{kind: KindBool, bits: v}
}

// Int returns a signed integer Value.
func Int(i int64) Value { return Value{kind: KindInt, bits: uint64(i)} }

// Uint returns an unsigned integer Value.
func Uint(u uint64) Value { return Value{kind: KindUint, bits: u} }

// Float returns a floating point Value.
func Float(f float64) Value { return Value{kind: KindFloat, bits: math.Float64bits(f)} }

// String returns a text Value.
func String(s string) Value { return Value{kind: KindString, str: s} }

// Bytes returns a binary Value. The bytes are copied so the Value does not
// alias a pooled buffer.
func Bytes(b []byte) Value { return Value{kind: KindBytes, str: string(b)} }

// Kind reports the type held by v.
func (v Value) Kind() Kind { return v.kind }

// IsZero reports whether v holds nothing.
func (v Value) IsZero() bool { return v.kind == KindNone }

// Bool returns the boolean held by v; numbers are true when non-zero.
func (v Value) Bool() bool {
	switch v.kind {
	case KindBool, KindInt, KindUint:
		return v.bits != 0
	case KindFloat:
		return math.Float64frombits(v.bits) != 0
	case KindString, KindBytes:
		return v.str != ""
	}
	return false
}

// Int returns v converted to int64 (floats are truncated toward zero).
func (v Value) Int() int64 {
	switch v.kind {
	case KindFloat:
		return int64(math.Float64frombits(v.bits))
	case KindString, KindNone, KindBytes:
		return 0
	}
	return int64(v.bits)
}

// Uint returns v converted to uint64.
func (v Value) Uint() uint64 {
	switch v.kind {
	case KindFloat:
		return uint64(math.Float64frombits(v.bits))
	case KindString, KindNone, KindBytes:
		return 0
	}
	return v.bits
}

// Float returns v converted to float64.
func (v Value) Float() float64 {
	switch v.kind {
	case KindFloat:
		return math.Float64frombits(v.bits)
	case KindInt:
		return float64(int64(v.bits))
	case KindUint, KindBool:
		return float64(v.bits)
	}
	return 0
}

// Str returns the text of a string or bytes Value, and "" otherwise. Use
// String (the fmt.Stringer) for a printable form of any kind.
func (v Value) Str() string { return v.str }

// String formats v for logs and text encodings.
func (v Value) String() string {
	return string(v.AppendText(nil))
}

// AppendText appends a text form of v to dst without allocating beyond dst.
func (v Value) AppendText(dst []byte) []byte {
	switch v.kind {
	case KindBool:
		return strconv.AppendBool(dst, v.bits != 0)
	case KindInt:
		return strconv.AppendInt(dst, int64(v.bits), 10)
	case KindUint:
		return strconv.AppendUint(dst, v.bits, 10)
	case KindFloat:
		return strconv.AppendFloat(dst, math.Float64frombits(v.bits), 'g', -1, 64)
	case KindString, KindBytes:
		return append(dst, v.str...)
	}
	return dst
}

// Equal reports whether a and b have the same kind and content.
func (v Value) Equal(o Value) bool { return v == o }

// Point is one named, typed reading of a device: "temperature" = 21.5 "C".
type Point struct {
	Name  string
	Value Value
	Unit  string
}

// Tag is one key/value label on a Message.
type Tag struct {
	Key, Value string
}

// Tags is an ordered list of labels. A slice, not a map, so a pooled Message
// reuses its backing array and lookups over the handful of tags a message
// carries stay cheaper than hashing.
type Tags []Tag

// Get returns the value of key and whether it is present.
func (t Tags) Get(key string) (string, bool) {
	for i := range t {
		if t[i].Key == key {
			return t[i].Value, true
		}
	}
	return "", false
}

// Set replaces the value of key or appends it, returning the updated list.
func (t Tags) Set(key, value string) Tags {
	for i := range t {
		if t[i].Key == key {
			t[i].Value = value
			return t
		}
	}
	return append(t, Tag{Key: key, Value: value})
}

// Delete removes key, returning the updated list.
func (t Tags) Delete(key string) Tags {
	for i := range t {
		if t[i].Key == key {
			return append(t[:i], t[i+1:]...)
		}
	}
	return t
}
