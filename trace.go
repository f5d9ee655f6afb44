package gateway

import (
	"encoding/hex"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/trace"
)

// TraceContext is a W3C trace context as plain fields. A Frame carries the
// one its device sent (connectors fill Frame.Trace from the protocol: the
// HTTP traceparent and tracestate headers, MQTT 5 user properties of the
// same names, a CoAP option); a Message carries the gateway's own, which
// continues the device's trace or starts a new one. Keeping it in fields,
// not in a context.Context, costs nothing for the messages nobody traces.
type TraceContext struct {
	TraceID trace.TraceID
	SpanID  trace.SpanID
	Flags   trace.TraceFlags
	// State is the W3C tracestate header, passed on as it came ("" when
	// none).
	State string
}

// IsValid reports whether tc has a non-zero trace id and span id.
func (tc TraceContext) IsValid() bool { return tc.TraceID.IsValid() && tc.SpanID.IsValid() }

// Sampled reports whether the sampled flag is set.
func (tc TraceContext) Sampled() bool { return tc.Flags.IsSampled() }

// SpanContext returns tc as an OpenTelemetry span context, marked remote.
func (tc TraceContext) SpanContext() trace.SpanContext {
	ts, _ := trace.ParseTraceState(tc.State)
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tc.TraceID, SpanID: tc.SpanID, TraceFlags: tc.Flags, TraceState: ts, Remote: true,
	})
}

// traceParentLen is the length of a version 00 traceparent header.
const traceParentLen = 55

// ErrTraceContext is wrapped by the errors of ParseTraceParent and
// ParseTraceBinary.
var ErrTraceContext = errors.New("invalid trace context")

// ParseTraceParent parses a W3C traceparent header
// ("00-<32 hex trace id>-<16 hex span id>-<2 hex flags>"), leaving State
// empty. A higher version is read as version 00 where its first four fields
// allow it, as the specification asks; version ff, upper-case hex, all-zero
// ids and wrong lengths are errors wrapping ErrTraceContext.
func ParseTraceParent(s string) (TraceContext, error) {
	var tc TraceContext
	if len(s) < traceParentLen {
		return tc, fmt.Errorf("traceparent: %d bytes, want at least %d: %w", len(s), traceParentLen, ErrTraceContext)
	}
	var ver [1]byte
	if err := decodeLowerHex(ver[:], s[0:2]); err != nil {
		return tc, fmt.Errorf("traceparent: version at offset 0: %w", err)
	}
	if ver[0] == 0xff {
		return tc, fmt.Errorf("traceparent: version ff at offset 0: %w", ErrTraceContext)
	}
	if ver[0] == 0 && len(s) != traceParentLen || ver[0] != 0 && len(s) > traceParentLen && s[traceParentLen] != '-' {
		return tc, fmt.Errorf("traceparent: %d bytes for version %02x: %w", len(s), ver[0], ErrTraceContext)
	}
	for _, i := range [...]int{2, 35, 52} {
		if s[i] != '-' {
			return tc, fmt.Errorf("traceparent: want '-' at offset %d: %w", i, ErrTraceContext)
		}
	}
	if err := decodeLowerHex(tc.TraceID[:], s[3:35]); err != nil {
		return tc, fmt.Errorf("traceparent: trace id at offset 3: %w", err)
	}
	if err := decodeLowerHex(tc.SpanID[:], s[36:52]); err != nil {
		return tc, fmt.Errorf("traceparent: span id at offset 36: %w", err)
	}
	var fl [1]byte
	if err := decodeLowerHex(fl[:], s[53:55]); err != nil {
		return tc, fmt.Errorf("traceparent: flags at offset 53: %w", err)
	}
	tc.Flags = trace.TraceFlags(fl[0])
	if ver[0] == 0 && fl[0]&^byte(trace.FlagsSampled|trace.FlagsRandom) != 0 {
		// Unknown flags of version 00 are ignored, not refused.
		tc.Flags &= trace.FlagsSampled | trace.FlagsRandom
	}
	if !tc.TraceID.IsValid() {
		return TraceContext{}, fmt.Errorf("traceparent: trace id is all zeros: %w", ErrTraceContext)
	}
	if !tc.SpanID.IsValid() {
		return TraceContext{}, fmt.Errorf("traceparent: span id is all zeros: %w", ErrTraceContext)
	}
	return tc, nil
}

