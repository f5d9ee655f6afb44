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
// by WithPathPrefix); the frame's Topic is <topic...>, the part after the
// device id, as for every connector. The payload, reassembled from Block1 transfers when
// large, becomes one frame. The answer is 2.04 Changed only once the
// gateway accepted the frame; otherwise 4.00 (bad path, empty body, or a
// payload the connector's codec cannot decode: ingest decodes before
// answering, gateway.DeliverChecked),
// 4.05 (other methods), 4.13 (larger than WithMaxBody) or 5.03 with
// Max-Age 1 (queue full, shutting down, not accepted in time), each with
// a plain-text reason. Observe notifications cannot be refused: one the
// codec rejects goes to the gateway's dead letters (gateway.WithDeadLetter).
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
// existing socket; WithDTLS serves coaps through a dtlsx listener (PSK
// and/or certificates; the YAML dtls: block); WithConnListener serves the
// conns of any listener that yields one net.Conn per peer.
//
// # DTLS identities
//
// Over DTLS the identity the handshake authenticated (the PSK identity,
// or the subject common name of a client certificate verified with
// dtlsx.WithClientCAs) decides which device a request may send as: by
// default the device of the same name, or the devices
// WithIdentityDevices lists for it. Any other device gets 4.03
// Forbidden; a peer without an identity (a certificate suite without a
// client certificate) gets 4.01 Unauthorized unless WithAnonymousDTLS.
// Refusals count in Stats().Total.Denied and Errors, deliver nothing, and
// are logged once a minute per identity and device. The check runs once
// per request after block-wise reassembly, on full and resumed sessions
// alike. Plain UDP (and its fast path) authenticates nobody: there the
// path alone names the device.
//
// # DTLS session persistence
//
// WithDTLSSessionStore (YAML session_store and session_keys) keeps
// resumable sessions in a SQLite file, sealed under a key ring file, so
// devices resume (an abbreviated handshake) after a gateway restart
// instead of repeating the full one. The store opens at Connect and
// closes, flushed, at Disconnect.
//
// # Plain-UDP fast path
//
// On plain UDP the connector reads the socket itself and answers the
// common request alone: a confirmable or non-confirmable POST/PUT with
// no Block1, Block2, Observe or unknown option. It parses the datagram
// (RFC 7252), delivers the frame, answers with a piggybacked ACK (or a
// NON response), and recognises retransmissions by peer and message id
// in a bounded cache that expires in arrival order, so a retransmitted
// request gets the first answer again and is never delivered twice while
// its entry lives (WithDuplicateCache). Every other datagram (GET,
// block-wise, Observe, pings) goes to go-coap on the same socket.
// Malformed datagrams are counted in Stats().Total.Malformed (a
// confirmable one gets a Reset); datagrams dropped because a go-coap
// session's queue was full count as errors. WithFastPath(false) hands
// everything to go-coap's UDP server. On Linux each reader takes up to
// WithUDPBatch datagrams (default 16) per recvmmsg and sends the batch's
// answers with one sendmmsg, into preallocated buffers; a datagram longer
// than a buffer (max body plus 1 KiB) is answered 4.13. Elsewhere, and
// with WithUDPBatch(1), it reads and writes one datagram per call.
//
// # Logging
//
// The connector logs through WithLogger. go-coap's own error reports
// (which it would print to stdout) go there too, as "coap: go-coap"
// warnings, at most one a minute with a count of those suppressed.
//
// # Trade-offs
//
// go-coap keeps, per peer, every response for the RFC exchange lifetime
// (247 s) and its UDP server scans that cache on each datagram; the fast
// path exists because that made a busy device cost more CPU per request
// than many quiet ones. The fast path's duplicate cache is bounded
// instead (default 32,768 entries, about 6 MB when full): above its rate
// a retransmission can outlive its entry and be delivered again, which
// is at-least-once, as for every device protocol. Readers block while
// the gateway decides on a frame, so a full pipeline under the Block
// overflow policy slows reading for every device (backpressure) until
// WithTimeouts' deliver timeout answers 5.03.
//
// Trace context: a request may carry the device's W3C trace context in the
// experimental elective option 65020 (OptionTraceContext), its value the
// 29-byte binary form (gateway.TraceContext.AppendTraceBinary). The frame
// then continues the device's trace; without it, or with a malformed
// value, the trace starts at the gateway. Such a request is served by the
// general path, not the single-datagram fast path.
package coap
