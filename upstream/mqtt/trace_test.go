package mqtt

import (
	"encoding/json"
	"testing"

	"github.com/iotgw/gateway"
)

// The envelope carries the message's own trace context (the device's trace
// continued by the gateway); a message without one keeps the id-derived
// form.
func TestEnvelopeTraceParent(t *testing.T) {
	s := &Sink{traceparent: defaultTraceParent}
	m := &gateway.Message{ID: gateway.MessageID{1, 2, 3}, Device: "d"}
	m.Trace, _ = gateway.ParseTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	var e struct {
		TraceParent string `json:"traceparent"`
	}
	if err := json.Unmarshal(s.envelope(nil, m), &e); err != nil {
		t.Fatal(err)
	}
	if e.TraceParent != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Fatalf("traceparent %q", e.TraceParent)
	}
	m.Trace = gateway.TraceContext{}
	if err := json.Unmarshal(s.envelope(nil, m), &e); err != nil {
		t.Fatal(err)
	}
	if id := m.ID.String(); e.TraceParent != "00-"+id+"-"+id[16:]+"-01" {
		t.Fatalf("fallback traceparent %q", e.TraceParent)
	}
}
