package observe

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/iotgw/gateway"
)

// BenchmarkPipelineObserve is the root package's BenchmarkPipeline (64
// devices, an f64 codec, two topic routes, a discarding sink) with
// observe's tracing off and on, in one run: off (no provider), head1pct
// (1 % head sampling, tail keep on, 1 s threshold), sampled (every
// message: the price of one message's spans is the difference of ns/op
// and allocs/op to off). Spans are encoded to OTLP protobuf and posted
// to a local endpoint that discards them.
func BenchmarkPipelineObserve(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	for _, c := range []struct {
		name  string
		ratio float64
		on    bool
	}{{"off", 0, false}, {"head1pct", 0.01, true}, {"sampled", 1, true}} {
		b.Run(c.name, func(b *testing.B) {
			var extra []gateway.Option
			if c.on {
				tr, err := NewTracing(context.Background(), WithOTLPEndpoint(srv.URL), WithSpanQueue(1<<17, 4096),
					WithSampling(gateway.TraceSampling{Ratio: c.ratio, Tail: true, Latency: time.Second}))
				if err != nil {
					b.Fatal(err)
				}
				defer func() { _ = tr.Shutdown(context.Background()) }()
				extra = tr.Options()
				defer func() {
					if st := tr.Stats(); st.Dropped > 0 {
						b.Logf("spans dropped: %+v", st)
					}
				}()
			}
			sink := &countSink{}
			opts := []gateway.Option{gateway.WithLogger(slog.New(slog.DiscardHandler)), gateway.WithCodec("f64", f64),
				gateway.WithSink("up", sink),
				gateway.WithRoute(gateway.Route{Topic: "plant/+/telemetry/#", Sinks: []string{"up"}}),
				gateway.WithRoute(gateway.Route{Topic: "plant/+/alarm/#", Sinks: []string{"up"}}),
				gateway.WithBatchSize(256), gateway.WithQueueSize(8192), gateway.WithSinkQueueSize(8192)}
			g, err := gateway.New(append(opts, extra...)...)
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
					f := gateway.AcquireFrame()
					f.Device, f.Topic = devices[i&63], "plant/7/telemetry/env"
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
		})
	}
}
