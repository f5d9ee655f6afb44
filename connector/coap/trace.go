package coap

import (
	"github.com/iotgw/gateway"
	"github.com/plgd-dev/go-coap/v3/message"
)

// OptionTraceContext is the number of the experimental CoAP option that
// carries a device's W3C trace context in its binary form (29 bytes: see
// gateway.TraceContext.AppendTraceBinary). 65020 lies in the experimental
// range (65000-65535, RFC 7252 section 12.2) and is elective, safe to
// forward and not part of the cache key, so a server or proxy that does
// not know it ignores it. A request carrying it is served by the general
// CoAP path rather than the single-datagram fast path. A missing or
// malformed option starts the trace at the gateway.
const OptionTraceContext = 65020

// optionTrace reads the trace context option of a request.
func optionTrace(opts message.Options) gateway.TraceContext {
	b, err := opts.GetBytes(message.OptionID(OptionTraceContext))
	if err != nil {
		return gateway.TraceContext{}
	}
	tc, err := gateway.ParseTraceBinary(b)
	if err != nil {
		return gateway.TraceContext{}
	}
	return tc
}
