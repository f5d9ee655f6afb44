package gateway

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// BenchmarkPipelineMetrics is BenchmarkPipeline with metrics off (the
// default no-op provider) and on (the SDK, collected every 100 ms while
// the benchmark runs, as a busy scraper would), alternated in one run.
func BenchmarkPipelineMetrics(b *testing.B) {
	b.Run("off", func(b *testing.B) { benchPipeline(b) })
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
		benchPipeline(b, WithMeterProvider(mp))
	})
}
