package gateway

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// BenchmarkPipelineTracing is BenchmarkPipeline with tracing off and on, in
// one run so the ratios compare like with like:
//
//   - off: no TracerProvider (the default);
//   - unsampled: an SDK provider, 0 % head sampling, tail keep on: the
//     cost of the timestamps every message carries for the tail;
//   - head1pct: an SDK provider, 1 % head sampling, tail keep on (a 1s
//     latency threshold nothing here reaches): 99 % of the messages are
//     unsampled and must cost nothing but their timestamps;
//   - sampled: every message sampled, to price the spans of one message
//     (per message: the difference of ns/op and allocs/op to off).
//
// Spans go through the SDK's batch processor to an exporter that drops
// them, so the export itself is not measured.
func BenchmarkPipelineTracing(b *testing.B) {
	for _, c := range []struct {
		name  string
		ratio float64
		trace bool
	}{{"off", 0, false}, {"unsampled", 0, true}, {"head1pct", 0.01, true}, {"sampled", 1, true}} {
		b.Run(c.name, func(b *testing.B) {
			var extra []Option
			if c.trace {
				tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
					sdktrace.WithIDGenerator(testIDs{}),
					sdktrace.WithBatcher(tracetest.NewNoopExporter(), sdktrace.WithMaxQueueSize(1<<16)))
				defer func() { _ = tp.Shutdown(context.Background()) }()
				extra = append(extra, WithTracerProvider(tp),
					WithTraceSampling(TraceSampling{Ratio: c.ratio, Tail: true, Latency: time.Second}))
			}
			benchPipeline(b, extra...)
		})
	}
}
