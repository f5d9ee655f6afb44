package gateway

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"
)

// discardSink counts and forgets.
type discardSink struct{ n atomic.Int64 }

func (s *discardSink) Publish(_ context.Context, msgs []*Message) error {
	s.n.Add(int64(len(msgs)))
	return nil
}

// BenchmarkPipeline pushes synthetic 8-byte frames from 64 devices through
// the whole pipeline: ingress queue, decode (a trivial float codec), route
// (two topic-filter routes), sink queue, and a sink that discards. msg/s is
// end to end: from the first Inject until the sink has seen every message.
func BenchmarkPipeline(b *testing.B) { benchPipeline(b) }

// benchPipeline runs the pipeline benchmark with extra options (tracing,
// metrics) on top of BenchmarkPipeline's.
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
