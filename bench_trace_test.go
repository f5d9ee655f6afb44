package gateway

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
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

// benchPipeline is the body of BenchmarkPipeline with extra options.
func benchPipeline(b *testing.B, extra ...Option) {
	sink := &discardSink{}
	opts := []Option{WithLogger(quietLogger()), WithCodec("f64", f64Codec), WithSink("up", sink),
		WithRoute(Route{Topic: "plant/+/telemetry/#", Sinks: []string{"up"}}),
		WithRoute(Route{Topic: "plant/+/alarm/#", Sinks: []string{"up"}}),
		WithBatchSize(256), WithQueueSize(8192), WithSinkQueueSize(8192)}
	g, err := New(append(opts, extra...)...)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = g.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	devices := make([]string, 64)
	for i := range devices {
		devices[i] = fmt.Sprintf("dev-%02d", i)
	}
	const topic = "plant/7/telemetry/env"
	payload := binary.BigEndian.AppendUint64(nil, math.Float64bits(21.5))
	send := func(n int) {
		for i := 0; i < n; i++ {
			f := AcquireFrame()
			f.Device, f.Topic = devices[i&63], topic
			f.Received = time.Time{}
			f.Payload = append(f.Payload, payload...)
			if err := g.Inject(ctx, f); err != nil {
				b.Fatal(err)
			}
		}
	}
	send(50000)
	for sink.n.Load() < 50000 {
		time.Sleep(time.Millisecond)
	}
	base := sink.n.Load()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	send(b.N)
	for sink.n.Load() < base+int64(b.N) {
		time.Sleep(20 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
}
