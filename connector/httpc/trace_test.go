package httpc

import (
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
)

// curl's traceparent and tracestate headers become the frame's trace
// context; a malformed traceparent is ignored (the trace starts at the
// gateway), never refused.
func TestCurlTraceParent(t *testing.T) {
	col := conntest.NewCollector()
	_, base := start(t, col)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if code, body := curl(t, "-H", "traceparent: "+tp, "-H", "tracestate: rojo=00f067aa0ba902b7",
		"--data-binary", "21.5", base+"/v1/devices/dev-1/env"); code != 202 {
		t.Fatalf("got %d %q", code, body)
	}
	if code, body := curl(t, "-H", "traceparent: 00-xyz", "--data-binary", "1", base+"/v1/devices/dev-1/env"); code != 202 {
		t.Fatalf("malformed traceparent: got %d %q", code, body)
	}
	fs := col.WaitFor(t, 5*time.Second, "frames", func(fs []gateway.Frame) bool { return len(fs) == 2 })
	if got := fs[0].Trace; got.TraceParent() != tp || got.State != "rojo=00f067aa0ba902b7" {
		t.Fatalf("trace context %+v, want %s", got, tp)
	}
	if fs[1].Trace.IsValid() {
		t.Fatalf("malformed traceparent gave %+v", fs[1].Trace)
	}
}
