package observe

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/resume"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// otlpServer is a stand-in OTLP/HTTP endpoint that decodes what it gets
// and can be made to refuse requests.
type otlpServer struct {
	*httptest.Server
	down     atomic.Bool
	requests atomic.Int64
	mu       sync.Mutex
	spans    map[string][]*tracepb.Span // by hex trace id
}

func newOTLPServer(t *testing.T) *otlpServer {
	s := &otlpServer{spans: map[string][]*tracepb.Span{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if s.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		body, _ := io.ReadAll(r.Body)
		rss, err := decodeTraceRequest(body)
		if err != nil {
			t.Errorf("bad OTLP body: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		for _, rs := range rss {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					id := hexID(sp.TraceId)
					s.spans[id] = append(s.spans[id], sp)
				}
			}
		}
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(s.Close)
	return s
}

func hexID(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func decodeTraceRequest(b []byte) ([]*tracepb.ResourceSpans, error) {
	var out []*tracepb.ResourceSpans
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num != 1 || typ != protowire.BytesType {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		rs := &tracepb.ResourceSpans{}
		if err := proto.Unmarshal(v, rs); err != nil {
			return nil, err
		}
		out = append(out, rs)
	}
	return out, nil
}

func (s *otlpServer) names(traceID string) map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]bool{}
	for _, sp := range s.spans[traceID] {
		out[sp.Name] = true
	}
	return out
}

func (s *otlpServer) traces() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.spans)
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var f64 = gateway.CodecFuncs{DecodeFunc: func(f *gateway.Frame, m *gateway.Message) error {
	m.AddPoint("v", gateway.Float(math.Float64frombits(binary.BigEndian.Uint64(f.Payload))), "")
	return nil
}}

type okSink struct {
	mu  sync.Mutex
	got []gateway.TraceContext
}

func (s *okSink) Publish(_ context.Context, msgs []*gateway.Message) error {
	s.mu.Lock()
	for _, m := range msgs {
		s.got = append(s.got, m.Trace)
	}
	s.mu.Unlock()
	return nil
}

func (s *okSink) contexts() []gateway.TraceContext {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]gateway.TraceContext(nil), s.got...)
}

