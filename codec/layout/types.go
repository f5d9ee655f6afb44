package layout

import (
	"fmt"
	"math/bits"
	"strings"
)

// Type is the wire type of a field.
type Type uint8

// The wire types. Int and Uint types are two's complement and plain
// binary; Float32/Float64 are IEEE 754; Bool and Bits are bit fields;
// String is fixed-width text padded with NUL bytes.
const (
	Int8 Type = iota + 1
	Int16
	Int32
	Int64
	Uint8
	Uint16
	Uint32
	Uint64
	Float32
	Float64
	Bool
	Bits
	String
)

var typeNames = [...]string{"", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64", "bool", "bits", "string"}

func (t Type) String() string {
	if int(t) < len(typeNames) && t != 0 {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// ParseType parses a type name as written in YAML ("int16", "float32",
// "bool", ...); "s16"/"u16"/"f32" style short names are accepted too.
func ParseType(s string) (Type, error) {
	short := map[string]Type{"s8": Int8, "s16": Int16, "s32": Int32, "s64": Int64, "u8": Uint8, "u16": Uint16,
		"u32": Uint32, "u64": Uint64, "f32": Float32, "f64": Float64}
	if t, ok := short[s]; ok {
		return t, nil
	}
	for i, n := range typeNames {
		if i > 0 && n == s {
			return Type(i), nil
		}
	}
	return 0, fmt.Errorf("unknown type %q (want one of %s)", s, strings.Join(typeNames[1:], ", "))
}

// Size is the width in bytes of the numeric types, 0 for the others.
func (t Type) Size() int {
	switch t {
	case Int8, Uint8:
		return 1
	case Int16, Uint16:
		return 2
	case Int32, Uint32, Float32:
		return 4
	case Int64, Uint64, Float64:
		return 8
	}
	return 0
}

// Order is the byte order of a multi-byte field. Letters name the bytes of
// the value from most significant (A) to least, in the order they appear on
// the wire: BigEndian is ABCD. Modbus devices put 32- and 64-bit values in
// consecutive 16-bit registers, each register big-endian, but disagree on
// which register comes first: WordSwap (CDAB) puts the low word first;
// ByteSwap (BADC) keeps the word order and swaps the bytes in each word.
type Order uint8

// The byte orders. The zero Order is BigEndian.
const (
	BigEndian    Order = iota // ABCD, network order, the Modbus default
	LittleEndian              // DCBA
	WordSwap                  // CDAB: big-endian words, least significant word first
	ByteSwap                  // BADC: most significant word first, bytes swapped in each word
)

var orderNames = [...]string{"abcd", "dcba", "cdab", "badc"}

func (o Order) String() string {
	if int(o) < len(orderNames) {
		return orderNames[o]
	}
	return fmt.Sprintf("order(%d)", uint8(o))
}

// ParseOrder accepts "abcd"/"big", "dcba"/"little", "cdab"/"word-swap",
// "badc"/"byte-swap"; "" is BigEndian.
func ParseOrder(s string) (Order, error) {
	switch strings.ToLower(s) {
	case "", "abcd", "big", "big-endian":
		return BigEndian, nil
	case "dcba", "little", "little-endian":
		return LittleEndian, nil
	case "cdab", "word-swap", "big-endian-word-swap":
		return WordSwap, nil
	case "badc", "byte-swap", "little-endian-word-swap":
		return ByteSwap, nil
	}
	return 0, fmt.Errorf("unknown byte order %q (want abcd, dcba, cdab or badc)", s)
}

// reorder converts between the wire order o and big-endian for an n-byte
// value held in the low bits of x. Each order is its own inverse.
func reorder(x uint64, n int, o Order) uint64 {
	switch o {
	case LittleEndian:
		return bits.ReverseBytes64(x) >> (64 - 8*uint(n))
	case WordSwap:
		switch n {
		case 4:
			return x>>16&0xffff | x&0xffff<<16
		case 8:
			return x>>48 | x>>16&0xffff0000 | x&0xffff0000<<16 | x<<48
		}
	case ByteSwap:
		if n >= 2 {
			return x>>8&0x00ff00ff00ff00ff | x&0x00ff00ff00ff00ff<<8
		}
	}
	return x
}

// load reads an n-byte (1, 2, 4, 8) unsigned value in order o from b.
func load(b []byte, n int, o Order) uint64 {
	var x uint64
	switch n {
	case 1:
		return uint64(b[0])
	case 2:
		x = uint64(b[1]) | uint64(b[0])<<8
	case 4:
		_ = b[3]
		x = uint64(b[3]) | uint64(b[2])<<8 | uint64(b[1])<<16 | uint64(b[0])<<24
	default:
		_ = b[7]
		x = uint64(b[7]) | uint64(b[6])<<8 | uint64(b[5])<<16 | uint64(b[4])<<24 |
			uint64(b[3])<<32 | uint64(b[2])<<40 | uint64(b[1])<<48 | uint64(b[0])<<56
	}
	return reorder(x, n, o)
}

// store writes the low n bytes of x in order o to b.
func store(b []byte, n int, o Order, x uint64) {
	x = reorder(x, n, o)
	for i := n - 1; i >= 0; i-- {
		b[i] = byte(x)
		x >>= 8
	}
}
