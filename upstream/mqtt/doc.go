// Package mqtt is the upstream MQTT sink: it publishes gateway messages to
// any MQTT 3.1.1 broker (a mosquitto, an EMQX or HiveMQ cluster) with
// eclipse/paho, and carries downlink commands from the broker to devices.
//
//	s, err := mqtt.New("cloud", mqtt.Config{Broker: "tcp://broker:1883", CommandTopic: "gw/cmd"}, mqtt.WithCommands(dl))
//	g, err := gateway.New(gateway.WithSink("cloud", s), gateway.WithQoS(1), ...)
//	dl.Bind(g) // commands now reach devices through Gateway.Write
//
// Each message is published as the JSON envelope of
// gateway.Message.AppendJSON plus a W3C "traceparent" field, at the QoS the
// message carries (mqtt.qos in the gateway configuration, or a rule's
// qos). Publish returns only after every QoS 1 message has its PUBACK,
// with at most Config.InFlight unacknowledged at a time; publishes are
// serialised on one connection, so the order of each device's messages
// holds on the wire. The session is persistent (clean session off) and
// the client id stable, so the broker keeps subscriptions and queued
// commands across reconnects, and paho resends unacknowledged messages.
// The sink reconnects by itself with jittered exponential backoff that
// starts over only after a connection stayed up for Config.StableAfter.
//
// Anyone allowed to publish under Config.CommandTopic can write to
// devices: restrict that topic with the broker's ACLs and use TLS client
// certificates.
//
// Delivery is at least once: after a failure the gateway publishes the
// batch again, so consumers de-duplicate by the envelope's "id".
//
// # paho's connection
//
// The sink dials the broker itself and hands paho a wrapped connection
// (below TLS), because paho's system calls cost more than the rest of a
// publish: it reads every packet header a byte at a time and writes each
// PUBLISH on its own. The wrapper (internal/bufconn.Coalesced) reads
// through a 4 KiB buffer and writes from a goroutine of its own, sending
// everything paho wrote while the previous write was in the kernel in one
// call. It also sets TCP_QUICKACK after each read of the connection:
// mosquitto leaves Nagle's algorithm on, and without quick ACKs the sink
// stalls on delayed ACKs (BENCHMARKS.md). paho itself is unchanged.
package mqtt
