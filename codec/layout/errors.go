package layout

import (
	"errors"
	"strconv"
)

// Sentinel errors shared by the codecs of this module; test for them with
// errors.Is. Package codec re-exports them.
var (
	// ErrShortFrame: the payload ends before a field does.
	ErrShortFrame = errors.New("short frame")
	// ErrType: a value has a kind the field cannot hold (a string for an
	// int16, a number where text is expected).
	ErrType = errors.New("wrong type")
	// ErrRange: a value does not fit the field (overflow, NaN, infinity, a
	// string longer than its fixed size).
	ErrRange = errors.New("value out of range")
	// ErrUnknownField: a message names a point the codec does not know.
	ErrUnknownField = errors.New("unknown field")
	// ErrMissingField: a message lacks a point the codec needs to encode.
	ErrMissingField = errors.New("missing field")
	// ErrSyntax: malformed input (JSON, a block name).
	ErrSyntax = errors.New("syntax error")
)

// FieldError locates a decode or encode failure: the field (point name,
// register or JSON key) and the byte offset in the payload, or -1 when the
// failure has no position. It wraps one of the sentinel errors.
type FieldError struct {
	Codec  string // "layout", "json", "modbus", "mapping"
	Field  string
	Offset int
	Err    error
}

func (e *FieldError) Error() string {
	b := make([]byte, 0, 64)
	b = append(b, e.Codec...)
	b = append(b, ": field "...)
	b = strconv.AppendQuote(b, e.Field)
	if e.Offset >= 0 {
		b = append(b, " at offset "...)
		b = strconv.AppendInt(b, int64(e.Offset), 10)
	}
	b = append(b, ": "...)
	b = append(b, e.Err.Error()...)
	return string(b)
}

func (e *FieldError) Unwrap() error { return e.Err }
