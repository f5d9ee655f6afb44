package gateway

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

func TestObservabilityOptionErrors(t *testing.T) {
	for name, o := range map[string]Option{
		"nil provider":   WithMeterProvider(nil),
		"nil handler":    WithHealthHandler("GET /metrics", nil),
		"own pattern":    WithHealthHandler("GET /statz", http.NotFoundHandler()),
		"report no name": WithStatzReport("", func() any { return 1 }),
		"report no func": WithStatzReport("x", nil),
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, y := range []struct{ yaml, want string }{
		{"log:\n  format: xml\n", "log.format: want json or text"},
		{"log:\n  level: loud\n", "log.level: want debug"},
	} {
		if _, err := ParseConfig([]byte(y.yaml), "gw.yaml"); err == nil || !strings.Contains(err.Error(), y.want) {
			t.Errorf("%q: %v, want %q", y.yaml, err, y.want)
		}
	}
}

// reporter is a sink that publishes one instrument of its own.
type reporter struct{ discardSink }

func (r *reporter) RegisterMetrics(m metric.Meter, label ...attribute.KeyValue) (metric.Registration, error) {
	g, err := m.Int64ObservableGauge("test.sink.ready", metric.WithDescription("d"), metric.WithUnit("{x}"))
	if err != nil {
		return nil, err
	}
	a := metric.WithAttributes(label...)
	return m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(g, 7, a)
		return nil
	}, g)
}

func collect(t *testing.T, r *sdkmetric.ManualReader) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// TestMeterProviderAndHealthHandlers: the gateway's instruments reach the
// provider, a component's own instruments are registered while it runs
// and unregistered when the gateway stops, and extra health handlers and
// statz reports are served.
func TestMeterProviderAndHealthHandlers(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	sink := &reporter{}
	g, err := New(WithLogger(quietLogger()), WithMeterProvider(mp), WithSink("up", sink),
		WithHealthAddress("127.0.0.1:0"),
		WithHealthHandler("GET /extra", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "extra") })),
		WithStatzReport("mine", func() any { return map[string]int{"n": 42} }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = g.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for g.HealthAddr() == "" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	for i := 0; i < 10; i++ {
		f := AcquireFrame()
		f.Device, f.Topic = "d", "t"
		f.Payload = append(f.Payload, 'x')
		if err := g.Inject(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	for sink.n.Load() < 10 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	ms := collect(t, reader)
	sum, ok := ms["gateway.plane.messages"].Data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("no gateway.plane.messages: %v", ms)
	}
	var published int64
	for _, p := range sum.DataPoints {
		if v, _ := p.Attributes.Value("plane"); v.AsString() == "publish" {
			published = p.Value
		}
	}
	if published != 10 {
		t.Fatalf("publish plane = %d, want 10", published)
	}
	if _, ok := ms["test.sink.ready"]; !ok {
		t.Fatal("the sink's own instrument is not collected")
	}
	if _, ok := ms["gateway.publish.latency"]; !ok {
		t.Fatal("no publish latency histogram")
	}
	for path, want := range map[string]string{"/extra": "extra", "/statz": `"mine": {`} {
		resp, err := http.Get("http://" + g.HealthAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), want) {
			t.Fatalf("%s: %q lacks %q", path, b, want)
		}
	}
	cancel()
	<-done
	if ms := collect(t, reader); len(ms) > 0 {
		if _, ok := ms["test.sink.ready"]; ok {
			t.Fatal("a stopped gateway's component is still observed")
		}
		if d, ok := ms["gateway.queue.depth"].Data.(metricdata.Gauge[int64]); ok && len(d.DataPoints) > 0 {
			t.Fatal("a stopped gateway is still observed")
		}
	}
}
