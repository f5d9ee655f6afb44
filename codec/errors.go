package codec

import "github.com/iotgw/gateway/codec/layout"

// The errors every codec of this module wraps, re-exported from package
// layout so callers need one import: test with errors.As for *FieldError
// (field name and byte offset) and errors.Is for the reason.
var (
	ErrShortFrame   = layout.ErrShortFrame
	ErrType         = layout.ErrType
	ErrRange        = layout.ErrRange
	ErrUnknownField = layout.ErrUnknownField
	ErrMissingField = layout.ErrMissingField
	ErrSyntax       = layout.ErrSyntax
)

// FieldError locates a decode or encode failure; see layout.FieldError.
type FieldError = layout.FieldError
