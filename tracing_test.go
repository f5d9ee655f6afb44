package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// testIDs is an SDK ID generator that honours RequestedSpanIDs, like
// package observe's.
type testIDs struct{}

func (testIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if tid, sid, ok := RequestedSpanIDs(ctx); ok && tid.IsValid() {
		return tid, sid
	}
	var tid trace.TraceID
	var sid trace.SpanID
	_, _ = rand.Read(tid[:])
	_, _ = rand.Read(sid[:])
	return tid, sid
}

func (testIDs) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	if _, sid, ok := RequestedSpanIDs(ctx); ok {
		return sid
	}
	var sid trace.SpanID
	_, _ = rand.Read(sid[:])
	return sid
}

func newRecorder() (*tracetest.SpanRecorder, *sdktrace.TracerProvider) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithIDGenerator(testIDs{}), sdktrace.WithSpanProcessor(rec))
	return rec, tp
}

// traceSink remembers the trace context of every message it publishes; it
// fails the first failN calls and waits delay in each.
type traceSink struct {
	mu    sync.Mutex
	got   []TraceContext
	failN atomic.Int32
	delay time.Duration
}

func (s *traceSink) Publish(ctx context.Context, msgs []*Message) error {
	time.Sleep(s.delay)
	if s.failN.Add(-1) >= 0 {
		return errors.New("upstream down")
	}
	s.mu.Lock()
	for _, m := range msgs {
		s.got = append(s.got, m.Trace)
	}
	s.mu.Unlock()
	return nil
}

func (s *traceSink) contexts() []TraceContext {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]TraceContext(nil), s.got...)
}

