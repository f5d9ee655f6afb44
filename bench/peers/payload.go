package main

import (
	"bytes"
	"math"
	"strconv"
)

// appendPayload appends the JSON reading a device publishes.
func appendPayload(b []byte, id int, dev string) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, int64(id), 10)
	b = append(b, `,"dev":"`...)
	b = append(b, dev...)
	b = append(b, `","v":`...)
	b = strconv.AppendFloat(b, float64(id%1000)/10, 'f', 1, 64)
	return append(b, '}')
}

var (
	rawIDKey      = []byte(`"id":`)
	envelopeIDKey = []byte(`{"name":"id","value":`)
	probeKey      = []byte(`probe`)
)

// parseID finds the sequence id of a reading in what reaches the far
// broker: the device's own JSON (a pass-through peer) or gatewayd's
// envelope, where the reading's fields are points and "id" is the
// envelope's message id. ok is false when there is none.
func parseID(p []byte) (id int, ok bool) {
	if i := bytes.Index(p, envelopeIDKey); i >= 0 {
		return parseNumber(p[i+len(envelopeIDKey):])
	}
	if i := bytes.Index(p, rawIDKey); i >= 0 {
		return parseNumber(p[i+len(rawIDKey):])
	}
	return 0, false
}

// parseNumber parses the non-negative integer JSON number at the start of
// p, also in the forms a float encoder may give it (123.0, 1.23e+06).
func parseNumber(p []byte) (int, bool) {
	for len(p) > 0 && p[0] == ' ' {
		p = p[1:]
	}
	n := 0
	for n < len(p) && (p[n] >= '0' && p[n] <= '9' || p[n] == '.' || p[n] == 'e' || p[n] == 'E' || p[n] == '+' || p[n] == '-') {
		n++
	}
	if n == 0 {
		return 0, false
	}
	if v, err := strconv.Atoi(string(p[:n])); err == nil {
		return v, v >= 0
	}
	f, err := strconv.ParseFloat(string(p[:n]), 64)
	if err != nil || f < 0 || f > math.MaxInt32 || f != math.Trunc(f) {
		return 0, false
	}
	return int(f), true
}

// isProbe reports whether p is a readiness probe (see probePayload).
func isProbe(p []byte) bool { return bytes.Contains(p, probeKey) }

// probePayload is what the harness sends through a peer until it comes out
// on the far side: the peer is then connected and subscribed end to end.
var probePayload = []byte(`{"probe":1}`)
