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
// # Downlink
//
// Write publishes the frame payload to the command topic template,
// "devices/{device}/cmd/{topic}" by default.
//
// # Sessions and memory
//
// Listener sessions are kept small for gateways with many devices. The
// connector runs its own session loop on the embedded broker's exported
// API: one goroutine per session reads packets through a 256 B buffer and
// hands them to the broker, and the broker's write loop starts only once a
// session subscribes. An idle session that publishes costs about 8 KiB;
// one that also holds a subscription about 17 KiB (a second goroutine and
// the broker's topic index). See WithSessionLimits for buffers, pending
// outbound packets (32) and in-flight messages (64), and WithConnectTimeout
// for how long a connection may take to send CONNECT (10 s). A device that
// drops its connection without DISCONNECT has its will published like any
// PUBLISH it sends (publish ACL applies; the MQTT 5 will delay is not
// honoured). Session sockets have TCP keepalive probes after
// 30 s idle, 30 s apart (not with WithNetListener, whose listener is the
// caller's); MQTT keepalive is the device's choice. The client mode uses a
// 30 s MQTT keepalive, the same TCP keepalive, and reconnects with exponential backoff and full
// jitter, reset only after a connection stayed up 10 s.
package mqtt
