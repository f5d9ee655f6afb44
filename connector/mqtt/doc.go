// Package mqtt is the MQTT device connector, in two modes.
//
// Listener mode runs an embedded broker (mochi-mqtt) that devices connect
// to, with per-device authentication (username/password or TLS client
// certificate), topic ACLs and a session limit:
//
//	l, _ := mqtt.NewListener(mqtt.WithListenAddress("0.0.0.0:1883"),
//		mqtt.WithDeviceAuth(mqtt.DeviceAuth{Username: "sensor-1", Password: "s3cret"}))
//	g, _ := gateway.New(gateway.WithConnector("mqtt", l), gateway.WithSink("cloud", sink))
//
// Client mode subscribes to an existing broker (paho) and takes the device
// id from a topic level:
//
//	c, _ := mqtt.NewClient(mqtt.WithBroker("tcp://broker:1883"), mqtt.WithTopics(1, "sensors/{device}/#"))
//
// # Frames
//
// Each accepted PUBLISH becomes one frame: Device is the authenticated
// device (listener) or the {device} topic level (client), Payload the
// message bytes, and Topic the device-side topic, the same as other
// connectors give for the same reading: the MQTT topic's levels after
// the device id. A listener device publishing "devices/sensor-1/env"
// yields "env" (after the first level equal to the device id); a client
// pattern "sensors/{device}/#" turns "sensors/s1/temp" into "temp".
// When no level follows the device id (or, in listener mode, no level
// is the device id), Topic is the whole MQTT topic. QoS 1/2 messages are
// acknowledged only once the gateway accepted the frame.
//
// The listener decodes an MQTT 5 QoS 1/2 publish before acknowledging it
// (gateway.DeliverChecked): a payload its codec rejects gets PUBACK 0x99
// (payload format invalid). MQTT 3.1.1 and QoS 0 cannot refuse a payload:
// such a frame is accepted and goes to the gateway's dead letters
// (gateway.WithDeadLetter), as do those of client mode.
//
// # Pipelined acknowledgements
//
// Neither mode waits for one message to be accepted before handing over
// the next. The listener gathers the QoS 0 and 1 PUBLISHes one read
// brought in (up to WithInflightWindow, 64 by default) and delivers them
// in one gateway.DeliverBatch; in edge mode that is one Store commit for
// them all. Each PUBACK is written once its own frame is accepted, in
// order, and the PUBACKs of a batch leave in one write. The client mode
// submits every message to a gateway.Pipeline (WithClientInflightWindow,
// 64 by default) and goes on reading; each message is acknowledged to the
// broker from its completion, in order. A refused QoS 1 message is never
// acknowledged, and in client mode neither is any message after it in
// that session: the broker redelivers from there, in order.
//
// # Working around the MQTT libraries
//
// Two libraries are wrapped rather than forked, at their connections,
// because their per-packet system calls dominated the cost of forwarding
// a message (BENCHMARKS.md, bench/peers):
//
//   - the embedded broker (mochi-mqtt) writes every packet to the
//     connection as it produces it. The listener gives it a
//     bufconn.Held connection, held while a worker processes a read's
//     packets, so a batch's PUBACKs leave in one write; outside a batch
//     (the broker's write loop, downlink commands) writes go straight
//     through. The wrapper unwraps to the real connection for the TLS
//     identity check and passes CloseWrite on (after flushing) for the
//     linger after an oversized packet;
//   - paho, in client mode, reads each packet header a byte at a time
//     and writes each PUBACK on its own. The client dials the broker
//     itself (tcp, mqtt, ssl, tls, mqtts and tcps URLs; paho dials
//     websockets) and gives paho a bufconn.Coalesced connection below
//     TLS: reads through a 64 KiB buffer, and writes gathered by a writer
//     goroutine, everything written while the previous write was in the
//     kernel going out in the next one.
//
// # Reload
//
// The listener implements gateway.Reconfigurer: a configuration reload
// that changes its devices, ACLs, anonymous access, session limit,
// timeouts or command topic takes effect in place and connected devices
// stay connected. A device whose credentials were removed or changed (or
// an anonymous device when anonymous access is turned off) is
// disconnected at once, without its will; every other device's new ACL
// applies from its next packet. Only a new listen address or TLS identity
// restarts the listener, dropping its sessions. See Listener.Reconfigure.
//
// # Retain, packet size and acknowledgements
//
// The gateway keeps no retained messages: a device's message is data for
// the pipeline, not state for other devices. The MQTT 5 CONNACK says so
// (Retain Available 0) along with the Maximum Packet Size
// (WithSessionLimits, 256 KiB by default), so MQTT 5 clients send neither
// (libmosquitto clears the retain flag and holds back an oversized
// message). An MQTT 5 device that sends a retained PUBLISH anyway is
// disconnected with "retain not supported" (0x9A), and a will with retain
// is refused in CONNACK (0x9A), as the specification requires. MQTT 3.1.1
// has no way to refuse retain: a retained PUBLISH or will is taken as an
// ordinary one, the flag dropped.
//
// A packet over the size limit ends the session: an MQTT 5 device gets
// DISCONNECT "packet too large" (0x95), and the listener reads and
// discards the rest of the packet for up to a second before closing, so
// the device sees the DISCONNECT and an orderly close rather than a
// connection reset. Each is counted (Stats Oversized) and logged.
//
// A successful MQTT 5 PUBACK has reason 0x00 and no properties; a refused
// message gets "quota exceeded" (0x97), an ACL-denied one "not
// authorized" (0x87).
//
// # Logs
//
// Problems that a misbehaving device can repeat in a loop (refused
// messages, ACL denials, failed logins, oversized packets, the embedded
// broker's own warnings) are logged as one short line per cause (device or
// username, and reason) per interval (WithLogInterval, YAML log_interval,
// a minute by default); the next line of a cause says how many were
// suppressed.
//
// # Downlink
//
// Write publishes the frame payload to the command topic template,
// "devices/{device}/cmd/{topic}" by default.
//
// # Sessions and memory
//
// Listener sessions are kept small for gateways with many devices. The
// connector runs its own session loop on the embedded broker's exported
// API: one goroutine per session waits for packets with a 2 KiB stack and
// no read buffer (a pooled 256 B buffer is taken while bytes arrive) and
// hands them to a few shared workers, which run the broker and the
// Uplink's Deliver on their deeper stacks; the broker's write loop starts
// only once a session subscribes. With the default GC, a session costs
// about 6.5 KiB of process RSS idle and 10.5 KiB publishing QoS 1 every
// 10 s (BENCHMARKS.md); one that also holds a subscription costs a second
// goroutine and the broker's topic index on top. See WithSessionLimits for
// buffers, pending outbound packets (32) and in-flight messages (64), and
// WithConnectTimeout for how long a connection may take to send CONNECT
// (10 s). A device that
// drops its connection without DISCONNECT has its will published like any
// PUBLISH it sends (publish ACL applies; the MQTT 5 will delay is not
// honoured). Session sockets have TCP keepalive probes after
// 30 s idle, 30 s apart (not with WithNetListener, whose listener is the
// caller's); MQTT keepalive is the device's choice. The client mode uses a
// 30 s MQTT keepalive, the same TCP keepalive, and reconnects with exponential backoff and full
// jitter, reset only after a connection stayed up 10 s.
//
// Trace context: an MQTT 5 device may send its W3C trace context as the
// user properties "traceparent" and "tracestate" of a PUBLISH (the
// CloudEvents MQTT binding's convention); the frame continues that trace.
// Without them, or with a malformed traceparent, the trace starts at the
// gateway.
package mqtt