func spansOf(rec *tracetest.SpanRecorder, tid trace.TraceID) map[string]sdktrace.ReadOnlySpan {
	out := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID() == tid {
			out[s.Name()] = s
		}
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, key string) attribute.Value {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

func TestTraceDeviceContextSampled(t *testing.T) {
	rec, tp := newRecorder()
	sink := &traceSink{}
	g, err := New(WithLogger(quietLogger()), WithCodec("f64", f64Codec), WithSink("up", sink),
		WithTracerProvider(tp), WithTraceSampling(TraceSampling{Ratio: 0, Tail: true}))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	f := frame("dev-1", "env", 21.5)
	f.Trace, _ = ParseTraceHeaders(testTraceParent, "rojo=1")
	device := f.Trace
	if err := g.Inject(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "publish", 5*time.Second, func() bool { return len(sink.contexts()) == 1 })
	tc := sink.contexts()[0]
	if tc.TraceID != device.TraceID || tc.SpanID == device.SpanID || !tc.Sampled() || tc.State != "rojo=1" {
		t.Fatalf("message context %+v continues %+v wrongly", tc, device)
	}
	waitFor(t, "spans", 5*time.Second, func() bool { return len(spansOf(rec, tc.TraceID)) == 4 })
	spans := spansOf(rec, tc.TraceID)
	recv := spans["receive"]
	if recv.SpanContext().SpanID() != tc.SpanID || recv.Parent().SpanID() != device.SpanID {
		t.Fatalf("receive span %v parent %v; want %v parent %v", recv.SpanContext().SpanID(), recv.Parent().SpanID(), tc.SpanID, device.SpanID)
	}
	for _, n := range []string{"decode", "route", "publish"} {
		s := spans[n]
		if s == nil || s.Parent().SpanID() != tc.SpanID {
			t.Fatalf("span %s missing or not a child of receive: %v", n, s)
		}
		if s.StartTime().Before(recv.StartTime()) || s.EndTime().Before(s.StartTime()) {
			t.Fatalf("span %s times %v..%v, receive starts %v", n, s.StartTime(), s.EndTime(), recv.StartTime())
		}
	}
	if v := attr(spans["route"], "gateway.route.decision").AsString(); v != "routed" {
		t.Fatalf("route decision %q", v)
	}
	if v := attr(spans["publish"], "gateway.sink").AsString(); v != "up" {
		t.Fatalf("publish sink %q", v)
	}
	if st := g.TraceStats(); st.Head != 1 || st.Tail != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTraceUnsampledHealthyEmitsNothing(t *testing.T) {
	rec, tp := newRecorder()
	sink := &traceSink{}
	g, err := New(WithLogger(quietLogger()), WithCodec("f64", f64Codec), WithSink("up", sink),
		WithTracerProvider(tp), WithTraceSampling(TraceSampling{Ratio: 0, Tail: true, Latency: time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	for i := 0; i < 50; i++ {
		if err := g.Inject(context.Background(), frame("dev", "env", 1)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "publish", 5*time.Second, func() bool { return len(sink.contexts()) == 50 })
	for _, tc := range sink.contexts() {
		if !tc.IsValid() || tc.Sampled() {
			t.Fatalf("context %+v: want a new, unsampled trace", tc)
		}
	}
	if n := len(rec.Ended()); n != 0 {
		t.Fatalf("%d spans for unsampled healthy messages", n)
	}
}

func TestTraceTailKeepsRetriedAndSlow(t *testing.T) {
	rec, tp := newRecorder()
	sink := &traceSink{}
	sink.failN.Store(1)
	g, err := New(WithLogger(quietLogger()), WithCodec("f64", f64Codec), WithSink("up", sink),
		WithTracerProvider(tp), WithTraceSampling(TraceSampling{Ratio: 0, Tail: true, Latency: 30 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	if err := g.Inject(context.Background(), frame("dev", "env", 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "publish", 5*time.Second, func() bool { return len(sink.contexts()) == 1 })
	retried := sink.contexts()[0]
	waitFor(t, "tail spans", 5*time.Second, func() bool { return len(spansOf(rec, retried.TraceID)) == 4 })
	spans := spansOf(rec, retried.TraceID)
	if v := attr(spans["publish"], "gateway.outcome").AsString(); v != "retry" {
		t.Fatalf("outcome %q", v)
	}
	if v := attr(spans["publish"], "gateway.publish.attempts").AsInt64(); v != 2 {
		t.Fatalf("attempts %d", v)
	}
	if v := attr(spans["receive"], "gateway.sampling").AsString(); v != "tail" {
		t.Fatalf("sampling %q", v)
	}
	// Fast healthy messages are not kept; a slow one is.
	for i := 0; i < 20; i++ {
		if err := g.Inject(context.Background(), frame("dev", "env", 1)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "publish", 5*time.Second, func() bool { return len(sink.contexts()) == 21 })
	sink.mu.Lock()
	sink.delay = 60 * time.Millisecond
	sink.mu.Unlock()
	if err := g.Inject(context.Background(), frame("dev", "env", 2)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "publish", 5*time.Second, func() bool { return len(sink.contexts()) == 22 })
	slow := sink.contexts()[21]
	waitFor(t, "slow spans", 5*time.Second, func() bool { return len(spansOf(rec, slow.TraceID)) == 4 })
	if st := g.TraceStats(); st.Tail != 2 || st.Head != 0 {
		t.Fatalf("stats %+v: want the retried and the slow message only", st)
	}
}

// A frame left in the store by a crash is replayed under its original
// trace, with its receive span marked replayed.
func TestTraceEdgeReplayContinuesTrace(t *testing.T) {
	st := newMemStore()
	g0 := &Gateway{s: defaultSettings(), tracer: noopTracer(), sampleBelow: ratioThreshold(1)}
	f := frame("dev-9", "env", 3)
	f.ID, f.Connector, f.Received = MessageID{7}, "mqtt", time.Now()
	f.Trace, _ = ParseTraceParent(testTraceParent)
	g0.startTrace(f)
	want := f.gw
	if err := st.Append(context.Background(), []Record{{ID: f.ID, Payload: appendFrameBinary(nil, f)}}); err != nil {
		t.Fatal(err)
	}
	_ = st.Release(context.Background(), []Record{{Seq: 1}})
	f.Release()

	rec, tp := newRecorder()
	sink := &traceSink{}
	g, err := New(WithLogger(quietLogger()), WithCodec("f64", f64Codec), WithSink("up", sink), WithMode(ModeEdge), WithStore(st),
		WithTracerProvider(tp), WithTraceSampling(TraceSampling{Ratio: 0, Tail: true}))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	waitFor(t, "replay", 5*time.Second, func() bool { return len(sink.contexts()) == 1 })
	if got := sink.contexts()[0]; got.TraceID != want.TraceID || got.SpanID != want.SpanID {
		t.Fatalf("replayed context %+v, want %+v", got, want)
	}
	waitFor(t, "spans", 5*time.Second, func() bool { return len(spansOf(rec, want.TraceID)) == 4 })
	recv := spansOf(rec, want.TraceID)["receive"]
	if !attr(recv, "gateway.replayed").AsBool() || recv.Parent().SpanID().String() != "00f067aa0ba902b7" {
		t.Fatalf("receive span: replayed %v parent %v", attr(recv, "gateway.replayed"), recv.Parent().SpanID())
	}
}

func noopTracer() trace.Tracer { return sdktrace.NewTracerProvider().Tracer("t") }

// Every log line the gateway writes about a message carries its trace_id,
// span_id, device and connector.
func TestTraceLogLinesCarryContext(t *testing.T) {
	var buf syncLog
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	sink := &traceSink{}
	sink.failN.Store(1)
	g, err := New(WithLogger(log), WithCodec("f64", f64Codec), WithSink("up", sink))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	f := frame("dev-log", "env", 1)
	f.Trace, _ = ParseTraceParent(testTraceParent)
	if err := g.Inject(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	bad := AcquireFrame() // the codec rejects it: dropped, logged
	bad.Device, bad.Topic = "dev-log", "env"
	bad.Payload = append(bad.Payload, 1, 2, 3)
	bad.Trace, _ = ParseTraceParent(testTraceParent)
	if err := g.Inject(context.Background(), bad); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "publish", 5*time.Second, func() bool { return len(sink.contexts()) == 1 })
	waitFor(t, "log lines", 5*time.Second, func() bool { return len(buf.about("dev-log")) >= 2 })
	for _, l := range buf.about("dev-log") {
		if l["trace_id"] != "4bf92f3577b34da6a3ce929d0e0e4736" || l["span_id"] == nil || l["connector"] == nil {
			t.Errorf("log line without the message's context: %v", l)
		}
	}
}

type syncLog struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.b = append(s.b, p...)
	s.mu.Unlock()
	return len(p), nil
}

func (s *syncLog) about(device string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(s.b, []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(l, &m) == nil && m["device"] == device {
			out = append(out, m)
		}
	}
	return out
}

// TraceSampling.Slow replaces the fixed threshold (a baseline's band).
func TestTraceTailSlowFunc(t *testing.T) {
	rec, tp := newRecorder()
	sink := &traceSink{}
	var calls atomic.Int64
	g, err := New(WithLogger(quietLogger()), WithCodec("f64", f64Codec), WithSink("up", sink),
		WithTracerProvider(tp), WithTraceSampling(TraceSampling{Ratio: 0, Tail: true, Latency: time.Nanosecond,
			Slow: func(connector string, lat time.Duration) bool { calls.Add(1); return lat > time.Hour }}))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	for i := 0; i < 5; i++ {
		if err := g.Inject(context.Background(), frame("dev", "env", 1)); err != nil {
			t.Fatal(err)
		}
	}
	old := frame("dev", "env", 2)
	old.Received = time.Now().Add(-2 * time.Hour)
	if err := g.Inject(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "publish", 5*time.Second, func() bool { return len(sink.contexts()) == 6 })
	slow := sink.contexts()[5]
	waitFor(t, "slow spans", 5*time.Second, func() bool { return len(spansOf(rec, slow.TraceID)) == 4 })
	if st := g.TraceStats(); st.Tail != 1 || calls.Load() != 6 {
		t.Fatalf("stats %+v, Slow called %d times: want only the 2h-old message kept", st, calls.Load())
	}
}

// In edge mode a sampled message also has a store span: the write-ahead
// commit before the device is acknowledged.
func TestTraceEdgeStoreSpan(t *testing.T) {
	rec, tp := newRecorder()
	sink := &traceSink{}
	g, err := New(WithLogger(quietLogger()), WithCodec("f64", f64Codec), WithSink("up", sink),
		WithMode(ModeEdge), WithStore(newMemStore()),
		WithTracerProvider(tp), WithTraceSampling(TraceSampling{Ratio: 1}))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	if err := g.Inject(context.Background(), frame("dev", "env", 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "publish", 5*time.Second, func() bool { return len(sink.contexts()) == 1 })
	tc := sink.contexts()[0]
	waitFor(t, "spans", 5*time.Second, func() bool { return len(spansOf(rec, tc.TraceID)) == 5 })
	st := spansOf(rec, tc.TraceID)["store"]
	if st == nil || st.Parent().SpanID() != tc.SpanID || st.EndTime().Before(st.StartTime()) {
		t.Fatalf("store span %v", st)
	}
}
