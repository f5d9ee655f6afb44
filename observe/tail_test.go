package observe

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// seenSink remembers each message's trace id and device.
type seenSink struct {
	mu   sync.Mutex
	seen map[string]string // trace id -> device
}

func (s *seenSink) Publish(_ context.Context, msgs []*gateway.Message) error {
	s.mu.Lock()
	for _, m := range msgs {
		s.seen[m.Trace.TraceID.String()] = m.Device
	}
	s.mu.Unlock()
	return nil
}

// idExporter keeps only the trace ids of the spans it is given.
type idExporter struct {
	mu  sync.Mutex
	ids map[[16]byte]bool
}

func (e *idExporter) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.mu.Lock()
	for _, s := range spans {
		e.ids[s.SpanContext().TraceID()] = true
	}
	e.mu.Unlock()
	return nil
}

func (e *idExporter) Shutdown(context.Context) error { return nil }

// TestTailKeepsEveryErrorAndSlowMessage runs a mixed load with 1 % head
// sampling: healthy messages, messages the codec rejects (errors: dropped
// without a dead-letter place) and messages that reach the broker late
// (read 2 s before they were handed to the gateway, over the 500 ms
// threshold).
// Every error and every slow message is exported; of the healthy fast ones
// only about 1 %. The peak heap is logged (BENCHMARKS.md quotes it).
func TestTailKeepsEveryErrorAndSlowMessage(t *testing.T) {
	exp := &idExporter{ids: map[[16]byte]bool{}}
	tr, err := NewTracing(context.Background(), WithSpanExporter(exp), WithExportInterval(20*time.Millisecond, time.Second),
		WithSampling(gateway.TraceSampling{Ratio: 0.01, Tail: true, Latency: 500 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	sink := &seenSink{seen: map[string]string{}}
	strict := gateway.CodecFuncs{DecodeFunc: func(f *gateway.Frame, m *gateway.Message) error {
		if len(f.Payload) != 8 {
			return fmt.Errorf("want 8 bytes, got %d", len(f.Payload))
		}
		m.AddPoint("v", gateway.Float(math.Float64frombits(binary.BigEndian.Uint64(f.Payload))), "")
		return nil
	}}
	opts := append([]gateway.Option{gateway.WithLogger(slog.New(slog.DiscardHandler)),
		gateway.WithCodec("strict", strict), gateway.WithSink("up", sink), gateway.WithBatchSize(16)}, tr.Options()...)
	g, err := gateway.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = g.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	const n = 20000
	var errIDs []string
	var peak uint64
	var ms runtime.MemStats
	for i := 0; i < n; i++ {
		f := gateway.AcquireFrame()
		f.Device, f.Topic = "dev", "env"
		switch {
		case i%50 == 7: // 2 % errors
			f.Payload = append(f.Payload, 1, 2, 3)
			f.Trace.TraceID[0], f.Trace.TraceID[15] = byte(i>>8)|0x80, byte(i)
			f.Trace.SpanID[7] = 1
			errIDs = append(errIDs, f.Trace.TraceID.String())
		case i%1000 == 500: // slow
			f.Device = "slow"
			f.Received = time.Now().Add(-2 * time.Second)
			fallthrough
		default:
			f.Payload = binary.BigEndian.AppendUint64(f.Payload, math.Float64bits(float64(i)))
		}
		if err := g.Inject(ctx, f); err != nil {
			t.Fatal(err)
		}
		if i%500 == 499 { // let the pipeline catch up: queueing must not make everything slow
			want := i + 1 - len(errIDs)
			waitFor(t, "published", 30*time.Second, func() bool {
				sink.mu.Lock()
				defer sink.mu.Unlock()
				return len(sink.seen) == want
			})
		}
		if i%2000 == 0 {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}
	}
	healthy := n - len(errIDs)
	waitFor(t, "all published", 30*time.Second, func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		return len(sink.seen) == healthy
	})
	if err := tr.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&ms)
	peak = max(peak, ms.HeapInuse)
	kept := map[string]bool{}
	exp.mu.Lock()
	for k := range exp.ids {
		kept[fmt.Sprintf("%x", k[:])] = true
	}
	exp.mu.Unlock()
	// Device "err" frames set a trace context without the sampled flag:
	// only the tail can keep them.
	for _, id := range errIDs {
		if !kept[id] {
			t.Fatalf("error message %s not kept", id)
		}
	}
	slow, fastKept := 0, 0
	sink.mu.Lock()
	for id, dev := range sink.seen {
		if dev == "slow" {
			slow++
			if !kept[id] {
				t.Errorf("slow message %s not kept", id)
			}
		} else if kept[id] {
			fastKept++
		}
	}
	sink.mu.Unlock()
	st := tr.Stats()
	if st.Dropped != 0 {
		t.Fatalf("spans dropped: %+v", st)
	}
	if fastKept > healthy/20 {
		t.Errorf("%d of %d healthy fast messages kept with 1 %% head sampling", fastKept, healthy)
	}
	t.Logf("%d messages: %d errors and %d slow all kept; %d other messages kept (head sampling); spans exported %d; peak heap in use %.1f MiB",
		n, len(errIDs), slow, fastKept, st.Exported, float64(peak)/(1<<20))
}
