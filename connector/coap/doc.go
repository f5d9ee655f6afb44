// Package coap is the CoAP device connector (RFC 7252 over UDP, with
// block-wise transfer and Observe).
//
// The happy path:
//
//	c, _ := coap.New(coap.WithAddress("0.0.0.0:5683"))
//	g, _ := gateway.New(gateway.WithConnector("coap", c), gateway.WithSink("cloud", sink))
//	// device: coap-client -m post -e 21.5 coap://gw/devices/sensor-1/temp
//
// # Ingest contract
//
// Devices POST or PUT to /devices/<device>/<topic...> (the prefix is set
// by WithPathPrefix). The payload, reassembled from Block1 transfers when
// large, becomes one frame. The answer is 2.04 Changed only once the
// gateway accepted the frame; otherwise 4.00 (bad path or empty body),
// 4.05 (other methods), 4.13 (larger than WithMaxBody) or 5.03 with
// Max-Age 1 (queue full, shutting down, not accepted in time), each with
// a plain-text reason.
//
// # Observe and downlink
//
// WithObserve registers an observation of a device resource; every
// notification becomes a frame. The observer re-registers with backoff
// when the device stops answering keepalive pings and when no
// notification arrived for the refresh period, since a restarted device
// forgets its observers silently. Write sends a confirmable POST (or PUT)
// to the device.
//
// # Transports
//
// By default the server listens on plain UDP. WithPacketConn serves an
// existing socket; WithConnListener serves the conns of any listener that
// yields one net.Conn per peer, which is how a DTLS layer plugs in
// without changes here.
//
// # Trade-offs
//
// The CoAP stack keeps, per peer, every response for the RFC exchange
// lifetime (247 s) to answer retransmissions, and scans that cache on
// each datagram: a device that sends many requests per second costs more
// CPU per request than many devices that send a few.
package coap
