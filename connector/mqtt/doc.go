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
// Listener sessions are kept small for gateways with many devices: 256 B
// socket buffers, 32 pending outbound packets, 64 in-flight messages (see
// WithSessionLimits). An idle session still costs about 25 KiB, most of it
// the two goroutine stacks (16 KiB and 4 KiB) of the embedded broker's read
// and write loops. Session sockets have TCP keepalive probes after
// 30 s idle, 30 s apart (not with WithNetListener, whose listener is the
// caller's); MQTT keepalive is the device's choice. The client mode uses a
// 30 s MQTT keepalive, the same TCP keepalive, and reconnects with exponential backoff and full
// jitter, reset only after a connection stayed up 10 s.
package mqtt
