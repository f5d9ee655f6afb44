package mqtt

import (
	"github.com/iotgw/gateway"
	"github.com/mochi-mqtt/server/v2/packets"
)

// userPropertyTrace reads the W3C trace context an MQTT 5 device sends as
// the user properties "traceparent" and "tracestate" of a PUBLISH (the
// CloudEvents MQTT binding's convention). A missing or malformed
// traceparent gives the zero context: the trace starts at the gateway.
func userPropertyTrace(props []packets.UserProperty) gateway.TraceContext {
	var tp, ts string
	for _, p := range props {
		switch p.Key {
		case "traceparent":
			if tp == "" {
				tp = p.Val
			}
		case "tracestate":
			if ts == "" {
				ts = p.Val
			}
		}
	}
	tc, _ := gateway.ParseTraceHeaders(tp, ts)
	return tc
}