// decodeLowerHex decodes s into dst, refusing upper-case digits (W3C
// trace context allows lower case only).
func decodeLowerHex(dst []byte, s string) error {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'F' {
			return fmt.Errorf("upper-case hex %q: %w", c, ErrTraceContext)
		}
	}
	if _, err := hex.Decode(dst, []byte(s)); err != nil {
		return fmt.Errorf("%v: %w", err, ErrTraceContext)
	}
	return nil
}

// AppendTraceParent appends the version 00 traceparent header of tc.
func (tc TraceContext) AppendTraceParent(dst []byte) []byte {
	dst = append(dst, "00-"...)
	dst = hex.AppendEncode(dst, tc.TraceID[:])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, tc.SpanID[:])
	dst = append(dst, '-', hexDigits[tc.Flags>>4], hexDigits[tc.Flags&0xf])
	return dst
}

// TraceParent returns the version 00 traceparent header of tc.
func (tc TraceContext) TraceParent() string {
	var b [traceParentLen]byte
	return string(tc.AppendTraceParent(b[:0]))
}

// TraceBinaryLen is the size of the binary trace context.
const TraceBinaryLen = 29

// AppendTraceBinary appends the binary form of tc: the OpenTelemetry
// binary trace context layout, 29 bytes:
//
//	version 0x00, field 0x00, trace id (16), field 0x01, span id (8),
//	field 0x02, flags (1)
//
// The CoAP connector carries it in an option (see connector/coap).
// State is not part of it.
func (tc TraceContext) AppendTraceBinary(dst []byte) []byte {
	dst = append(dst, 0, 0)
	dst = append(dst, tc.TraceID[:]...)
	dst = append(dst, 1)
	dst = append(dst, tc.SpanID[:]...)
	return append(dst, 2, byte(tc.Flags))
}

// ParseTraceBinary parses the binary form written by AppendTraceBinary.
// Errors wrap ErrTraceContext and name the offset.
func ParseTraceBinary(b []byte) (TraceContext, error) {
	var tc TraceContext
	if len(b) != TraceBinaryLen {
		return tc, fmt.Errorf("binary trace context: %d bytes, want %d: %w", len(b), TraceBinaryLen, ErrTraceContext)
	}
	if b[0] != 0 {
		return tc, fmt.Errorf("binary trace context: version %d at offset 0: %w", b[0], ErrTraceContext)
	}
	for _, f := range [...]struct{ off, id int }{{1, 0}, {18, 1}, {27, 2}} {
		if int(b[f.off]) != f.id {
			return tc, fmt.Errorf("binary trace context: field %d at offset %d, want %d: %w", b[f.off], f.off, f.id, ErrTraceContext)
		}
	}
	copy(tc.TraceID[:], b[2:18])
	copy(tc.SpanID[:], b[19:27])
	tc.Flags = trace.TraceFlags(b[28])
	if !tc.IsValid() {
		return TraceContext{}, fmt.Errorf("binary trace context: all-zero trace or span id: %w", ErrTraceContext)
	}
	return tc, nil
}

// maxTraceStateLen bounds the tracestate kept from a device: the W3C
// limit is 32 members, which fits in 512 bytes in practice.
const maxTraceStateLen = 512

// ValidTraceState returns s when it is a tracestate the W3C grammar
// accepts and not longer than 512 bytes, else "" (a bad tracestate is
// dropped; the traceparent still counts).
func ValidTraceState(s string) string {
	if s == "" || len(s) > maxTraceStateLen {
		return ""
	}
	if _, err := trace.ParseTraceState(s); err != nil {
		return ""
	}
	return s
}

// ParseTraceHeaders parses a traceparent and its tracestate, as an HTTP
// request or MQTT 5 user properties carry them. An empty traceparent
// gives the zero TraceContext and no error (a new trace starts at the
// gateway); a bad one an error wrapping ErrTraceContext (the caller then
// starts a new trace too, as W3C trace context asks). A bad tracestate is
// dropped.
func ParseTraceHeaders(traceparent, tracestate string) (TraceContext, error) {
	if traceparent == "" {
		return TraceContext{}, nil
	}
	tc, err := ParseTraceParent(traceparent)
	if err != nil {
		return TraceContext{}, err
	}
	tc.State = ValidTraceState(tracestate)
	return tc, nil
}
