// Package gateway is the core of an embeddable IoT edge gateway: device
// frames come in through connectors, are decoded into typed points by
// codecs, routed by topic and tags, and published to upstream sinks, with
// every step joined by a bounded queue.
//
// The happy path:
//
//	g, err := gateway.New(
//		gateway.WithConnector("plc", myConnector),
//		gateway.WithCodec("env", myCodec),
//		gateway.WithSink("cloud", mySink),
//	)
//	if err != nil { ... }
//	err = g.Run(ctx) // until ctx ends; drains queues, then returns
//
// # Planes
//
// The access plane is the connectors: each runs its own device sessions and
// hands frames to an Uplink. The decode plane turns frames into Messages
// with the connector's Codec. The route plane asks the Router (by default a
// TopicRouter built from Routes) which sinks get a message. The uplink plane
// is one goroutine per sink, batching messages into Sink.Publish. The
// control plane serves /healthz, /readyz and /statz, watches the
// configuration file and applies reloads.
//
// The pipeline is sharded (WithWorkers): a device always maps to the same
// shard, so the messages of one device keep their order from Deliver to
// Publish.
//
// # Bounded queues
//
// The ingress queue (WithQueueSize) and each sink queue (WithSinkQueueSize)
// are bounded. When one is full the Overflow policy decides: Block (the
// default) pushes back to connectors and devices; DropNewest refuses the new
// item; DropOldest evicts the oldest. Every drop is counted in Stats.
//
// # Pipelined delivery
//
// Uplink.Deliver returns once one frame is accepted. A connector that
// reads many messages at once hands them over with DeliverBatch instead
// (found on the Uplink by type assertion, BatchUplink, like
// CheckingUplink): one call, an outcome per frame in order, and in edge
// mode one Store commit for them all. Pipeline wraps it for connectors
// that receive messages one at a time: Submit returns at once, and a
// completion per frame reports its outcome in submission order, so a
// connector acknowledges each message as soon as it is accepted, never
// before, with at most a window of frames in flight
// (DefaultInflightWindow, 64, unless the connector's inflight_window says
// otherwise).
//
// # Ownership
//
// Frames come from AcquireFrame and go to exactly one Deliver (or
// DeliverBatch, or Pipeline.Submit), which owns them from then on. Messages are pooled: a Sink must not keep the slice or
// the messages it was given after Publish returns. Publish may be called
// concurrently for the same sink (live traffic and, in edge mode, replay
// from the Store).
//
// # Configuration
//
// Config describes a gateway in YAML (see Config for the schema). Component
// kinds (connectors, codecs, sinks, stores) are built by factories in a
// Registry the host program fills with the kinds it links, so a firmware
// build only carries the protocols it registers. Reload and ApplyConfig
// apply a new configuration at run time: unchanged connectors keep their
// device sessions, changed connectors that implement Reconfigurer take the
// change in place (keeping their sessions), other changed parts restart,
// routes swap atomically, and an invalid configuration changes nothing.
//
// # Tracing
//
// Every frame gets a W3C trace context when it is delivered: the device's
// (Frame.Trace, set by connectors) continued, or a new trace started at the
// connector. Message.Trace carries it as plain fields into the log lines
// about the message (trace_id, span_id), the edge-mode store (a replay
// continues the trace) and the upstream envelope. The core depends on the
// OpenTelemetry trace API only: WithTracerProvider (default none) and
// WithTraceSampling choose what is traced. Head sampling is decided before
// any span exists, so unsampled messages never call the tracer; the tail
// keeps failed, dropped, retried, dead-lettered and slow messages when they
// finish. Package observe sets up the SDK, the OTLP/HTTP export and the
// outage spool.
package gateway
