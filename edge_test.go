package gateway

import (
	"bytes"
	"testing"
	"time"
)

func TestFrameBinaryRoundTrip(t *testing.T) {
	f := &Frame{Device: "plc-1", Topic: "hr/0", Connector: "modbus", Received: time.Unix(0, 1700000000123456789),
		ID: NewIDGenerator().Next(), Payload: []byte{1, 2, 3}}
	var g Frame
	if err := unmarshalFrameBinary(&g, appendFrameBinary(nil, f)); err != nil {
		t.Fatal(err)
	}
	if g.Device != f.Device || g.Topic != f.Topic || g.Connector != f.Connector || !g.Received.Equal(f.Received) ||
		g.ID != f.ID || !bytes.Equal(g.Payload, f.Payload) {
		t.Fatalf("round trip: got %+v, want %+v", g, f)
	}
	b := appendFrameBinary(nil, f)
	for _, cut := range []int{0, 1, 10, 17, len(b) - 1} {
		if err := unmarshalFrameBinary(&Frame{}, b[:cut]); err == nil {
			t.Fatalf("truncated at %d accepted", cut)
		}
	}
}

func FuzzFrameBinary(f *testing.F) {
	f.Add(appendFrameBinary(nil, &Frame{Device: "d", Topic: "t", Payload: []byte("x")}))
	f.Add([]byte{1})
	traced := &Frame{Device: "d", Topic: "t", Payload: []byte("x")}
	traced.Trace, _ = ParseTraceHeaders("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "a=b")
	(&Gateway{s: defaultSettings()}).startTrace(traced)
	f.Add(appendFrameBinary(nil, traced))
	f.Fuzz(func(t *testing.T, b []byte) {
		var g Frame
		if err := unmarshalFrameBinary(&g, b); err != nil {
			return
		}
		var h Frame
		if err := unmarshalFrameBinary(&h, appendFrameBinary(nil, &g)); err != nil {
			t.Fatalf("re-encoded frame rejected: %v", err)
		}
		if h.Device != g.Device || h.Topic != g.Topic || h.ID != g.ID || !bytes.Equal(h.Payload, g.Payload) ||
			h.gw != g.gw || h.tr.parent != g.tr.parent || h.Trace != g.Trace {
			t.Fatal("round trip changed the frame")
		}
	})
}