// runGateway starts a gateway traced by tr and returns it with its sink.
func runGateway(t *testing.T, tr *Tracing, extra ...gateway.Option) (*gateway.Gateway, *okSink) {
	t.Helper()
	sink := &okSink{}
	opts := append([]gateway.Option{gateway.WithLogger(slog.New(slog.DiscardHandler)),
		gateway.WithCodec("f64", f64), gateway.WithSink("up", sink)}, tr.Options()...)
	g, err := gateway.New(append(opts, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = g.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return g, sink
}

func inject(t *testing.T, g *gateway.Gateway, traceparent string) {
	t.Helper()
	f := gateway.AcquireFrame()
	f.Device, f.Topic = "dev-1", "env"
	f.Payload = binary.BigEndian.AppendUint64(f.Payload, math.Float64bits(1))
	f.Trace, _ = gateway.ParseTraceHeaders(traceparent, "")
	if err := g.Inject(context.Background(), f); err != nil {
		t.Fatal(err)
	}
}

const deviceTrace = "4bf92f3577b34da6a3ce929d0e0e4736"

func TestTracingExportsOTLPHTTP(t *testing.T) {
	srv := newOTLPServer(t)
	tr, err := NewTracing(context.Background(), WithOTLPEndpoint(srv.URL),
		WithExportInterval(20*time.Millisecond, time.Second),
		WithSampling(gateway.TraceSampling{Ratio: 0, Tail: true}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	g, sink := runGateway(t, tr)
	inject(t, g, "00-"+deviceTrace+"-00f067aa0ba902b7-01")
	inject(t, g, "") // a new trace, not head-sampled, healthy: not kept
	waitFor(t, "spans", 5*time.Second, func() bool { return len(srv.names(deviceTrace)) == 4 })
	names := srv.names(deviceTrace)
	for _, n := range []string{"receive", "decode", "route", "publish"} {
		if !names[n] {
			t.Fatalf("span %s missing: %v", n, names)
		}
	}
	waitFor(t, "publish", 5*time.Second, func() bool { return len(sink.contexts()) == 2 })
	if err := tr.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := srv.traces(); n != 1 {
		t.Fatalf("%d traces exported, want only the sampled one", n)
	}
	if st := tr.Stats(); st.Dropped != 0 || st.Exported != 4 {
		t.Fatalf("stats %+v", st)
	}
}

// The queue is bounded: spans that do not fit are counted, not lost
// silently.
func TestTracingQueueOverflowCounted(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-block
	}))
	t.Cleanup(srv.Close)
	tr, err := NewTracing(context.Background(), WithOTLPEndpoint(srv.URL), WithSpanQueue(8, 4),
		WithExportInterval(time.Hour, 10*time.Second), WithSampling(gateway.TraceSampling{Ratio: 1}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	unblock := sync.OnceFunc(func() { close(block) })
	t.Cleanup(unblock)
	g, sink := runGateway(t, tr)
	for i := 0; i < 10; i++ {
		inject(t, g, "")
	}
	waitFor(t, "publish", 5*time.Second, func() bool { return len(sink.contexts()) == 10 })
	// 10 messages make 40 spans: the first export blocks, at most 8 wait,
	// the rest are dropped and counted. Once the endpoint answers, every
	// span is either exported or counted as dropped.
	waitFor(t, "drops counted", 5*time.Second, func() bool { return tr.Stats().Dropped >= 24 })
	unblock()
	if err := tr.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every span accounted for", 5*time.Second, func() bool {
		st := tr.Stats()
		return st.Exported+st.Dropped == 40 && st.Queued == 0
	})
}

func openSpool(t *testing.T, maxRows int) *resume.SQLiteStore {
	t.Helper()
	st, err := resume.OpenSQLiteStore(resume.SQLiteConfig{Path: filepath.Join(t.TempDir(), "telemetry.db"), MaxRows: int64(maxRows)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// While the endpoint is down, kept spans wait in the spool; while data is
// waiting (yield), they stay there; after both, every one is delivered.
func TestTracingSpoolThroughOutage(t *testing.T) {
	srv := newOTLPServer(t)
	srv.down.Store(true)
	var dataWaiting atomic.Bool
	dataWaiting.Store(true)
	st := openSpool(t, 0)
	tr, err := NewTracing(context.Background(), WithOTLPEndpoint(srv.URL),
		WithExportInterval(20*time.Millisecond, time.Second),
		WithSpool(st, dataWaiting.Load, 20*time.Millisecond),
		WithSampling(gateway.TraceSampling{Ratio: 1}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	g, sink := runGateway(t, tr)
	const n = 20
	for i := 0; i < n; i++ {
		inject(t, g, "")
	}
	waitFor(t, "publish", 5*time.Second, func() bool { return len(sink.contexts()) == n })
	if err := tr.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "spooled", 5*time.Second, func() bool { return tr.Stats().Spool.Put > 0 })
	srv.down.Store(false)
	before := srv.requests.Load()
	time.Sleep(100 * time.Millisecond) // a window in which yield must hold the spool back
	if got := srv.requests.Load(); got != before {
		t.Fatalf("spool sent %d requests while data was waiting", got-before)
	}
	dataWaiting.Store(false)
	waitFor(t, "delivery after recovery", 10*time.Second, func() bool {
		s := tr.Stats().Spool
		return srv.traces() == n && s.Sent == s.Put
	})
	for _, tc := range sink.contexts() {
		if names := srv.names(tc.TraceID.String()); len(names) != 4 {
			t.Fatalf("trace %s: spans %v", tc.TraceID, names)
		}
	}
	if s := tr.Stats(); s.Dropped != 0 || s.Spool.Dropped != 0 || s.Spool.Sent != s.Spool.Put {
		t.Fatalf("stats %+v", s)
	}
}

// A full spool (its quota) refuses more and counts it.
func TestTracingSpoolQuotaCounted(t *testing.T) {
	srv := newOTLPServer(t)
	srv.down.Store(true)
	st := openSpool(t, 2)
	tr, err := NewTracing(context.Background(), WithOTLPEndpoint(srv.URL), WithSpanQueue(64, 4),
		WithExportInterval(10*time.Millisecond, time.Second), WithSpool(st, nil, time.Hour),
		WithSampling(gateway.TraceSampling{Ratio: 1}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	g, _ := runGateway(t, tr)
	for i := 0; i < 4; i++ { // one export request each
		inject(t, g, "")
		waitFor(t, "one request", 5*time.Second, func() bool {
			_ = tr.ForceFlush(context.Background())
			s := tr.Stats().Spool
			return s.Put+s.Dropped == uint64(i+1)
		})
	}
	waitFor(t, "overflow counted", 5*time.Second, func() bool {
		s := tr.Stats()
		return s.Spool.Put == 2 && s.Spool.Dropped == 2
	})
}
