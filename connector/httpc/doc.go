// Package httpc is the HTTP device connector: an ingest endpoint devices
// POST frames to, optional polling of device HTTP endpoints, and downlink
// by POST to a device endpoint.
//
// The happy path:
//
//	c, _ := httpc.New(httpc.WithAddress("0.0.0.0:8081"), httpc.WithDeviceToken("sensor-1", "s3cret"))
//	g, _ := gateway.New(gateway.WithConnector("http", c), gateway.WithSink("cloud", sink))
//	// device: curl -H 'Authorization: Bearer s3cret' --data-binary @reading.json http://gw:8081/v1/devices/sensor-1/telemetry
//
// # Ingest contract
//
// POST (or PUT) /v1/devices/{id}/{topic...} with the frame bytes as body.
// The frame's Topic is {topic...}, the part after the device id, as for
// every connector.
// The answer is:
//
//   - 202 once the gateway accepted the frame (Uplink.Deliver returned nil);
//   - 400 for a bad device id, topic or an empty body, or a body the
//     connector's codec cannot decode (decoded before answering,
//     gateway.DeliverChecked; polled devices' frames cannot be refused and
//     go to the gateway's dead letters instead);
//   - 401 when tokens are configured and the bearer token is missing or wrong;
//   - 413 when the body is larger than WithMaxBody;
//   - 429 when the device exceeds its rate limit or the gateway's queue is
//     full under the drop-newest policy (with Retry-After);
//   - 503 while the gateway shuts down or could not accept the frame within
//     WithDeliverTimeout.
//
// Every non-202 answer carries a one-line plain-text reason. A client that
// did not get 202 should retry: the frame was not taken.
//
// Device connections, accepted and polled, have TCP keepalive probes after
// 30 s idle, 30 s apart; the server has read, write and
// idle timeouts so a stalled client cannot hold a connection forever.
//
// Trace context: the W3C traceparent and tracestate headers of a request
// become the frame's trace context (gateway.Frame.Trace); without them, or
// with a malformed traceparent (never refused), the trace starts at the
// gateway.
package httpc
