package gateway

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// BenchmarkPipelineMetrics is BenchmarkPipeline with metrics off (the
// default no-op provider) and on (the SDK, collected every 100 ms while
// the benchmark runs, as a busy scraper would), alternated in one run.
func BenchmarkPipelineMetrics(b *testing.B) {
	b.Run("off", func(b *testing.B) { benchPipelineWith(b, nil) })
	b.Run("on", func(b *testing.B) {
		reader := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		defer mp.Shutdown(context.Background())
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			var rm metricdata.ResourceMetrics
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					_ = reader.Collect(context.Background(), &rm)
				}
			}
		}()
		defer func() { close(stop); <-done }()
		benchPipelineWith(b, mp)
	})
}

func benchPipelineWith(b *testing.B, mp *sdkmetric.MeterProvider) {
	sink := &discardSink{}
	opts := []Option{WithLogger(quietLogger()), WithCodec("f64", f64Codec), WithSink("up", sink),
		WithRoute(Route{Topic: "plant/+/telemetry/#", Sinks: []string{"up"}}),
		WithBatchSize(256), WithQueueSize(8192), WithSinkQueueSize(8192)}
	if mp != nil {
		opts = append(opts, WithMeterProvider(mp))
	}
	g, err := New(opts...)
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
	payload := binary.BigEndian.AppendUint64(nil, math.Float64bits(21.5))
	send := func(n int) {
		for i := 0; i < n; i++ {
			f := AcquireFrame()
			f.Device, f.Topic = devices[i&63], "plant/7/telemetry/env"
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
