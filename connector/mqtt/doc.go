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
// device (listener) or the {device} topic level (client), Topic is the
// MQTT topic, Payload the message bytes. QoS 1/2 messages are acknowledged
// only once the gateway accepted the frame.
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
package mqtt
