package coap

import (
	"encoding/hex"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
	"github.com/plgd-dev/go-coap/v3/message"
)

// libcoap's coap-client sends the experimental trace context option; the
// frame carries it. A malformed option value starts a new trace.
func TestCoapClientTraceOption(t *testing.T) {
	col := conntest.NewCollector()
	_, addr := start(t, col)
	tc, _ := gateway.ParseTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	opt := "65020,0x" + hex.EncodeToString(tc.AppendTraceBinary(nil))
	if out, err := coapClient(t, "-m", "post", "-O", opt, "-e", "21.5", "coap://"+addr+"/devices/dev1/env"); err != nil {
		t.Fatalf("coap-client: %v %s", err, out)
	}
	if out, err := coapClient(t, "-m", "post", "-O", "65020,0x0102", "-e", "1", "coap://"+addr+"/devices/dev1/env"); err != nil {
		t.Fatalf("coap-client: %v %s", err, out)
	}
	fs := col.WaitFor(t, 5*time.Second, "frames", func(fs []gateway.Frame) bool { return len(fs) == 2 })
	if got := fs[0].Trace; got.TraceID != tc.TraceID || got.SpanID != tc.SpanID || !got.Sampled() {
		t.Fatalf("trace context %+v, want %+v", got, tc)
	}
	if fs[1].Trace.IsValid() {
		t.Fatalf("malformed option gave %+v", fs[1].Trace)
	}
}

func TestOptionTraceNumber(t *testing.T) {
	// Experimental range, elective (even), safe to forward (bit 1 clear),
	// NoCacheKey (bits 2-4 set): RFC 7252 sections 5.4.6 and 12.2.
	n := OptionTraceContext
	if n < 65000 || n > 65535 || n&1 != 0 || n&2 != 0 || n&0x1e != 0x1c {
		t.Fatalf("option %d is not an experimental elective safe no-cache-key option", n)
	}
	var opts message.Options
	buf := make([]byte, 64)
	tc, _ := gateway.ParseTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	opts, _, _ = opts.SetBytes(buf, message.OptionID(n), tc.AppendTraceBinary(nil))
	if got := optionTrace(opts); got.TraceID != tc.TraceID {
		t.Fatalf("got %+v", got)
	}
}
