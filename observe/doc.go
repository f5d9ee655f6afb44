// Package observe brings the OpenTelemetry SDK to a gateway host: metrics
// served at /metrics in the Prometheus format, a JSON log handler with
// fixed fields, and SLOs judged by dynamic (Holt-Winters) baselines.
//
// The gateway and its components depend on the OpenTelemetry API only and
// default to no-op providers; a host that does not import observe links no
// SDK. The happy path:
//
//	obs, err := observe.New(observe.WithServiceName("gatewayd"))
//	if err != nil { ... }
//	defer obs.Shutdown(context.Background())
//	g, err := gateway.New(append(obs.GatewayOptions(), gateway.WithHealthAddress(":8080"))...)
//
// # Metrics
//
// The Prometheus exporter writes to a registry of the Observer's own, never
// to the global one. Hot-path counters stay atomics in the gateway and its
// components, read by observable instruments when /metrics is scraped.
// Labels are bounded (connector, sink, codec, rule, class, state and fixed
// enumerations such as reason and plane); a device id never becomes a
// label. Each instrument is capped at WithCardinalityLimit series; what
// overflows is aggregated into one series labelled
// otel_metric_overflow="true".
//
// # Logs
//
// NewLogHandler writes one JSON object per line with the fixed fields time,
// level, msg, service_name, trace_id, span_id, device, connector, rule and
// decision (see the Field constants for the attribute convention). A call
// below the level allocates nothing.
//
// # Traces
//
// NewTracing builds the SDK for a gateway's traces: its Options give
// gateway.WithTracerProvider and gateway.WithTraceSampling. The head
// decision is the gateway's (parent-based on the device's sampled flag,
// then a ratio); the tail keeps failed, retried, dropped, dead-lettered and
// slow messages that the head did not pick. Kept messages' spans are
// encoded straight to OTLP protobuf and POSTed over net/http
// (WithOTLPEndpoint; no gRPC is linked), from a bounded queue whose
// overflow is counted (Stats). WithSpool keeps failed requests in a store
// of their own (its size is the quota) at low priority, yields to data,
// and delivers them after recovery; other signals feed it with
// Spool.Handle and Spool.Put. TraceConfig is the YAML form. Limits: the
// CoAP trace option takes the general (not the batched fast) path, and
// publish spans of records replayed by resume.Drainer are not emitted.
//
// # SLOs and baselines
//
// An SLO (declared in YAML under observe.slos, see DecodeConfig) samples a
// series every interval and feeds a Detector: additive Holt-Winters with a
// configurable season, band forecast ± k·EWMA|residual|, a rolling-quantile
// band during the two-season warm-up, winsorised residuals, and an alert
// after N consecutive points out of band. An alert is a log line, a count
// in observe.slo.alerts, an entry in the "slo" section of /statz and a call
// of every function given to WithAlertFunc or SLOSet.OnAlert.
//
// Limits: the SLO set reads the Observer's own instruments (a series from
// another process must be fed with SLOSet.Feed); SLO and log settings are
// read at start (a reload that changes them needs a restart).
package observe
